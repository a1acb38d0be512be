// git over smart HTTP through the in-process proxy: clone, commit, push (with a Basic-auth
// challenge from the server), exactly as a session's git would do it with the session env.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, isolatedGitEnv, rmTmp, runProcess, startAirlock, startGitServer, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, GitServer, TestPki } from '../helpers/servers.js';

const PASSWORD = 'real-git-password-123';

let pki: TestPki;
let server: GitServer;
let airlock: AirlockHandle;
let home: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  pki = await createTestPki();
  server = await startGitServer({ pki, names: ['github.com'], auth: { user: 'git-user', password: PASSWORD } });
  airlock = await startAirlock({
    policy: 'version: 1\nname: git\nallow:\n  - host: github.com\n    paths: ["/repo.git/*"]\n',
    resolve: { 'github.com:443': server.port },
    upstreamCa: [pki.caPem],
  });
  home = tmpDir('airlock-git-home-');
  env = isolatedGitEnv(home, { HTTPS_PROXY: airlock.proxyUrl, GIT_SSL_CAINFO: airlock.bundlePath });
}, 30_000);

afterAll(async () => {
  await airlock?.close();
  await server?.close();
  rmTmp(home, pki?.dir);
});

const git = (args: string[], cwd = home) => runProcess('git', args, { cwd, env, timeoutMs: 30_000 });

describe('git through the proxy', () => {
  it('clone, commit and push with Basic auth', async () => {
    const url = `https://git-user:${PASSWORD}@github.com/repo.git`;
    const clone = await git(['clone', '-q', url, 'work']);
    expect(clone.code, clone.stderr).toBe(0);
    const work = join(home, 'work');
    expect((await git(['rev-parse', 'HEAD'], work)).stdout.trim()).toBe(server.headCommit);

    writeFileSync(join(work, 'change.txt'), 'pushed through airlock\n'.repeat(1000));
    expect((await git(['add', 'change.txt'], work)).code).toBe(0);
    expect((await git(['commit', '-q', '-m', 'through airlock'], work)).code).toBe(0);
    const pushed = (await git(['rev-parse', 'HEAD'], work)).stdout.trim();
    const push = await git(['push', '-q', 'origin', 'main'], work);
    expect(push.code, push.stderr).toBe(0);

    // The bare repo on the server now has the commit.
    const remote = await runProcess('git', ['rev-parse', 'refs/heads/main'], { cwd: server.repoDir, env: isolatedGitEnv(home) });
    expect(remote.stdout.trim()).toBe(pushed);
    // The server challenged, and then saw the client's real credentials (the proxy passes them on).
    expect(server.authSeen).toContain('Basic ' + Buffer.from(`git-user:${PASSWORD}`).toString('base64'));
    expect(server.requests.some((r) => r.method === 'POST' && r.url === '/repo.git/git-receive-pack')).toBe(true);

    const lines = await airlock.auditLines();
    const receive = lines.find((l) => l.kind === 'request' && l.path === '/repo.git/git-receive-pack' && l.status === 200);
    expect(receive, JSON.stringify(lines, null, 1)).toBeDefined();
    expect(receive!.bytes_up).toBeGreaterThan(0);
    expect(lines.some((l) => l.status === 401)).toBe(true); // the challenge is audited too
    // Credentials in the URL never reach the audit log.
    expect(JSON.stringify(lines)).not.toContain(PASSWORD);
  }, 30_000);

  it('a path outside the rule is refused to git as 403', async () => {
    const r = await git(['ls-remote', `https://git-user:${PASSWORD}@github.com/other.git`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/403/);
  }, 30_000);
});
