// git rules enforced on the wire, with the real git client against git http-backend (over HTTPS,
// as github.com) through an Airlock session that holds only a placeholder token: which
// repositories may be fetched, which branches pushed, and how (create, fast-forward, force,
// delete, tags). Every refused push is checked on the server: its refs did not move.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createTestPki, isolatedGitEnv, rmTmp, runProcess, startAirlock, startGitServer, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, GitServer, TestPki } from '../helpers/servers.js';
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { httpsViaProxy } from '../helpers/clients.js';
import { packOf, pushCommands } from '../helpers/git-packs.js';

const SECRET = 'ghs_GitRulesRealToken0123456789abcdefXY';
const PLACEHOLDER = 'ghp_airlockGitRulesPlaceholder00000000';

const POLICY = `version: 1
name: git-rules
allow:
  - host: github.com
    git:
      fetch: ["acme/*"]
      push:
        - repo: acme/app
          branches: ["agent/*"]
credentials:
  - name: github
    env: [GH_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_GITHUB_TOKEN }
    hosts: [github.com]
    in: [basic]
`;

let pki: TestPki;
let server: GitServer;
let airlock: AirlockHandle;
let home: string;
let env: NodeJS.ProcessEnv;
let root: string;
let work: string;

const git = (args: string[], cwd = work) => runProcess('git', args, { cwd, env, timeoutMs: 60_000 });
const url = (repo: string) => `https://x-access-token:${PLACEHOLDER}@github.com/${repo}.git`;

/** A ref as the server has it ('' when absent). */
async function serverRef(ref: string, repo = 'acme/app'): Promise<string> {
  const r = await runProcess('git', ['rev-parse', '--verify', '-q', ref], { cwd: join(root, `${repo}.git`), env: isolatedGitEnv(home) });
  return r.stdout.trim();
}

