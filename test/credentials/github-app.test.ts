// GitHub App installation tokens minted per session on the host: the real gh and git CLIs in a
// session holding only a placeholder work against a GitHub App stand-in (api.github.com) and a
// git http-backend (github.com) that accept only live tokens the App issued for the listed
// repositories. The token request uses the proxy's roots and resolve overrides (--resolve and
// --upstream-ca), as in production. Each session mints its own token; tokens are renewed before
// they expire; failures of the token endpoint give the session a 502 naming the credential.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { createTestPki, isolatedGitEnv, rmTmp, runCli, runProcess, sleep, startAirlock, startGitServer, tmpDir, toResolveMap, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, GitServer, TestPki } from '../helpers/servers.js';
import { startGithubAppStandIn } from '../helpers/github-app-standin.js';
import type { GithubAppStandIn } from '../helpers/github-app-standin.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory, secretHandle, SecretSourceError } from '../../src/credentials/sources.js';
import { parsePolicy } from '../../src/policy/index.js';
import { proxyUrl as sessionProxyUrl } from '../../src/sessions/registry.js';
import type { Session } from '../../src/sessions/session.js';

let pki: TestPki;
let dir: string;
let app: GithubAppStandIn;
let git: GitServer;

function policyFor(opts: { keyFile?: string; installationId?: string; repositories?: string } = {}): string {
  return `version: 1
name: github-app-test
allow:
  - host: api.github.com
  - host: github.com
  - host: example.com
credentials:
  - preset: github-app
    secret:
      github_app:
        app_id: ${app.appId}
        private_key: ${opts.keyFile ?? app.keyFile}
        installation_id: ${opts.installationId ?? app.installationId}
        repositories: ${opts.repositories ?? '[octo/repo]'}
        permissions: { contents: write, metadata: read }
`;
}

interface Proxy {
  airlock: AirlockHandle;
  logLines: string[];
}

async function startProxy(policy: string): Promise<Proxy> {
  const logLines: string[] = [];
  const log = pino({ base: null }, { write: (line: string) => logLines.push(line) });
  // example.com too, so that even a request wrongly let through stays on this machine.
  const resolve = { 'api.github.com:443': app.upstream.port, 'github.com:443': git.port, 'example.com:443': app.upstream.port };
  const airlock = await startAirlock({
    policy,
    resolve,
    upstreamCa: [pki.caPem],
    log,
    // As cli/runtime.ts wires it: token requests use the proxy's roots and resolve overrides.
    credentials: credentialsFactory({}, { ca: [pki.caPem], resolve: toResolveMap(resolve) }),
  });
  return { airlock, logLines };
}

function sessionEnv(session: Session, port: number, home: string): NodeJS.ProcessEnv {
  return isolatedGitEnv(home, {
    ...session.credentials.sessionEnv,
    GH_CONFIG_DIR: home,
    GH_HOST: 'github.com',
    GH_PROMPT_DISABLED: '1',
    GH_NO_UPDATE_NOTIFIER: '1',
    NO_COLOR: '1',
    HTTPS_PROXY: sessionProxyUrl(session, '127.0.0.1', port),
    SSL_CERT_FILE: session.bundlePath,
    GIT_SSL_CAINFO: session.bundlePath,
  });
}

const gh = (env: NodeJS.ProcessEnv, args: string[]) => runProcess('gh', args, { env, timeoutMs: 30_000 });

