// The long-running daemon: `airlock proxy` started from the built CLI, sessions managed with
// `airlock session create|ls|rm` over the admin socket, and real curl through a created session.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { CLI_PATH, createTestPki, freePort, rmTmp, runCli, runProcess, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';
import { openTunnelTls } from '../helpers/clients.js';

let pki: TestPki;
let api: TestUpstream;
let dir: string;
let stateDir: string;
let port: number;
let daemon: ChildProcess;
let daemonStderr = '';
let daemonExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com', 'github.com'] });
  dir = tmpDir();
  stateDir = join(dir, 'state');
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nname: daemon-default\nallow:\n  - host: api.github.com\n');
  writeFileSync(join(dir, 'other.yaml'), 'version: 1\nname: only-github\nallow:\n  - host: github.com\n');
  port = await freePort();
  daemon = spawn(
    process.execPath,
    [
      CLI_PATH,
      'proxy',
      '--policy',
      join(dir, 'policy.yaml'),
      '--listen',
      `127.0.0.1:${port}`,
      '--state-dir',
      stateDir,
      '--resolve',
      `api.github.com:443:127.0.0.1:${api.port}`,
      '--resolve',
      `github.com:443:127.0.0.1:${api.port}`,
      '--upstream-ca',
      pki.caFile,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  daemon.stderr!.setEncoding('utf8').on('data', (c: string) => (daemonStderr += c));
  daemon.stdout!.resume();
  daemonExit = new Promise((resolve) => daemon.once('exit', (code, signal) => resolve({ code, signal })));
  await waitFor(() => daemonStderr.includes('airlock proxy ready') || daemon.exitCode !== null, 20_000, 'the daemon to start');
  expect(daemon.exitCode, daemonStderr).toBeNull();
}, 30_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
    daemon.kill('SIGKILL');
    await daemonExit;
  }
  await api?.close();
  rmTmp(dir, pki?.dir);
});

/** Parses the `export NAME='value'` lines of `airlock session create`. */
function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const match of text.matchAll(/(?:^|\s)(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)='([^']*)'/gm)) env[match[1]!] = match[2]!;
  return env;
}

