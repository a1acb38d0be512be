// The audit survives `kill -9`: the daemon (`airlock proxy`), `airlock exec` and `airlock run` are
// killed while a long download, a slow upload, an SSE stream (and, but for run, a WebSocket) are
// open through them. Every request
// the upstream received has its admit line; none has an end line claiming a completion it did not
// have; `airlock audit` marks them cut off; `airlock audit verify` passes up to the crash.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { describeDocker, ensureAgentImage } from '../helpers/docker.js';
import { CLI_PATH, createTestPki, freePort, rmTmp, runCli, sleep, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';

let pki: TestPki;
let upstream: TestUpstream;
let dir: string;
const children: ChildProcess[] = [];
/** Timers of the upstream's endless responses. */
const timers = new Set<NodeJS.Timeout>();

const POLICY = 'version: 1\nname: crash\nallow:\n  - host: api.crash.test\n';

beforeAll(async () => {
  pki = await createTestPki();
  const wss = new WebSocketServer({ noServer: true });
  upstream = await startHttpsUpstream({
    pki,
    names: ['api.crash.test'],
    handler: (req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path === '/quick') {
        res.end('done');
      } else if (path === '/download') {
        // A long download: 16 KiB every 20 ms, never ending.
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        const t = setInterval(() => res.write(Buffer.alloc(16 << 10, 1)), 20);
        timers.add(t);
        res.on('close', () => clearInterval(t));
      } else if (path === '/events') {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        const t = setInterval(() => res.write('data: tick\n\n'), 50);
        timers.add(t);
        res.on('close', () => clearInterval(t));
      } else if (path === '/upload') {
        // Answered only when the body ends, which it never does.
        req.resume();
        req.on('end', () => res.end('stored'));
      } else {
        res.statusCode = 404;
        res.end();
      }
    },
    onUpgrade: (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(m))),
  });
  dir = tmpDir('airlock-crash-');
  writeFileSync(join(dir, 'policy.yaml'), POLICY);
  writeFileSync(join(dir, 'ca.pem'), pki.caPem);
  // The clients: node scripts, one per kind of open request, each printing "open" once under way.
  writeFileSync(
    join(dir, 'clients.mjs'),
    `
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import WebSocket from '${join(process.cwd(), 'node_modules/ws/wrapper.mjs')}';
const ca = readFileSync(process.env.SSL_CERT_FILE);
const proxy = new URL(process.env.HTTPS_PROXY);
// CONNECT through the proxy, then TLS to the host (what https-proxy-agent does).
class Tunnel extends https.Agent {
  createConnection(options, callback) {
    const req = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: options.host + ':' + (options.port || 443),
      headers: { 'Proxy-Authorization': 'Basic ' + Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password)).toString('base64') } });
    req.on('connect', (res, socket) => callback(null, tls.connect({ socket, servername: options.host, ca, ALPNProtocols: ['http/1.1'] })));
    req.on('error', (err) => callback(err));
    req.end();
  }
}
const agent = new Tunnel({ keepAlive: false });
const base = 'https://api.crash.test';
const say = (what) => process.stdout.write(what + '\\n');
const get = (path) => https.get(base + path, { agent, ca }, (res) => { res.on('data', () => {}); res.on('end', () => say('ended ' + path)); say('open ' + path); }).on('error', () => {});
await new Promise((r) => https.get(base + '/quick', { agent, ca }, (res) => { res.resume(); res.on('end', r); }));
say('quick done');
get('/download');
get('/events');
const up = https.request(base + '/upload', { agent, ca, method: 'POST', headers: { 'Transfer-Encoding': 'chunked' } });
up.on('error', () => {});
setInterval(() => up.write(Buffer.alloc(8192, 2)), 20);
say('open /upload');
const ws = new WebSocket('wss://api.crash.test/socket', { agent, ca });
ws.on('open', () => { say('open /socket'); setInterval(() => ws.send('ping'), 50); });
ws.on('error', () => {});
setInterval(() => {}, 1000);
`,
  );
}, 30_000);

afterAll(async () => {
  for (const t of timers) clearInterval(t);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const g of groups) {
    try {
      process.kill(-g, 'SIGKILL');
    } catch {
      // the group is gone
    }
  }
  await upstream?.close();
  rmTmp(dir, pki?.dir);
});

/** Process groups started here: what a killed launcher leaves behind (its command) goes with them. */
const groups: number[] = [];