function filesUnder(path: string): string[] {
  return readdirSync(path).flatMap((name) => {
    const p = join(path, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [readFileSync(p, 'latin1')];
  });
}

/** Every minted token and the App key, in every form, absent from `text`. */
function expectNoSecrets(text: string): void {
  for (const t of app.issued) expect(secretLeaks(text, t.token)).toEqual([]);
  expect(text).not.toContain(app.keyPem.split('\n')[1]!);
}

beforeAll(async () => {
  pki = await createTestPki();
  dir = tmpDir('airlock-github-app-');
  app = await startGithubAppStandIn({ pki, dir, repositories: ['repo', 'other'] });
  git = await startGitServer({ pki, names: ['github.com'], authorize: (authorization, path) => app.authorizeGit(authorization, path) });
}, 60_000);

afterAll(async () => {
  await app?.close();
  await git?.close();
  rmTmp(pki?.dir, dir);
});

describe('GitHub App tokens through an in-process proxy', () => {
  let proxy: Proxy;
  let home: string;

  beforeAll(async () => {
    proxy = await startProxy(policyFor());
    home = tmpDir('airlock-github-app-home-');
  });
  afterAll(async () => {
    await proxy?.airlock.close();
    rmTmp(home);
  });

  it('gh works with a token the App minted for the listed repositories only; nothing real reaches the session', async () => {
    const { airlock } = proxy;
    const env = sessionEnv(airlock.session, airlock.port, home);
    expect(env.GH_TOKEN).toMatch(/^ghs_airlock-github-app-[0-9a-f]{24}$/);
    const r = await gh(env, ['api', 'repos/octo/repo']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ full_name: 'octo/repo' });
    // One token request, whose JWT the stand-in verified with the App's public key, narrowed as listed.
    expect(app.tokenRequests.filter((t) => t.jwtOk)).toHaveLength(1);
    expect(app.issued).toHaveLength(1);
    expect(app.issued[0]).toMatchObject({ repositories: ['repo'], permissions: { contents: 'write', metadata: 'read' } });
    // The token is limited: the installation's other repository is not visible with it.
    const other = await gh(env, ['api', 'repos/octo/other']);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain('Not Found');
    // The stand-in saw the real token, never the placeholder.
    expect(app.restTokens).toEqual([app.issued[0]!.token, app.issued[0]!.token]);
    for (const req of app.upstream.requests) expect(JSON.stringify(req.headers)).not.toContain(env.GH_TOKEN!);
    // Audit lines are written as responses close: wait for both.
    await waitFor(async () => (await airlock.auditLines()).filter((l) => l.host === 'api.github.com' && l.credentials?.includes('github-app')).length === 2, 5_000, 'two audit lines');
    const audit = await airlock.auditLines();
    expectNoSecrets(r.stdout + r.stderr + other.stdout + other.stderr + JSON.stringify(audit) + proxy.logLines.join('') + filesUnder(airlock.session.dir).join(''));
  });

  it('an endpoint echoing the request gives the session its placeholder back, not the minted token', async () => {
    const { airlock } = proxy;
    const env = sessionEnv(airlock.session, airlock.port, home);
    const r = await gh(env, ['api', 'echo']);
    expect(r.code, r.stderr).toBe(0);
    const echoed = (JSON.parse(r.stdout) as { headers: { authorization: string } }).headers.authorization;
    expect(echoed).toBe(`token ${env.GH_TOKEN}`);
    // The stand-in did receive a minted token; the scrub is what kept it out.
    expect(app.upstream.requests.at(-1)!.headers.authorization).toMatch(/^token ghs_[0-9a-f]{36}$/);
    expectNoSecrets(r.stdout + r.stderr);
    const line = await airlock.waitForAudit((l) => l.path === '/echo');
    expect(line.detail).toBe('secret_scrubbed');
  });

  it('the placeholder sent to a host the credential is not bound to is refused before any token is minted', async () => {
    const { airlock } = proxy;
    const env = sessionEnv(airlock.session, airlock.port, home);
    const before = app.tokenRequests.length;
    const r = await runProcess('curl', ['-sS', '-i', '--suppress-connect-headers', '-H', `Authorization: token ${env.GH_TOKEN}`, 'https://example.com/collect'], { env, timeoutMs: 30_000 });
    expect(r.stdout).toMatch(/^HTTP\/1\.1 403 /);
    expect(app.tokenRequests.length).toBe(before);
  });

  it('git clones and pushes over HTTPS with the minted token (Basic x-access-token)', async () => {
    const { airlock } = proxy;
    const env = sessionEnv(airlock.session, airlock.port, home);
    const work = tmpDir('airlock-github-app-git-');
    try {
      const script = [
        'set -e',
        'git clone -q "https://x-access-token:$GH_TOKEN@github.com/repo.git" clone',
        'cd clone',
        'echo minted > minted.txt && git add minted.txt && git commit -q -m "pushed with an app token"',
        'git push -q origin HEAD:main',
      ].join('\n');
      const r = await runProcess('sh', ['-c', script], { cwd: work, env, timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      const log = await runProcess('git', ['log', '--format=%s', '-1', 'main'], { cwd: git.repoDir, env: isolatedGitEnv(work) });
      expect(log.stdout.trim()).toBe('pushed with an app token');
      // git's Basic credentials carried the minted token upstream, never the placeholder.
      expect(git.authSeen.length).toBeGreaterThan(0);
      for (const seen of git.authSeen) expect(Buffer.from(seen.slice(6), 'base64').toString()).not.toContain(env.GH_TOKEN!);
      expect(git.authSeen.some((seen) => app.issued.some((t) => Buffer.from(seen.slice(6), 'base64').toString() === `x-access-token:${t.token}`))).toBe(true);
      expectNoSecrets(r.stdout + r.stderr + filesUnder(join(work, 'clone', '.git')).join(''));
    } finally {
      rmTmp(work);
    }
  });

  it('a second session in the same proxy mints its own token', async () => {
    const { airlock } = proxy;
    const firstEnv = sessionEnv(airlock.session, airlock.port, home);
    expect((await gh(firstEnv, ['api', 'repos/octo/repo'])).code).toBe(0);
    const firsts = app.restTokens.at(-1)!;
    const second = await airlock.runtime.sessions.create(parsePolicy(policyFor(), 'second.yaml'));
    try {
      const before = app.issued.length;
      const env = sessionEnv(second, airlock.port, home);
      expect(env.GH_TOKEN).not.toBe(firstEnv.GH_TOKEN);
      const r = await gh(env, ['api', 'repos/octo/repo']);
      expect(r.code, r.stderr).toBe(0);
      expect(app.issued).toHaveLength(before + 1);
      const mine = app.issued.at(-1)!.token;
      expect(mine).not.toBe(firsts);
      expect(app.restTokens.at(-1)).toBe(mine);
      // The first session still uses its own.
      const again = await gh(firstEnv, ['api', 'repos/octo/repo']);
      expect(again.code, again.stderr).toBe(0);
      expect(app.restTokens.at(-1)).toBe(firsts);
      // The second session ends: its token is revoked at once, the first session's is not.
      await airlock.runtime.sessions.remove(second.id);
      expect(app.revoked).toEqual([mine]);
      expect(app.allows(`token ${mine}`, 'repo')).toBeNull();
      expect((await gh(firstEnv, ['api', 'repos/octo/repo'])).code).toBe(0);
    } finally {
      await airlock.runtime.sessions.remove(second.id);
    }
  });
});

describe('renewal', () => {
  it('renews the token before it expires and keeps using one token until then', async () => {
    app.mode = { lifetimeMs: 4_000 };
    const proxy = await startProxy(policyFor());
    const home = tmpDir('airlock-github-app-home-');
    try {
      const env = sessionEnv(proxy.airlock.session, proxy.airlock.port, home);
      const before = app.issued.length;
      for (let i = 0; i < 2; i++) expect((await gh(env, ['api', 'repos/octo/repo'])).code).toBe(0);
      expect(app.issued).toHaveLength(before + 1);
      // Renewal is due at half a short token's life (2 s here); after it, a new token is used.
      await sleep(2_300);
      const renewing = Date.now();
      const r = await gh(env, ['api', 'repos/octo/repo']);
      expect(r.code, r.stderr).toBe(0);
      expect(app.issued).toHaveLength(before + 2);
      expect(app.restTokens.at(-1)).toBe(app.issued.at(-1)!.token);
      expect(app.issued.at(-1)!.token).not.toBe(app.issued.at(-2)!.token);
      // Renewal was ahead of expiry: the stand-in would still have taken the old token.
      expect(app.issued.at(-2)!.expiresAt).toBeGreaterThan(renewing);
      // A token left to expire (an idle session) is replaced on the next request.
      await sleep(4_200);
      expect(app.issued.at(-1)!.expiresAt).toBeLessThan(Date.now());
      const later = await gh(env, ['api', 'repos/octo/repo']);
      expect(later.code, later.stderr).toBe(0);
      expect(app.issued).toHaveLength(before + 3);
      expect(app.restTokens.at(-1)).toBe(app.issued.at(-1)!.token);
    } finally {
      app.mode = { lifetimeMs: 3600_000 };
      await proxy.airlock.close();
      rmTmp(home);
    }
  }, 30_000);
});

describe('failures are clear and name no secret', () => {
  it('a malformed private key file is a start error naming the file', () => {
    const bad = join(dir, 'broken.pem');
    writeFileSync(bad, '-----BEGIN RSA PRIVATE KEY-----\nTUlJRW93SUJBQUtDQVFFQXNlY3JldGtleW1hdGVyaWFs\n-----END RSA PRIVATE KEY-----\n');
    const spec = parsePolicy(policyFor({ keyFile: bad }), 'p.yaml').credentials[0]!;
    let error: unknown;
    try {
      secretHandle(spec, {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SecretSourceError);
    expect((error as Error).message).toContain(`the GitHub App private key file ${bad} is not a PEM private key`);
    expect((error as Error).message).not.toContain('TUlJRW93SUJBQUtDQVFF');
    const missing = parsePolicy(policyFor({ keyFile: join(dir, 'nope.pem') }), 'p.yaml').credentials[0]!;
    expect(() => secretHandle(missing, {})).toThrow(`cannot read the GitHub App private key file ${join(dir, 'nope.pem')} (ENOENT)`);
  });

  it('airlock exec refuses to start with a malformed key, naming the file', async () => {
    const bad = join(dir, 'not-a-key.pem');
    writeFileSync(bad, 'ghp_notakeyatall0123456789\n');
    const policyFile = join(dir, 'bad-key.yaml');
    writeFileSync(policyFile, policyFor({ keyFile: bad }));
    const r = await runCli(['exec', '--policy', policyFile, '--state-dir', join(dir, 'state-bad'), '--', 'true'], { timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the GitHub App private key file ${bad} is not a PEM private key`);
    expect(r.stderr).not.toContain('ghp_notakeyatall');
  });

  async function failingCase(policy: string, expectStatusText: RegExp, fix: RegExp, twice = false) {
    const proxy = await startProxy(policy);
    const home = tmpDir('airlock-github-app-home-');
    try {
      const before = app.tokenRequests.length;
      const env = sessionEnv(proxy.airlock.session, proxy.airlock.port, home);
      const r = await runProcess('curl', ['-sS', '-i', '--suppress-connect-headers', '-H', `Authorization: token ${env.GH_TOKEN}`, 'https://api.github.com/repos/octo/repo'], { env, timeoutMs: 30_000 });
      expect(r.stdout).toMatch(/^HTTP\/1\.1 502 /);
      expect(r.stdout).toContain('credential "github-app" (a GitHub App installation token) is unavailable');
      expect(r.stdout).toMatch(expectStatusText);
      expect(r.stdout).toMatch(fix);
      const line = await proxy.airlock.waitForAudit((l) => l.path === '/repos/octo/repo');
      expect(line).toMatchObject({ status: 502, reason: 'upstream_error', detail: 'credential unavailable' });
      const logged = proxy.logLines.join('');
      expect(logged).toContain('credential swap failed');
      expect(logged).toContain(`GitHub App ${app.appId}`);
      expectNoSecrets(r.stdout + r.stderr + logged + JSON.stringify(await proxy.airlock.auditLines()));
      // No JWT in anything the session or operator sees.
      expect(r.stdout + logged).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
      if (twice) {
        const again = await runProcess('curl', ['-sS', '-i', '--suppress-connect-headers', '-H', `Authorization: token ${env.GH_TOKEN}`, 'https://api.github.com/repos/octo/repo'], { env, timeoutMs: 30_000 });
        expect(again.stdout).toMatch(/^HTTP\/1\.1 502 /);
      }
      return { attempts: app.tokenRequests.length - before, stdout: r.stdout };
    } finally {
      await proxy.airlock.close();
      rmTmp(home);
    }
  }

  it('a key GitHub does not know (401): 502 naming the credential and the fix, no retry', async () => {
    const { privateKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('rsa', { modulusLength: 2048 }));
    const other = join(dir, 'other-app.pem');
    writeFileSync(other, privateKey.export({ type: 'pkcs1', format: 'pem' }));
    const { attempts } = await failingCase(policyFor({ keyFile: other }), /refused the App's signed request \(401: A JSON web token could not be decoded\)/, /private key .* belongs to/);
    expect(attempts).toBe(1);
    expect(app.tokenRequests.at(-1)).toMatchObject({ jwtOk: false, problem: 'bad signature' });
  }, 30_000);

  it('a host clock far behind GitHub\'s (401 with a Date an hour ahead): 502 saying to fix the clock', async () => {
    app.mode = { lifetimeMs: 3600_000, clockAheadMs: 3600_000 };
    try {
      const { attempts } = await failingCase(policyFor(), /this host's clock is 3[56]\d\d s behind GitHub's/, /Set this host's clock right \(NTP\)/);
      expect(attempts).toBe(1);
      expect(app.tokenRequests.at(-1)).toMatchObject({ jwtOk: false, problem: 'expired' });
    } finally {
      app.mode = { lifetimeMs: 3600_000 };
    }
  }, 30_000);

  it('an unknown installation (404): 502 naming installation_id, no retry', async () => {
    const { attempts } = await failingCase(policyFor({ installationId: '1234' }), /installation 1234 of App 424242 was not found \(404\)/, /Check installation_id/);
    expect(attempts).toBe(1);
  }, 30_000);

  it('a repository outside the installation (422): 502 naming repositories:', async () => {
    await failingCase(policyFor({ repositories: '[octo/secret-project]' }), /refused to narrow the token \(422: There is at least one repository/, /repositories:/);
  }, 30_000);

  it('a token endpoint answering 500: retried a bounded number of times with backoff, then 502', async () => {
    app.mode = { lifetimeMs: 3600_000, fail: 500 };
    try {
      const started = Date.now();
      const { attempts } = await failingCase(policyFor(), /the token endpoint answered 500/, /try again/, true);
      // Three attempts for the first request; the second, right after, gets the same answer.
      expect(attempts).toBe(3);
      // Backoff 300 ms then 600 ms.
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    } finally {
      app.mode = { lifetimeMs: 3600_000 };
    }
  }, 30_000);

  it('a token endpoint answering garbage: 502 saying so', async () => {
    app.mode = { lifetimeMs: 3600_000, fail: 'garbage' };
    try {
      const { attempts } = await failingCase(policyFor(), /answered 200 with something that is not an installation token/, /api: setting/);
      expect(attempts).toBe(1);
    } finally {
      app.mode = { lifetimeMs: 3600_000 };
    }
  }, 30_000);
});

describe('airlock exec (the CLI wiring)', () => {
  it('mints through --resolve and --upstream-ca; gh and git push work; the child holds only the placeholder', async () => {
    const work = tmpDir('airlock-github-app-exec-');
    try {
      const policyFile = join(work, 'policy.yaml');
      writeFileSync(policyFile, policyFor());
      const before = app.issued.length;
      const script = [
        'set -e',
        'gh api repos/octo/repo --jq .full_name',
        'git clone -q "https://x-access-token:$GH_TOKEN@github.com/repo.git" clone',
        'cd clone && echo exec > exec.txt && git add exec.txt && git commit -q -m "pushed from airlock exec"',
        'git push -q origin HEAD:main',
        'env > ../child-env.txt',
      ].join('\n');
      const r = await runCli(
        ['exec', '--policy', policyFile, '--state-dir', join(work, 'state'), '--resolve', `api.github.com:443:127.0.0.1:${app.upstream.port}`, '--resolve', `github.com:443:127.0.0.1:${git.port}`, '--upstream-ca', pki.caFile, '--', 'sh', '-c', script],
        { cwd: work, env: isolatedGitEnv(work, { GH_CONFIG_DIR: work, GH_PROMPT_DISABLED: '1', GH_NO_UPDATE_NOTIFIER: '1', NO_COLOR: '1' }), timeoutMs: 90_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe('octo/repo');
      expect(app.issued).toHaveLength(before + 1);
      const log = await runProcess('git', ['log', '--format=%s', '-1', 'main'], { cwd: git.repoDir, env: isolatedGitEnv(work) });
      expect(log.stdout.trim()).toBe('pushed from airlock exec');
      const childEnv = readFileSync(join(work, 'child-env.txt'), 'utf8');
      expect(childEnv).toMatch(/^GH_TOKEN=ghs_airlock-github-app-[0-9a-f]{24}$/m);
      // The session's end revoked its token.
      expect(app.revoked).toContain(app.issued.at(-1)!.token);
      expectNoSecrets(r.stdout + r.stderr + childEnv + filesUnder(join(work, 'state')).join('') + filesUnder(join(work, 'clone', '.git')).join(''));
    } finally {
      rmTmp(work);
    }
  }, 120_000);
});