async function ok(args: string[], cwd = work): Promise<string> {
  const r = await git(args, cwd);
  expect(r.code, `git ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

async function commit(message: string, file = 'file.txt'): Promise<string> {
  writeFileSync(join(work, file), `${message}\n`);
  await ok(['add', file]);
  await ok(['commit', '-q', '-m', message]);
  return ok(['rev-parse', 'HEAD']);
}

beforeAll(async () => {
  pki = await createTestPki();
  server = await startGitServer({ pki, names: ['github.com'], auth: { user: 'x-access-token', password: SECRET } });
  root = dirname(server.repoDir);
  home = tmpDir('airlock-git-rules-');
  for (const repo of ['acme/app', 'acme/lib', 'evil/secret']) {
    mkdirSync(join(root, dirname(repo)), { recursive: true });
    const dir = join(root, `${repo}.git`);
    const genv = isolatedGitEnv(home);
    expect((await runProcess('git', ['clone', '-q', '--bare', server.repoDir, dir], { env: genv })).code).toBe(0);
    await runProcess('git', ['config', 'http.receivepack', 'true'], { cwd: dir, env: genv });
    // Keep every received pack as sent, so a test can look at how its objects were stored.
    await runProcess('git', ['config', 'receive.unpackLimit', '1'], { cwd: dir, env: genv });
  }
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { 'github.com:443': server.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
  });
  env = isolatedGitEnv(home, { HTTPS_PROXY: airlock.proxyUrl, GIT_SSL_CAINFO: airlock.bundlePath });
  work = join(home, 'app');
  const clone = await git(['clone', '-q', url('acme/app'), work], home);
  expect(clone.code, clone.stderr).toBe(0);
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  await server?.close();
  rmTmp(home, pki?.dir);
});

describe('git rules through a real session', () => {
  it('clones a listed repository; an unlisted one is refused with a reason git prints', async () => {
    expect(await ok(['rev-parse', 'HEAD'])).toBe(server.headCommit);
    expect((await git(['ls-remote', url('acme/lib')], home)).code).toBe(0);
    const r = await git(['clone', '-q', url('evil/secret'), join(home, 'secret')], home);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/remote: Airlock: git fetch \(ref advertisement\) of evil\/secret on github.com is not allowed: repository evil\/secret may not be cloned or fetched: allow\[0\] github.com allows fetching acme\/\*/);
    const line = await airlock.waitForAudit((l) => l.path.startsWith('/evil/secret.git/info/refs'));
    expect(line).toMatchObject({ action: 'deny', reason: 'path_not_allowed', status: 403 });
  }, 60_000);

  it('pushes a new agent/ branch, then a multi-commit fast-forward and a merge', async () => {
    await ok(['checkout', '-q', '-b', 'agent/x']);
    const first = await commit('first on agent/x');
    const push = await git(['push', '-q', 'origin', 'agent/x']);
    expect(push.code, push.stderr).toBe(0);
    expect(await serverRef('refs/heads/agent/x')).toBe(first);
    let line = await airlock.waitForAudit((l) => l.path === '/acme/app.git/git-receive-pack' && (l.detail ?? '').includes('create'));
    expect(line).toMatchObject({ action: 'allow', status: 200, credentials: ['github'] });
    expect(line.detail).toMatch(/^git push acme\/app: refs\/heads\/agent\/x create allowed \(create allowed by allow\[0\]\.git\.push\[0\]\)/);

    await commit('second');
    await commit('third', 'other.txt');
    const fourth = await commit('fourth');
    expect((await git(['push', '-q', 'origin', 'agent/x'])).code).toBe(0);
    expect(await serverRef('refs/heads/agent/x')).toBe(fourth);
    line = await airlock.waitForAudit((l) => (l.detail ?? '').includes('update allowed (fast-forward)') && (l.detail ?? '').includes('3 commits'));
    expect(line.action).toBe('allow');

    // A merge of a side branch: its first parent is the old tip.
    await ok(['checkout', '-q', '-b', 'side', first]);
    await commit('on the side', 'side.txt');
    await ok(['checkout', '-q', 'agent/x']);
    await ok(['merge', '-q', '--no-ff', '-m', 'merge side', 'side']);
    const merge = await ok(['rev-parse', 'HEAD']);
    expect((await ok(['rev-list', '--parents', '-n', '1', 'HEAD'])).split(' ')).toHaveLength(3);
    const r = await git(['push', '-q', 'origin', 'agent/x']);
    expect(r.code, r.stderr).toBe(0);
    expect(await serverRef('refs/heads/agent/x')).toBe(merge);
  }, 60_000);

  it('checks a fast-forward whose pushed commits are stored as deltas', async () => {
    // Commits with long, nearly equal messages: git's pack-objects stores them as deltas.
    const text = Array.from({ length: 200 }, (_, i) => `line ${i} of a long commit message that repeats`).join('\n');
    const before = await serverRef('refs/heads/agent/x');
    for (let i = 0; i < 6; i++) {
      writeFileSync(join(work, 'delta.txt'), `${i}\n`);
      await ok(['add', 'delta.txt']);
      await ok(['commit', '-q', '-m', `delta ${i}\n\n${text}`]);
    }
    const tip = await ok(['rev-parse', 'HEAD']);
    const packsBefore = new Set(readdirSync(join(root, 'acme/app.git/objects/pack')));
    const r = await git(['push', '-q', 'origin', 'agent/x']);
    expect(r.code, r.stderr).toBe(0);
    expect(await serverRef('refs/heads/agent/x')).toBe(tip);
    expect(before).not.toBe(tip);
    // The pack the server received holds commits stored as deltas (verify-pack: a depth and a base).
    const received = readdirSync(join(root, 'acme/app.git/objects/pack')).filter((f) => f.endsWith('.idx') && !packsBefore.has(f));
    expect(received).toHaveLength(1);
    const verify = await runProcess('git', ['verify-pack', '-v', join(root, 'acme/app.git/objects/pack', received[0]!)], { env: isolatedGitEnv(home) });
    expect(verify.stdout.split('\n').filter((l) => / commit .* \d+ [0-9a-f]{40}$/.test(l)).length).toBeGreaterThan(0);
  }, 60_000);

  it('refuses a push to main, in git protocol, and leaves main alone', async () => {
    const before = await serverRef('refs/heads/main');
    const r = await git(['push', 'origin', 'HEAD:main']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/! \[remote rejected\] HEAD -> main \(airlock: branch main may not be pushed to acme\/app \(the policy allows only branches agent\/\*\)\)/);
    expect(r.stderr).toMatch(/remote: Airlock refused this push to acme\/app/);
    expect(await serverRef('refs/heads/main')).toBe(before);
    const line = await airlock.waitForAudit((l) => (l.detail ?? '').includes('refs/heads/main update refused'));
    expect(line).toMatchObject({ action: 'deny', reason: 'git_ref_not_allowed', rule: 'allow[0] github.com', status: 200 });
    // Audited once: the upstream request the refusal stopped leaves no line of its own.
    const pushes = (await airlock.auditLines()).filter((l) => l.path === '/acme/app.git/git-receive-pack');
    expect(pushes.filter((l) => l.status === 499 || l.reason === 'upstream_error')).toEqual([]);
    expect(pushes.filter((l) => (l.detail ?? '').includes('refs/heads/main'))).toHaveLength(1);
  }, 60_000);

  it('refuses a force push to agent/x and leaves it alone', async () => {
    const before = await serverRef('refs/heads/agent/x');
    await ok(['commit', '-q', '--amend', '-m', 'rewritten history']);
    const r = await git(['push', '--force', 'origin', 'agent/x']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/! \[remote rejected\] agent\/x -> agent\/x \(airlock: not a fast-forward as far as Airlock can tell \(the pushed history of [0-9a-f]{10} leads to [0-9a-f]{10} on the server, not to [0-9a-f]{10}[^)]*\); force: false in allow\[0\]\.git\.push\[0\], so branch agent\/x may not be force-pushed\)/);
    expect(await serverRef('refs/heads/agent/x')).toBe(before);
    await ok(['reset', '-q', '--hard', before]);
  }, 60_000);

  it('refuses a branch deletion and a tag push', async () => {
    const before = await serverRef('refs/heads/agent/x');
    const del = await git(['push', 'origin', ':agent/x']);
    expect(del.code).not.toBe(0);
    expect(del.stderr).toMatch(/! \[remote rejected\] agent\/x \(airlock: deleting branch agent\/x is not allowed \(delete: false in allow\[0\]\.git\.push\[0\]\)\)/);
    expect(await serverRef('refs/heads/agent/x')).toBe(before);

    await ok(['tag', 'v1']);
    const tag = await git(['push', 'origin', 'v1']);
    expect(tag.code).not.toBe(0);
    expect(tag.stderr).toMatch(/! \[remote rejected\] v1 -> v1 \(airlock: tag v1 may not be pushed to acme\/app \(the policy allows no tags\)\)/);
    expect(await serverRef('refs/tags/v1')).toBe('');
  }, 60_000);

  it('refuses a fast-forward it cannot prove: the new commit builds on another branch already on the server', async () => {
    const x = await serverRef('refs/heads/agent/x');
    // agent/y = x + one commit, pushed (a create); then agent/x is pushed on top of agent/y's tip.
    await ok(['checkout', '-q', '-b', 'agent/y', x]);
    const y = await commit('on agent/y', 'y.txt');
    expect((await git(['push', '-q', 'origin', 'agent/y'])).code).toBe(0);
    const n = await commit('builds on agent/y', 'y.txt');
    const r = await git(['push', 'origin', 'HEAD:agent/x']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`the pushed history of ${n.slice(0, 10)} leads to ${y.slice(0, 10)} on the server, not to ${x.slice(0, 10)}`);
    expect(await serverRef('refs/heads/agent/x')).toBe(x);
    // The same when nothing new is pushed: agent/x set to agent/y's tip, which the server has.
    const same = await git(['push', 'origin', `${y}:refs/heads/agent/x`]);
    expect(same.code).not.toBe(0);
    expect(same.stderr).toContain(`the new commit ${y.slice(0, 10)} is not among the pushed commits`);
    expect(await serverRef('refs/heads/agent/x')).toBe(x);
    await ok(['checkout', '-q', 'agent/x']);
  }, 60_000);

  it('never lets the real token reach the session side', async () => {
    const lines = await airlock.auditLines();
    expect(JSON.stringify(lines)).not.toContain(SECRET);
    expect(server.authSeen.every((a) => a === 'Basic ' + Buffer.from(`x-access-token:${SECRET}`).toString('base64'))).toBe(true);
  });

  it('a report-mode session lets a push its git rule refuses through, audited as would_deny', async () => {
    const report = await startAirlock({
      policy: POLICY.replace('name: git-rules\n', 'name: git-rules-report\nmode: report\n'),
      resolve: { 'github.com:443': server.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
    });
    try {
      const reportEnv = isolatedGitEnv(home, { HTTPS_PROXY: report.proxyUrl, GIT_SSL_CAINFO: report.bundlePath });
      await ok(['checkout', '-q', '-b', 'report-x']);
      const tip = await commit('outside agent/*', 'report.txt');
      const r = await runProcess('git', ['push', 'origin', 'HEAD:refs/heads/report/x'], { cwd: work, env: reportEnv, timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      expect(await serverRef('refs/heads/report/x')).toBe(tip);
      const line = await report.waitForAudit((l) => (l.detail ?? '').includes('refs/heads/report/x create refused'));
      expect(line).toMatchObject({ action: 'would_deny', reason: 'git_ref_not_allowed', rule: 'allow[0] github.com', status: 200 });
    } finally {
      await ok(['checkout', '-q', 'agent/x']);
      await report.close();
    }
  }, 60_000);
});

/** A one-commit pack whose commit inflates far past its declared size. */
function bombPack(): Buffer {
  const head = Buffer.from('PACK\0\0\0\x02\0\0\0\x01');
  const body = Buffer.concat([head, Buffer.from([0x1f | 0x80, 0x0c]), zlib.deflateSync(Buffer.alloc(32 * 1024 * 1024))]);
  return Buffer.concat([body, createHash('sha1').update(body).digest()]);
}

describe('hostile push bodies against the real server', () => {
  const ZERO = '0'.repeat(40);
  let pack: Buffer;
  let newId: string;

  const post = (body: Buffer) =>
    httpsViaProxy({
      proxyPort: airlock.port,
      proxyAuthorization: airlock.proxyAuthorization,
      url: 'https://github.com/acme/app.git/git-receive-pack',
      ca: [readFileSync(airlock.bundlePath, 'utf8')],
      method: 'POST',
      headers: {
        Authorization: 'Basic ' + Buffer.from(`x-access-token:${PLACEHOLDER}`).toString('base64'),
        'Content-Type': 'application/x-git-receive-pack-request',
        'User-Agent': 'git/2.39.5',
      },
      body,
    });
  const commandsFor = (ref: string) => pushCommands([`${ZERO} ${newId} ${ref}`], 'report-status');

  beforeAll(async () => {
    const parent = server.headCommit;
    await ok(['checkout', '-q', '-b', 'hostile', parent]);
    newId = await commit('for hostile bodies', 'hostile.txt');
    pack = await packOf(work, env, [newId, `^${parent}`]);
  }, 30_000);

  // [name, body, what the answer says, what the audit line's detail says]
  const cases: Array<[string, () => Buffer, RegExp, RegExp]> = [
    ['a malformed pkt-line stream', () => Buffer.concat([Buffer.from('00zz'), pack]), /malformed pkt-line length/, /malformed pkt-line length/],
    ['a truncated pack', () => Buffer.concat([commandsFor('refs/heads/agent/t1'), pack.subarray(0, pack.length - 30)]), /ng refs\/heads\/agent\/t1 airlock: the pushed pack is refused: the pack is truncated/, /refs\/heads\/agent\/t1 create .*the pack is truncated/],
    ['a bad pack checksum', () => Buffer.concat([commandsFor('refs/heads/agent/t2'), pack.subarray(0, -1), Buffer.from([pack[pack.length - 1]! ^ 0xff])]), /ng refs\/heads\/agent\/t2 airlock: the pushed pack is refused: the pack checksum does not match/, /refs\/heads\/agent\/t2 create .*checksum/],
    ['an absurd object size', () => Buffer.concat([commandsFor('refs/heads/agent/t3'), Buffer.from('PACK\0\0\0\x02\0\0\0\x01'), Buffer.from([0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(64)]), /ng refs\/heads\/agent\/t3 airlock: the pushed pack is refused: .*(absurd size|over the limit)/, /refs\/heads\/agent\/t3 create .*(absurd size|over the limit)/],
    ['a zlib bomb in a commit', () => Buffer.concat([commandsFor('refs/heads/agent/t4'), bombPack()]), /ng refs\/heads\/agent\/t4 airlock: the pushed pack is refused: object at offset 12 inflates to more than its declared 207 bytes/, /refs\/heads\/agent\/t4 create .*inflates to more than/],
  ];
  it.each(cases)('%s is refused by Airlock and moves no ref', async (_name, make, answer, detail) => {
    const refs = () => runProcess('git', ['for-each-ref'], { cwd: join(root, 'acme/app.git'), env: isolatedGitEnv(home) }).then((r) => r.stdout);
    const before = await refs();
    const r = await post(make());
    expect(r.body).toMatch(answer);
    expect(await refs()).toBe(before);
    const line = await airlock.waitForAudit((l) => l.path === '/acme/app.git/git-receive-pack' && detail.test(l.detail ?? ''));
    expect(line).toMatchObject({ action: 'deny', reason: 'bad_request', rule: 'allow[0] github.com' });
  }, 30_000);

  it('the same request with its pack intact creates the branch (the harness can move refs)', async () => {
    const r = await post(Buffer.concat([commandsFor('refs/heads/agent/t5'), pack]));
    expect(r.status).toBe(200);
    expect(r.body).toContain('ok refs/heads/agent/t5');
    expect(await serverRef('refs/heads/agent/t5')).toBe(newId);
  }, 30_000);
});
