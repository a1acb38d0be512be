// A full disk under the state dir (a 1 MiB tmpfs, filled by hand): the daemon refuses new requests
// with 503 and an error in its log, sends nothing upstream for them, keeps the end line of a
// request admitted before (written once there is room) and admits again when space returns.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, rmSync, writeFileSync, writeSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { CLI_PATH, freePort, rmTmp, runCli, sleep, startHttpUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestUpstream } from '../helpers/servers.js';
import { httpViaProxy } from '../helpers/clients.js';

let dir: string;
let mnt: string;
let mounted = false;
let upstream: TestUpstream;
let daemon: ChildProcess | undefined;
let log = '';
let finishDownload: (() => void) | null = null;

beforeAll(async () => {
  upstream = await startHttpUpstream({
    handler: (req, res) => {
      if (req.url?.endsWith('/download')) {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        res.write(Buffer.alloc(1024, 1));
        finishDownload = () => res.end(Buffer.alloc(1024, 2));
        return;
      }
      res.end('ok');
    },
  });
  dir = tmpDir('airlock-diskfull-');
  mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt]);
  mounted = true;
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nname: diskfull\nallow:\n  - host: api.full.test\n');
}, 30_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
    daemon.kill('SIGKILL');
    await new Promise((r) => daemon!.once('exit', r));
  }
  if (mounted) execFileSync('umount', [mnt]);
  await upstream?.close();
  rmTmp(dir);
});

/** Fills the tmpfs to the last byte. */
function fill(file: string): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(4096);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
  }
  // The last few bytes too.
  try {
    for (;;) writeSync(fd, Buffer.alloc(1));
  } catch {
    // full
  }
  closeSync(fd);
}

describe('a full disk under the state dir', () => {
  it('refuses new requests with 503 and an error, keeps what was admitted, recovers when space returns', async () => {
    const stateDir = join(mnt, 'state');
    const port = await freePort();
    daemon = spawn(process.execPath, [CLI_PATH, 'proxy', '--policy', join(dir, 'policy.yaml'), '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir, '--resolve', `api.full.test:80:127.0.0.1:${upstream.port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    daemon.stderr!.setEncoding('utf8').on('data', (c: string) => (log += c));
    daemon.stdout!.resume();
    await waitFor(() => log.includes('airlock proxy ready'), 20_000, 'the daemon to start');
    const created = await runCli(['session', 'create', '--json', '--state-dir', stateDir]);
    expect(created.code, created.stderr).toBe(0);
    const { id, token } = ((s: { id: string; proxy_url: string }) => ({ id: s.id, token: new URL(s.proxy_url).password }))(JSON.parse(created.stdout));
    const auth = 'Basic ' + Buffer.from(`${id}:${token}`).toString('base64');
    const get = (path: string) => httpViaProxy({ proxyPort: port, proxyAuthorization: auth, url: `http://api.full.test${path}` });

    expect((await get('/before')).status).toBe(200);
    // A download admitted before the disk fills, still open while it is full.
    let downloaded = 0;
    const download = new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: 'http://api.full.test/download', headers: { Host: 'api.full.test', 'Proxy-Authorization': auth }, agent: false }, (res) => {
          res.on('data', (c: Buffer) => (downloaded += c.length));
          res.on('end', () => resolve(res.statusCode!));
        })
        .on('error', reject);
    });
    await waitFor(() => downloaded >= 1024, 5_000, 'the download to start');

    fill(join(mnt, 'filler'));
    // Lines may still fit in the log file's last page; then every new request is refused.
    const seen = upstream.requests.length;
    let refused = 0;
    let status = 0;
    for (let i = 0; i < 40 && refused < 3; i++) {
      const r = await get(`/while-full/${i}`);
      status = r.status;
      if (r.status === 503) {
        refused++;
        expect(r.headers['x-airlock-decision']).toBe('deny; reason=audit_unavailable');
        expect(r.body).toContain('the audit log cannot be written');
      } else {
        // Admitted only while the log still had room: never after a refusal.
        expect(refused).toBe(0);
        expect(r.status).toBe(200);
      }
    }
    expect(status).toBe(503);
    const during = upstream.requests.slice(seen).map((r) => r.url);
    // Nothing refused reached the upstream: only the ones admitted before the log filled.
    const admittedWhileFilling = during.length;
    expect(refused).toBe(3);
    expect(log).toMatch(/audit log .*audit\.jsonl cannot be written \(ENOSPC.*new requests of session s-[0-9a-f]+ are refused with 503/);

    // The admitted download ends while the disk is full: its end line waits in memory.
    finishDownload!();
    expect(await download).toBe(200);
    await sleep(300);

    rmSync(join(mnt, 'filler'));
    await waitFor(async () => (await get('/after')).status === 200, 10_000, 'the proxy to admit again');
    await waitFor(() => log.includes('is writable again'), 5_000, 'the recovery in the log');
    expect(upstream.requests.map((r) => r.url)).toContain('/after');

    // The log has every admitted request's admit and end lines, the refusals, and verifies.
    await runCli(['session', 'rm', id, '--state-dir', stateDir]);
    const records = readFileSync(join(stateDir, 'sessions', id, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event?: string; path: string; status?: number; reason?: string; id: string });
    const ends = records.filter((r) => !r.event);
    const admits = records.filter((r) => r.event === 'admit');
    for (const path of ['/before', '/download', '/after']) {
      const a = admits.find((r) => r.path === path);
      expect(a, path).toBeDefined();
      expect(ends.find((e) => e.id === a!.id)?.status, path).toBe(200);
    }
    expect(admits.filter((r) => r.path.startsWith('/while-full/'))).toHaveLength(admittedWhileFilling);
    expect(ends.filter((e) => e.reason === 'audit_unavailable' && e.status === 503)).toHaveLength(3);
    const verify = await runCli(['audit', 'verify', id, '--state-dir', stateDir]);
    expect(verify.code, verify.stderr).toBe(0);
  }, 60_000);
});