function adminCall(token: string, method = 'GET', path = '/sessions'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: join(stateDir, 'admin.sock'), method, path, headers: { Authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

function curl(env: Record<string, string>, url: string) {
  return runProcess('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_connect} %{http_code}', url], {
    env: { PATH: process.env.PATH, HOME: dir, ...env },
  });
}

describe('airlock proxy daemon', () => {
  let session: Record<string, string>;
  let sessionId: string;

  it('session create prints shell exports with the proxy URL and CA bundle', async () => {
    const r = await runCli(['session', 'create', '--state-dir', stateDir]);
    expect(r.code, r.stderr).toBe(0);
    session = parseExports(r.stdout);
    sessionId = /^# airlock session (s-[0-9a-f]+) \(policy daemon-default\)/.exec(r.stdout)?.[1] ?? '';
    expect(sessionId).not.toBe('');
    for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) {
      expect(session[name]).toMatch(new RegExp(`^http://${sessionId}:[A-Za-z0-9_-]+@127\\.0\\.0\\.1:${port}$`));
    }
    for (const name of ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO']) {
      expect(session[name]).toBe(join(stateDir, 'sessions', sessionId, 'trust', 'bundle.pem'));
    }
    expect(existsSync(session.SSL_CERT_FILE!)).toBe(true);
  }, 30_000);

  it('curl with those exports reaches api.github.com through the daemon', async () => {
    const r = await curl(session, 'https://api.github.com/through-daemon');
    expect(r.code, r.stderr).toBe(0);
    const [body, statuses] = r.stdout.split('\n');
    expect(statuses).toBe('200 200');
    expect(JSON.parse(body!)).toMatchObject({ path: '/through-daemon', host: 'api.github.com' });
    // Audited when the exchange ends, written asynchronously.
    const auditFile = join(stateDir, 'sessions', sessionId, 'audit.jsonl');
    await waitFor(() => existsSync(auditFile) && readFileSync(auditFile, 'utf8').includes('"/through-daemon"'), 5_000, 'the audit line');
  }, 30_000);

  it('the session policy is enforced: another host is denied', async () => {
    const r = await curl(session, 'https://github.com/x');
    expect(r.code).not.toBe(0);
    expect(r.stdout.trim().split(' ')[0]).toBe('403');
  }, 30_000);

  it('session create --policy gives a session its own policy; --json prints JSON', async () => {
    const r = await runCli(['session', 'create', '--state-dir', stateDir, '--policy', join(dir, 'other.yaml'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout) as { id: string; policy: string; proxy_url: string; bundle: string };
    expect(info.policy).toBe('only-github');
    const env = { HTTPS_PROXY: info.proxy_url, CURL_CA_BUNDLE: info.bundle };
    expect((await curl(env, 'https://github.com/ok')).stdout.trim().split('\n').at(-1)).toBe('200 200');
    expect((await curl(env, 'https://api.github.com/no')).stdout.trim().split(' ')[0]).toBe('403');
  }, 30_000);

  it('session ls lists the sessions', async () => {
    const r = await runCli(['session', 'ls', '--state-dir', stateDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${sessionId}  policy=daemon-default  created=\\S+  audit=\\S+audit\\.jsonl$`, 'm'));
    expect(r.stdout).toContain('policy=only-github');
  }, 30_000);

  it('the admin socket and token are owner-only, and a wrong token is rejected', async () => {
    const socket = join(stateDir, 'admin.sock');
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    expect(statSync(join(stateDir, 'admin.token')).mode & 0o777).toBe(0o600);
    const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
    expect(await adminCall(token)).toBe(200);
    expect(await adminCall('wrong-token')).toBe(401);
    expect(await adminCall(token.slice(0, -1) + (token.endsWith('a') ? 'b' : 'a'))).toBe(401);
    expect(await adminCall('', 'POST')).toBe(401);
  }, 30_000);

  it('session rm removes the session: its credential stops working, its audit log stays', async () => {
    const r = await runCli(['session', 'rm', sessionId, '--state-dir', stateDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`removed ${sessionId}\n`);
    const ls = await runCli(['session', 'ls', '--state-dir', stateDir]);
    expect(ls.stdout).not.toContain(sessionId);
    const after = await curl(session, 'https://api.github.com/after-rm');
    expect(after.code).not.toBe(0);
    expect(after.stdout.trim().split(' ')[0]).toBe('407');
    expect(api.requests.some((q) => q.url === '/after-rm')).toBe(false);
    expect(existsSync(join(stateDir, 'sessions', sessionId, 'audit.jsonl'))).toBe(true);
  }, 30_000);

  it('session rm of an unknown session is an error (exit 2)', async () => {
    const r = await runCli(['session', 'rm', 's-000000000000', '--state-dir', stateDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no session s-000000000000');
  }, 30_000);

  it('session commands without a running daemon say so (exit 2)', async () => {
    const r = await runCli(['session', 'ls', '--state-dir', join(dir, 'no-daemon-here')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no airlock proxy is running');
  }, 30_000);

  it('SIGTERM stops the daemon promptly even with a tunnel open', async () => {
    const created = JSON.parse((await runCli(['session', 'create', '--state-dir', stateDir, '--json'])).stdout) as { id: string; proxy_url: string; bundle: string };
    const url = new URL(created.proxy_url);
    const tunnel = await openTunnelTls({
      proxyPort: port,
      proxyAuthorization: 'Basic ' + Buffer.from(`${url.username}:${url.password}`).toString('base64'),
      target: 'api.github.com:443',
      servername: 'api.github.com',
      ca: readFileSync(created.bundle, 'utf8'),
    });
    tunnel.on('error', () => {});
    const tunnelClosed = new Promise((resolve) => tunnel.once('close', resolve));
    const t0 = Date.now();
    daemon.kill('SIGTERM');
    const exit = await daemonExit;
    expect(exit.code, daemonStderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5_000);
    await tunnelClosed;
    // The open tunnel was audited when the daemon closed it.
    await waitFor(() => readFileSync(join(stateDir, 'sessions', created.id, 'audit.jsonl'), 'utf8').includes('"CONNECT"'), 3_000, 'the tunnel audit line');
  }, 30_000);
});
