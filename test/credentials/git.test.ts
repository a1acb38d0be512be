// git clone and push over HTTPS through `airlock exec`, with only a placeholder in the session:
// the git server demands Basic auth with the real token and must never see the placeholder.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, startGitServer, runCli, runProcess, isolatedGitEnv, tmpDir, rmTmp } from '../helpers/servers.js';
import type { GitServer, TestPki } from '../helpers/servers.js';

const SECRET = 'ghs_GitRealToken9876543210zyxwvutsrqp';

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [readFileSync(path, 'latin1')];
  });
}

describe('git over HTTPS through airlock exec with a placeholder token', () => {
  let pki: TestPki;
  let server: GitServer;
  let work: string;
  let policyFile: string;
  let stateDir: string;

  beforeAll(async () => {
    pki = await createTestPki();
    server = await startGitServer({ pki, names: ['github.com'], auth: { user: 'x-access-token', password: SECRET } });
    work = tmpDir();
    stateDir = join(work, 'state');
    policyFile = join(work, 'policy.yaml');
    writeFileSync(
      policyFile,
      ['version: 1', 'name: git-test', 'allow:', '  - host: github.com', 'credentials:', '  - preset: github', '    secret: { env: AIRLOCK_GITHUB_TOKEN }', ''].join('\n'),
    );
  });

  afterAll(async () => {
    await server?.close();
    rmTmp(pki?.dir, work);
  });

  const exec = (script: string, cwd: string) =>
    runCli(
      ['exec', '--policy', policyFile, '--state-dir', stateDir, '--resolve', `github.com:443:127.0.0.1:${server.port}`, '--upstream-ca', pki.caFile, '--', 'sh', '-c', script],
      { cwd, env: isolatedGitEnv(work, { AIRLOCK_GITHUB_TOKEN: SECRET }), timeoutMs: 60_000 },
    );

  it('clones and pushes with the placeholder in the remote URL', async () => {
    const r = await exec(
      [
        'set -e',
        'git clone -q "https://x-access-token:$GH_TOKEN@github.com/repo.git" url-clone',
        'cd url-clone',
        'echo change > change.txt && git add change.txt && git commit -q -m "from the session"',
        'git push -q origin HEAD:main',
        'env > ../child-env.txt',
      ].join('\n'),
      work,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(work, 'url-clone', 'README.md'), 'utf8')).toContain('airlock test repo');
    // The push landed in the server's repository.
    const log = await runProcess('git', ['log', '--format=%s', '-1', 'main'], { cwd: server.repoDir, env: isolatedGitEnv(work) });
    expect(log.stdout.trim()).toBe('from the session');
    // The child saw only placeholders, never the secret or its source variable.
    const childEnv = readFileSync(join(work, 'child-env.txt'), 'utf8');
    expect(childEnv).not.toContain(SECRET);
    expect(childEnv).not.toMatch(/^AIRLOCK_GITHUB_TOKEN=/m);
    expect(childEnv).toMatch(/^GH_TOKEN=ghp_airlock-github-[0-9a-f]{24}$/m);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('clones with a credential helper that hands git the placeholder', async () => {
    const r = await exec(
      `git -c credential.helper='!f() { echo username=x-access-token; echo "password=$GH_TOKEN"; }; f' clone -q https://github.com/repo.git helper-clone`,
      work,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(work, 'helper-clone', 'README.md'), 'utf8')).toContain('airlock test repo');
  });

  it('the server saw only the real token, and no state file holds it', () => {
    const expected = 'Basic ' + Buffer.from(`x-access-token:${SECRET}`).toString('base64');
    expect(server.authSeen.length).toBeGreaterThan(0);
    for (const seen of server.authSeen) {
      expect(seen).toBe(expected);
      expect(Buffer.from(seen.slice(6), 'base64').toString()).not.toContain('airlock-github');
    }
    for (const text of filesUnder(stateDir)) expect(text).not.toContain(SECRET);
    const audit = filesUnder(join(stateDir, 'sessions')).join('\n');
    expect(audit).toContain('"credentials":["github"]');
  });
});
