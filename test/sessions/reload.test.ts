// Hot reload and the denial inbox against the real daemon (`airlock proxy` from the built CLI),
// real curl through a session, a real HTTPS upstream on loopback, the policy file edited the way
// editors do (write a new file, rename it over the old one), and the terminal commands
// `airlock policy reload`, `airlock inbox`, `airlock approve` and `airlock deny`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { parsePolicy } from '../../src/policy/index.js';
import { parseAuditLines } from '../../src/audit/report.js';
import type { AuditLine } from '../../src/audit/report.js';
import { CLI_PATH, createTestPki, freePort, rmTmp, runCli, runProcess, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const SECRET = 'ghp_reloadTestSecret0123456789abcdefXYZ';

const POLICY = `# Team policy for the reload tests: this comment must survive approve.
version: 1
name: reload-test
allow:
  - host: api.github.com   # the API, read-only under /v1
    methods: [GET]
    paths: ["/v1/*"]
# credentials below are the operator's
credentials:
  - name: gh
    env: [GH_TOKEN]
    secret: { env: AIRLOCK_RELOAD_SECRET }
    hosts: [api.github.com]
`;

let pki: TestPki;
let api: TestUpstream;
let dir: string;
let stateDir: string;
let policyFile: string;
let port: number;
let daemon: ChildProcess;
let daemonLog = '';
let env: Record<string, string>;
let sessionId: string;

/** Writes the policy as editors save: a new file renamed over the old one. */
function saveByRename(text: string): void {
  const temp = join(dir, '.policy.yaml.swp');
  writeFileSync(temp, text, { mode: 0o640 });
  renameSync(temp, policyFile);
}

function curl(url: string, extra: readonly string[] = []) {
  return runProcess('curl', ['-sS', '--max-time', '10', ...extra, '-w', '\n%{http_code}', url], { env: { PATH: process.env.PATH, HOME: dir, ...env } });
}

async function status(url: string, extra: readonly string[] = []): Promise<number> {
  const r = await curl(url, extra);
  return Number(r.stdout.split('\n').pop());
}

function auditLines(): AuditLine[] {
  return parseAuditLines(readFileSync(join(stateDir, 'sessions', sessionId, 'audit.jsonl'), 'utf8'));
}

async function auditLine(pred: (l: AuditLine) => boolean): Promise<AuditLine> {
  return await waitFor(() => auditLines().find(pred), 5_000, 'the audit line');
}

function admin(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: join(stateDir, 'admin.sock'), method, path, headers: { Authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function policyStatus(): Promise<{ version: string; error?: { message: string; line: number | null; field: string | null } }> {
  const all = (await admin('GET', '/policy')).body as { session: string; version: string }[];
  return all.find((s) => s.session === sessionId)!;
}

beforeAll(async () => {
  pki = await createTestPki();
  // /v1/slow streams for about 1.5 s: a request in flight across a reload.
  api = await startHttpsUpstream({
    pki,
    names: ['api.github.com', 'uploads.github.com'],
    handler: (req, res) => {
      if (req.url === '/v1/slow') {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        let n = 0;
        const timer = setInterval(() => {
          res.write(`chunk ${n}\n`);
          if (++n === 15) {
            clearInterval(timer);
            res.end('done\n');
          }
        }, 100);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`ok ${req.method} ${req.url} auth=${req.headers.authorization === `Bearer ${SECRET}` ? 'real' : 'other'}\n`);
    },
  });
  dir = tmpDir('airlock-reload-');
  stateDir = join(dir, 'state');
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY, { mode: 0o640 });
  chmodSync(policyFile, 0o640);
  port = await freePort();
  daemon = spawn(
    process.execPath,
    [CLI_PATH, 'proxy', '--policy', policyFile, '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, '--resolve', `api.github.com:443:127.0.0.1:${api.port}`, '--resolve', `uploads.github.com:443:127.0.0.1:${api.port}`, '--upstream-ca', pki.caFile],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AIRLOCK_RELOAD_SECRET: SECRET } },
  );
  daemon.stderr!.setEncoding('utf8').on('data', (c: string) => (daemonLog += c));
  daemon.stdout!.resume();
  await waitFor(() => daemonLog.includes('airlock proxy ready') || daemon.exitCode !== null, 20_000, 'the daemon to start');
  expect(daemon.exitCode, daemonLog).toBeNull();
  const created = await runCli(['session', 'create', '--state-dir', stateDir, '--json']);
  expect(created.code, created.stderr).toBe(0);
  const info = JSON.parse(created.stdout) as { id: string; proxy_url: string; bundle: string; env: Record<string, string>; policy_file: string };
  expect(info.policy_file).toBe(policyFile);
  sessionId = info.id;
  env = { HTTPS_PROXY: info.proxy_url, CURL_CA_BUNDLE: info.bundle, ...info.env };
}, 40_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
    daemon.kill('SIGKILL');
    await new Promise((resolve) => daemon.once('exit', resolve));
  }
  await api?.close();
  rmTmp(dir, pki?.dir);
});

describe('hot reload of a session policy', () => {
  it('every audit line names the policy version it was decided under', async () => {
    expect(await status('https://api.github.com/v1/first')).toBe(200);
    const line = await auditLine((l) => l.path === '/v1/first');
    expect(line.policy_version).toBe(parsePolicy(POLICY, 'x').digest);
    expect((await policyStatus()).version).toBe(line.policy_version);
  }, 30_000);

  it('a valid edit, saved by rename, applies to new requests within a second, in the running session', async () => {
    expect(await status('https://api.github.com/v2/items')).toBe(403);
    const next = POLICY.replace('paths: ["/v1/*"]', 'paths: ["/v1/*", "/v2/*"]');
    const saved = performance.now();
    saveByRename(next);
    let applied = 0;
    await waitFor(async () => {
      if ((await status('https://api.github.com/v2/items')) !== 200) return false;
      // Upper bound: the first allowed answer was back this long after the rename.
      applied = performance.now() - saved;
      return true;
    }, 5_000, 'the edit to apply');
    console.log(`reload: the first request allowed by a saved edit was answered ${applied.toFixed(0)} ms after the rename`);
    expect(applied).toBeLessThan(1_000);
    const line = await auditLine((l) => l.path === '/v2/items' && l.status === 200);
    expect(line.policy_version).toBe(parsePolicy(next, 'x').digest);
    expect(daemonLog).toContain('reloaded');
  }, 30_000);

  it('an invalid edit keeps the old policy in force, and policy reload exits non-zero naming file, line and field', async () => {
    const before = await policyStatus();
    expect(await status('https://api.github.com/v1/x', ['-X', 'POST'])).toBe(403);
    // Would allow POST if it were half applied; the typo on line 8 makes the file invalid.
    saveByRename(POLICY.replace('methods: [GET]', 'methods: [GET, POST]').replace('# credentials below', 'typo_key: 1\n# credentials below'));
    await waitFor(async () => (await policyStatus()).error, 5_000, 'the watch to report the error');
    const r = await runCli(['policy', 'reload', '--session', sessionId, '--state-dir', stateDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${policyFile}:8: typo_key: unknown key "typo_key"`);
    expect(r.stderr).toContain(`version ${before.version} stays in force`);
    const now = await policyStatus();
    expect(now.version).toBe(before.version);
    expect(now.error).toMatchObject({ line: 8, field: 'typo_key' });
    expect(await status('https://api.github.com/v1/x', ['-X', 'POST'])).toBe(403);
    expect(daemonLog).toContain('policy reload failed');
    // Fixing the file clears the error.
    saveByRename(POLICY.replace('paths: ["/v1/*"]', 'paths: ["/v1/*", "/v2/*"]'));
    await waitFor(async () => !(await policyStatus()).error, 5_000, 'the error to clear');
  }, 30_000);

  it('a reload to a policy naming a secret source the session did not start with is refused', async () => {
    const before = await policyStatus();
    const stolen = `${POLICY}  - name: ssh\n    env: [SSH_KEY]\n    secret: { file: ${join(dir, 'id_rsa')} }\n    hosts: [api.github.com]\n`;
    saveByRename(stolen);
    const r = await runCli(['policy', 'reload', '--session', sessionId, '--state-dir', stateDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${policyFile}:14: credentials[1]: credential "ssh" (secret from file ${join(dir, 'id_rsa')}) is not one this session started with`);
    expect(r.stderr).toContain('a reload cannot add a secret source');
    expect((await policyStatus()).version).toBe(before.version);
    // Swapping the source of an existing credential is refused the same way.
    saveByRename(POLICY.replace('{ env: AIRLOCK_RELOAD_SECRET }', '{ env: HOME }'));
    const swapped = await runCli(['policy', 'reload', '--state-dir', stateDir]);
    expect(swapped.code).toBe(1);
    expect(swapped.stderr).toContain('credentials[0].secret: credential "gh" would take its secret from env HOME instead of env AIRLOCK_RELOAD_SECRET');
    expect((await policyStatus()).version).toBe(before.version);
    saveByRename(POLICY);
    await waitFor(async () => (await policyStatus()).version === parsePolicy(POLICY, 'x').digest, 5_000, 'the original policy back');
  }, 30_000);

  it('a request in flight during a reload finishes under the decision that admitted it', async () => {
    const inflight = curl('https://api.github.com/v1/slow');
    await waitFor(() => api.requests.some((q) => q.url === '/v1/slow'), 5_000, 'the slow request to start');
    const old = parsePolicy(POLICY, 'x').digest;
    const closed = POLICY.replace('paths: ["/v1/*"]', 'paths: ["/v9/*"]');
    saveByRename(closed);
    await waitFor(async () => (await policyStatus()).version === parsePolicy(closed, 'x').digest, 5_000, 'the reload');
    expect(await status('https://api.github.com/v1/after')).toBe(403);
    const r = await inflight;
    expect(r.stdout).toContain('chunk 14\ndone\n');
    expect(r.stdout.split('\n').pop()).toBe('200');
    expect((await auditLine((l) => l.path === '/v1/slow')).policy_version).toBe(old);
    expect((await auditLine((l) => l.path === '/v1/after')).policy_version).toBe(parsePolicy(closed, 'x').digest);
    saveByRename(POLICY);
    await waitFor(async () => (await policyStatus()).version === old, 5_000, 'the original policy back');
  }, 30_000);

  it('a session cannot reload or change its policy through the proxy', async () => {
    const before = await policyStatus();
    // The admin endpoint is a unix socket; through the proxy the nearest a session gets is the
    // proxy's own address, which the destination guard refuses, and the session's credential is
    // no admin token.
    const own = await curl(`http://127.0.0.1:${port}/policy/reload`, ['-X', 'POST', '-x', env.HTTPS_PROXY!]);
    expect(own.stdout.split('\n').pop()).toBe('403');
    const sessionToken = new URL(env.HTTPS_PROXY!).password;
    const asSession = await new Promise<number>((resolve, reject) => {
      const req = http.request({ socketPath: join(stateDir, 'admin.sock'), method: 'POST', path: '/policy/reload', headers: { Authorization: `Bearer ${sessionToken}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('{}');
    });
    expect(asSession).toBe(401);
    expect(await policyStatus()).toEqual(before);
  }, 30_000);
});

describe('the denial inbox, approve and deny', () => {
  it('a denied request goes to the inbox; approve adds the narrowest rule as a diff keeping comments; the same request then succeeds in the running session', async () => {
    const url = 'https://api.github.com/v3/repos/acme/issues';
    const auth = ['-H', `Authorization: Bearer ${env.GH_TOKEN}`];
    expect(await status(url, auth)).toBe(403);
    const inbox = await waitFor(async () => {
      const r = await runCli(['inbox', '--state-dir', stateDir]);
      return r.stdout.includes('/v3/repos/acme/issues') ? r : null;
    }, 5_000, 'the inbox item');
    const id = new RegExp(`^\\s*(\\d+)\\s+${sessionId}\\s+GET https://api\\.github\\.com/v3/repos/acme/issues\\s+path_not_allowed`, 'm').exec(inbox.stdout)?.[1];
    expect(id, inbox.stdout).toBeDefined();
    const modeBefore = statSync(policyFile).mode & 0o777;

    // Without --yes and without a terminal nothing is written.
    const refused = await runCli(['approve', id!, '--state-dir', stateDir]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('pass --yes');
    expect(readFileSync(policyFile, 'utf8')).toBe(POLICY);

    const r = await runCli(['approve', id!, '--yes', '--state-dir', stateDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('+  - host: api.github.com\n+    methods: [GET]\n+    paths: [/v3/repos/acme/issues]\n');
    expect(r.stdout).toContain(`WIDENS A CREDENTIAL'S REACH: credential "gh" is bound to api.github.com`);
    expect(r.stdout).toMatch(/version [0-9a-f]{12} in force for new requests/);
    const text = readFileSync(policyFile, 'utf8');
    expect(text).toBe(POLICY.replace('# credentials below', '  - host: api.github.com\n    methods: [GET]\n    paths: [/v3/repos/acme/issues]\n# credentials below'));
    expect(statSync(policyFile).mode & 0o777).toBe(modeBefore);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    const after = await curl(url, auth);
    expect(after.stdout).toBe(`ok GET /v3/repos/acme/issues auth=real\n\n200`);
    // Only that request: another method or path stays denied.
    expect(await status(url, ['-X', 'POST'])).toBe(403);
    expect(await status('https://api.github.com/v3/repos/acme/pulls')).toBe(403);

    // No secret anywhere approve wrote or printed.
    for (const output of [text, r.stdout, r.stderr, inbox.stdout, (await runCli(['inbox', '--all', '--json', '--state-dir', stateDir])).stdout]) {
      expect(secretLeaks(output, SECRET)).toEqual([]);
    }
    const listed = await runCli(['inbox', '--all', '--state-dir', stateDir]);
    expect(listed.stdout).toMatch(new RegExp(`^\\s*${id}\\s.*\\[approved\\]$`, 'm'));
    saveByRename(POLICY);
    await waitFor(async () => (await policyStatus()).version === parsePolicy(POLICY, 'x').digest, 5_000, 'the original policy back');
  }, 60_000);

  it('approving a host the session CA was not issued for says the running session cannot inspect it; new sessions can', async () => {
    expect(await status('https://uploads.github.com/u')).toBe(0); // curl: CONNECT refused (403)
    const item = await waitFor(async () => ((await admin('GET', `/inbox?session=${sessionId}`)).body as { id: string; host: string; method: string | null }[]).find((i) => i.host === 'uploads.github.com'), 5_000, 'the inbox item');
    expect(item.method).toBeNull();
    const r = await runCli(['approve', item.id, '--yes', '--state-dir', stateDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('+  - host: uploads.github.com\n');
    expect(r.stdout).toContain('Note: only uploads.github.com:443 is known of the refused request');
    expect(r.stdout).toContain("Warning: this session's CA was issued for api.github.com only, so TLS to uploads.github.com cannot be inspected in it");
    // This session: the proxy allows the CONNECT, but curl refuses the leaf its CA may not sign.
    const inSession = await curl('https://uploads.github.com/u');
    expect(inSession.code).toBe(60);
    // A session started now gets a CA for the new policy.
    const created = await runCli(['session', 'create', '--state-dir', stateDir, '--json']);
    const fresh = JSON.parse(created.stdout) as { id: string; proxy_url: string; bundle: string };
    const r2 = await runProcess('curl', ['-sS', '--max-time', '10', 'https://uploads.github.com/u'], { env: { PATH: process.env.PATH, HOME: dir, HTTPS_PROXY: fresh.proxy_url, CURL_CA_BUNDLE: fresh.bundle } });
    expect(r2.stdout).toBe('ok GET /u auth=other\n');
    expect((await admin('DELETE', `/sessions/${fresh.id}`)).status).toBe(200);
    saveByRename(POLICY);
    await waitFor(async () => (await policyStatus()).version === parsePolicy(POLICY, 'x').digest, 5_000, 'the original policy back');
  }, 30_000);

  it('approve refuses while the file on disk is not the version that runs, and deny dismisses', async () => {
    // A session that follows a file it does not watch (as `airlock run` does for a policy inside
    // the workspace): an edit on disk waits for `policy reload`.
    const file = join(dir, 'unwatched.yaml');
    writeFileSync(file, POLICY);
    const made = await admin('POST', '/sessions', { policy_text: POLICY, policy_source: file, policy_file: file, watch_policy: false });
    expect(made.status).toBe(201);
    const other = made.body as { id: string; proxy_url: string; bundle: string };
    const otherStatus = async (url: string) => {
      const r = await runProcess('curl', ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}', url], {
        env: { PATH: process.env.PATH, HOME: dir, HTTPS_PROXY: other.proxy_url, CURL_CA_BUNDLE: other.bundle },
      });
      return Number(r.stdout);
    };
    expect(await otherStatus('https://api.github.com/v4/x')).toBe(403);
    const item = await waitFor(async () => ((await admin('GET', `/inbox?session=${other.id}`)).body as { id: string; path: string }[]).find((i) => i.path === '/v4/x'), 5_000, 'the inbox item');
    writeFileSync(file, POLICY.replace('methods: [GET]', 'methods: [GET, POST, DELETE]'));
    const r = await runCli(['approve', item.id, '--yes', '--state-dir', stateDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file} on disk (version ${parsePolicy(readFileSync(file, 'utf8'), 'x').digest}) is not the version session ${other.id} runs (${parsePolicy(POLICY, 'x').digest})`);
    expect(r.stderr).toContain(`airlock policy reload --session ${other.id}`);
    expect(readFileSync(file, 'utf8')).toContain('[GET, POST, DELETE]');
    expect(readFileSync(file, 'utf8')).not.toContain('/v4/x');

    const d = await runCli(['deny', item.id, '--state-dir', stateDir]);
    expect(d.code, d.stderr).toBe(0);
    expect((await runCli(['inbox', '--session', other.id, '--state-dir', stateDir])).stdout).toBe('inbox empty\n');
    expect((await runCli(['inbox', '--all', '--session', other.id, '--state-dir', stateDir])).stdout).toMatch(/\/v4\/x .*\[dismissed\]/);
    expect(await otherStatus('https://api.github.com/v4/x')).toBe(403);
    expect((await admin('DELETE', `/sessions/${other.id}`)).status).toBe(200);
  }, 30_000);
});