function spawnLogged(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { child: ChildProcess; out: () => string } {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  if (child.pid) groups.push(child.pid);
  children.push(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  return { child, out: () => out };
}

async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
}

const OPEN = ['/download', '/events', '/upload', '/socket'];

/** What each admit and end line of the session says, read straight from its files. */
function records(stateDir: string, id: string): { admits: Record<string, unknown>[]; ends: Record<string, unknown>[] } {
  const text = readFileSync(join(stateDir, 'sessions', id, 'audit.jsonl'), 'utf8');
  const all = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { admits: all.filter((r) => r.event === 'admit'), ends: all.filter((r) => r.event === undefined) };
}

/** The checks after a crash, the same for each process killed. */
async function checkAfterCrash(stateDir: string, id: string, received: readonly string[], open: readonly string[] = OPEN): Promise<void> {
  const { admits, ends } = records(stateDir, id);
  // Every request the upstream received was admitted first, in the log.
  for (const path of received) {
    expect(
      admits.some((a) => a.path === path),
      `admit line for ${path}`,
    ).toBe(true);
  }
  // The open ones have no end line: nothing claims a completion they did not have.
  for (const path of open) {
    const admit = admits.find((a) => a.path === path)!;
    expect(ends.filter((e) => e.id === admit.id), `end line for ${path}`).toEqual([]);
  }
  // The one that finished before the crash has its end line, with its status.
  const quick = admits.find((a) => a.path === '/quick')!;
  expect(ends.find((e) => e.id === quick.id)).toMatchObject({ status: 200, path: '/quick' });

  const report = await runCli(['audit', id, '--state-dir', stateDir]);
  expect(report.code, report.stderr).toBe(0);
  for (const path of open) expect(report.stdout).toMatch(new RegExp(`https://api\\.crash\\.test:443${path}\\s+CUT OFF: admitted, no end recorded`));
  expect(report.stdout).toContain(`${open.length} admitted request(s) have no end: cut off when the proxy stopped`);

  const verify = await runCli(['audit', 'verify', id, '--state-dir', stateDir]);
  expect(verify.code, verify.stderr + verify.stdout).toBe(0);
  expect(verify.stdout).toMatch(/verified: \d+ lines in 1 file\(s\).*not closed/);
}

describe('kill -9 with requests open', () => {
  it('the daemon (airlock proxy): every request the upstream saw is admitted in the log, none claims to have ended', async () => {
    const stateDir = join(dir, 'daemon');
    const port = await freePort();
    const daemon = spawnLogged(process.execPath, [
      CLI_PATH, 'proxy', '--policy', join(dir, 'policy.yaml'), '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir,
      '--resolve', `api.crash.test:443:127.0.0.1:${upstream.port}`, '--upstream-ca', join(dir, 'ca.pem'),
    ]);
    await waitFor(() => daemon.out().includes('airlock proxy ready') || daemon.child.exitCode !== null, 20_000, 'the daemon to start');
    const created = await runCli(['session', 'create', '--json', '--state-dir', stateDir]);
    expect(created.code, created.stderr).toBe(0);
    const info = JSON.parse(created.stdout) as { id: string; proxy_url: string; bundle: string };
    const before = upstream.requests.length;
    const clients = spawnLogged(process.execPath, [join(dir, 'clients.mjs')], { ...process.env, HTTPS_PROXY: info.proxy_url, SSL_CERT_FILE: info.bundle });
    await waitFor(() => OPEN.every((p) => clients.out().includes(`open ${p}`)), 15_000, `all four open: ${clients.out()}`);
    await sleep(300); // bytes flowing
    await kill9(daemon.child);
    await kill9(clients.child);
    const received = upstream.requests.slice(before).map((r) => r.url);
    expect(received.sort()).toEqual(['/download', '/events', '/quick', '/socket', '/upload']);
    await checkAfterCrash(stateDir, info.id, received);
  }, 60_000);

  it('airlock exec (its embedded proxy): the same', async () => {
    const stateDir = join(dir, 'exec');
    const before = upstream.requests.length;
    const exec = spawnLogged(process.execPath, [
      CLI_PATH, 'exec', '--policy', join(dir, 'policy.yaml'), '--state-dir', stateDir,
      '--resolve', `api.crash.test:443:127.0.0.1:${upstream.port}`, '--upstream-ca', join(dir, 'ca.pem'),
      '--', process.execPath, join(dir, 'clients.mjs'),
    ]);
    await waitFor(() => OPEN.every((p) => exec.out().includes(`open ${p}`)), 20_000, `all four open: ${exec.out()}`);
    await sleep(300);
    await kill9(exec.child);
    const received = upstream.requests.slice(before).map((r) => r.url);
    expect(received.sort()).toEqual(['/download', '/events', '/quick', '/socket', '/upload']);
    const [id] = readdirSync(join(stateDir, 'sessions'));
    await checkAfterCrash(stateDir, id!, received);
  }, 60_000);
});

describeDocker('kill -9 of airlock run (a Docker session)', () => {
  const name = `airlock-test-crash-${process.pid}`;
  afterAll(() => {
    try {
      execFileSync('docker', ['rm', '-f', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });

  it('curl in the container with a download, an upload and an SSE stream open: each admitted, none ended, the chain verifies', async () => {
    const image = process.env.AIRLOCK_RUN_TEST_IMAGE || (await ensureAgentImage());
    const stateDir = join(dir, 'run');
    const before = upstream.requests.length;
    const script =
      // A hostile session looking for the audit key: it is nowhere in the container.
      'echo "keys=$(find / -name audit.key 2>/dev/null | wc -l)"; ' +
      'curl -sS https://api.crash.test/quick; echo; ' +
      'curl -sS -N https://api.crash.test/events > /dev/null & ' +
      'curl -sS https://api.crash.test/download -o /dev/null & ' +
      '(while :; do head -c 8192 /dev/zero; sleep 0.02; done) | curl -sS -T - https://api.crash.test/upload > /dev/null & ' +
      'wait';
    const run = spawnLogged(process.execPath, [
      CLI_PATH, 'run', '--policy', join(dir, 'policy.yaml'), '--image', image, '--state-dir', stateDir, '--name', name,
      '--resolve', `api.crash.test:443:127.0.0.1:${upstream.port}`, '--upstream-ca', join(dir, 'ca.pem'), '--network-mode', 'bridge',
      '--', 'sh', '-c', script,
    ]);
    const open = ['/download', '/events', '/upload'];
    await waitFor(() => open.every((p) => upstream.requests.slice(before).some((r) => r.url === p)), 90_000, `the three requests open: ${run.out()}`);
    expect(run.out()).toContain('keys=0');
    await sleep(300);
    await kill9(run.child);
    const received = upstream.requests.slice(before).map((r) => r.url);
    expect(received.sort()).toEqual(['/download', '/events', '/quick', '/upload']);
    const [id] = readdirSync(join(stateDir, 'sessions'));
    await checkAfterCrash(stateDir, id!, received, open);
  }, 150_000);
});
