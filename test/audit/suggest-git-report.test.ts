// policy suggest from a real git session in report mode: the real git client clones and pushes
// through Airlock to `git http-backend` under a git rule that lists none of it, so every step is
// let through and audited as would_deny with the ref updates named. The suggested policy, put in
// force in a second session, lets the same clone and push through and still refuses a push to
// another branch.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createTestPki, isolatedGitEnv, rmTmp, runProcess, startAirlock, startGitServer, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, GitServer, TestPki } from '../helpers/servers.js';
import { suggestPolicy } from '../../src/audit/suggest.js';

const REPORT = `version: 1
name: git-report
mode: report
allow:
  - host: github.com
    git:
      fetch: ["other/*"]
`;

let pki: TestPki;
let server: GitServer;
let report: AirlockHandle;
let enforced: AirlockHandle | undefined;
let home: string;

beforeAll(async () => {
  pki = await createTestPki();
  server = await startGitServer({ pki, names: ['github.com'] });
  home = tmpDir('airlock-suggest-git-');
  mkdirSync(join(dirname(server.repoDir), 'acme'), { recursive: true });
  const dir = join(dirname(server.repoDir), 'acme', 'app.git');
  const genv = isolatedGitEnv(home);
  expect((await runProcess('git', ['clone', '-q', '--bare', server.repoDir, dir], { env: genv })).code).toBe(0);
  await runProcess('git', ['config', 'http.receivepack', 'true'], { cwd: dir, env: genv });
  report = await startAirlock({ policy: REPORT, resolve: { 'github.com:443': server.port }, upstreamCa: [pki.caPem] });
}, 60_000);

afterAll(async () => {
  await report?.close();
  await enforced?.close();
  await server?.close();
  rmTmp(home, pki?.dir);
});

async function session(through: AirlockHandle, name: string) {
  const env = isolatedGitEnv(home, { HTTPS_PROXY: through.proxyUrl, GIT_SSL_CAINFO: through.bundlePath });
  const work = join(home, name);
  const git = (args: string[], cwd = work) => runProcess('git', args, { cwd, env, timeoutMs: 60_000 });
  const clone = await git(['clone', '-q', 'https://github.com/acme/app.git', work], home);
  expect(clone.code, clone.stderr).toBe(0);
  await git(['checkout', '-q', '-b', `agent/${name}`]);
  writeFileSync(join(work, 'f.txt'), `${name}\n`);
  await git(['add', 'f.txt']);
  await git(['commit', '-q', '-m', name]);
  return git;
}

describe('suggest from a report-mode git session', () => {
  it('learns the fetched repository and the pushed branch; the suggestion enforces just that', async () => {
    const git = await session(report, 'x');
    const push = await git(['push', '-q', 'origin', 'agent/x']);
    expect(push.code, push.stderr).toBe(0);
    await report.waitForAudit((l) => l.path.endsWith('/git-receive-pack') && l.action === 'would_deny');
    const suggestion = suggestPolicy(await report.auditLines(), { session: report.session.id });
    const rule = suggestion.policy.allow.find((r) => r.git)!;
    expect(rule.git!.fetch).toEqual(['acme/app']);
    expect(rule.git!.push).toMatchObject([{ repo: 'acme/app', branches: ['agent/x'], tags: [], create: true, force: false, delete: false }]);

    enforced = await startAirlock({ policy: suggestion.text, resolve: { 'github.com:443': server.port }, upstreamCa: [pki.caPem] });
    const again = await session(enforced, 'y');
    // The branch it learned goes through; another branch is refused in git's own words.
    await again(['checkout', '-q', '-b', 'agent/x', 'origin/agent/x']);
    await again(['commit', '-q', '--allow-empty', '-m', 'more']);
    const ok = await again(['push', '-q', 'origin', 'agent/x']);
    expect(ok.code, ok.stderr).toBe(0);
    const refused = await again(['push', 'origin', 'agent/y']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/\[remote rejected\] agent\/y -> agent\/y \(airlock: /);
  }, 120_000);
});
