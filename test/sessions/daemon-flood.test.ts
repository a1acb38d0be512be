// One session floods the shared daemon (`airlock proxy`, a real process) with idle connections to
// its own listener. The daemon runs with an open-file limit of 1024 (set with prlimit before it
// starts, so this test needs ~3000 descriptors of its own, not the machine's limit): without caps
// fitted to that limit, the flood takes every descriptor, another session's requests fail and the
// admin socket resets. With them, the flood is held to its listener's share, the other session is
// served throughout, and `airlock session ls` / `rm` still work; even with every client slot
// taken, the descriptors kept in reserve serve the admin socket.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { CLI_PATH, freePort, rmTmp, runCli, runProcess, sleep, startHttpUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { TestUpstream } from '../helpers/servers.js';
import { openIdleConnections } from '../helpers/clients.js';
import type { IdleConnections } from '../helpers/clients.js';

const FD_LIMIT = 1024;
const FLOOD = 3_000;

function hasPrlimit(): boolean {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

let upstream: TestUpstream;
let dir: string;
const daemons: Daemon[] = [];

interface Daemon {
  readonly child: ChildProcess;
  readonly stateDir: string;
  log(): string;
  stop(): Promise<void>;
}

/** `airlock proxy` with an open-file limit of FD_LIMIT (soft and hard, so Node cannot raise it). */
async function startDaemon(name: string, extra: readonly string[] = []): Promise<Daemon> {
  const state = join(dir, name);
  const port = await freePort();
  const args = [CLI_PATH, 'proxy', '--policy', join(dir, 'policy.yaml'), '--listen', `127.0.0.1:${port}`, '--state-dir', state, '--resolve', `good.test:80:127.0.0.1:${upstream.port}`, ...extra];
  const child = spawn('prlimit', [`--nofile=${FD_LIMIT}:${FD_LIMIT}`, '--', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (log += c));
  child.stdout!.resume();
  await waitFor(() => log.includes('airlock proxy ready') || child.exitCode !== null, 20_000, 'the daemon to start');
  expect(child.exitCode, log).toBeNull();
  return {
    child,
    stateDir: state,
    log: () => log,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

beforeAll(async () => {
  upstream = await startHttpUpstream();
  dir = tmpDir('airlock-flood-');
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nname: flood\nallow:\n  - host: good.test\n');
}, 30_000);

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  await upstream?.close();
  rmTmp(dir);
});

/** POST /sessions on the admin socket (as `airlock run --daemon` does for a Docker session). */
function createOwnListenerSession(stateDir: string): Promise<{ id: string; proxy_url: string; proxy_port: number }> {
  const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  const body = JSON.stringify({ listen_host: '127.0.0.1' });
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: join(stateDir, 'admin.sock'), method: 'POST', path: '/sessions', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => (res.statusCode === 201 ? resolve(JSON.parse(text)) : reject(new Error(`admin answered ${res.statusCode}: ${text}`))));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function curl(proxyUrl: string, url: string) {
  return runProcess('curl', ['-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', '-x', proxyUrl, url], { env: { PATH: process.env.PATH }, timeoutMs: 15_000 });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('a shared daemon under a connection flood from one session', () => {
  it(`${FLOOD} idle connections to one session's listener: the other session is served, session ls and rm work, the flood is held to its share`, async () => {
    if (!hasPrlimit()) throw new Error("this test starts the daemon with a low open-file limit through util-linux's prlimit: install util-linux");
    const daemon = await startDaemon('shared');
    daemons.push(daemon);
    const { stateDir } = daemon;
    const flooder = await createOwnListenerSession(stateDir);
    const other = JSON.parse((await runCli(['session', 'create', '--state-dir', stateDir, '--json'])).stdout) as { id: string; proxy_url: string };
    expect((await curl(other.proxy_url, 'http://good.test/before')).stdout).toBe('200');

    let flood: IdleConnections | undefined;
    try {
      flood = await openIdleConnections('127.0.0.1', flooder.proxy_port, FLOOD);
      // The other session, meanwhile: every request answered, promptly.
      const answers: Array<{ code: string; ms: number; err: string }> = [];
      for (let i = 0; i < 10; i++) {
        const t = performance.now();
        const r = await curl(other.proxy_url, `http://good.test/during-${i}`);
        answers.push({ code: r.stdout, ms: Math.round(performance.now() - t), err: r.stderr.trim() });
        await sleep(100);
      }
      expect(answers.filter((a) => a.code !== '200' || a.ms > 3_000), JSON.stringify(answers)).toEqual([]);

      // The admin socket answers: both sessions listed, and the flooding one removed.
      const ls = await runCli(['session', 'ls', '--state-dir', stateDir], { timeoutMs: 15_000 });
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout).toContain(flooder.id);
      expect(ls.stdout).toContain(other.id);

      // Held to its listener's share of the caps the daemon fitted to 1024 open files (448 client
      // connections in all, 112 per listener), the rest refused with a reason.
      await waitFor(() => flood!.open() <= 112, 10_000, 'the flood to be held to its listener cap');
      expect(flood.open()).toBe(112);
      expect(flood.received.find((t) => t.length > 0)).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\n[^]*this proxy listener has 112 connections open/);

      const rm = await runCli(['session', 'rm', flooder.id, '--state-dir', stateDir], { timeoutMs: 15_000 });
      expect(rm.code, rm.stderr).toBe(0);
      expect(rm.stdout).toBe(`removed ${flooder.id}\n`);
      const after = await runCli(['session', 'ls', '--state-dir', stateDir], { timeoutMs: 15_000 });
      expect(after.stdout).not.toContain(flooder.id);
      // Its listener is closed, and the connections it held with it.
      expect(await refused(flooder.proxy_port)).toBe(true);
      await waitFor(() => flood!.open() === 0, 5_000, 'the flood connections to be closed with the session');
    } finally {
      flood?.close();
    }
    expect((await curl(other.proxy_url, 'http://good.test/after')).stdout).toBe('200');
    expect(upstream.requests.filter((r) => r.url.startsWith('/during-'))).toHaveLength(10);
    // The daemon said what it fitted and what it refused.
    expect(daemon.log()).toContain(`open-file limit ${FD_LIMIT}: client connections capped at 448 in all and 112 per listener`);
    expect(daemon.log()).toContain('refused client connections: the listener is at its connection cap');
    expect(daemon.child.exitCode).toBeNull();
  }, 120_000);

  it('with the per-listener cap raised past the total, one session fills every client slot: the admin socket still answers, and removing the session gives the slots back', async () => {
    const daemon = await startDaemon('full', ['--listener-connections', '1000']);
    daemons.push(daemon);
    const { stateDir } = daemon;
    const flooder = await createOwnListenerSession(stateDir);
    const other = JSON.parse((await runCli(['session', 'create', '--state-dir', stateDir, '--json'])).stdout) as { id: string; proxy_url: string };
    let flood: IdleConnections | undefined;
    try {
      flood = await openIdleConnections('127.0.0.1', flooder.proxy_port, FLOOD);
      await waitFor(() => flood!.open() <= 448, 10_000, 'the flood to be held to the total cap');
      expect(flood.open()).toBe(448);
      expect(flood.received.find((t) => t.length > 0)).toContain('the proxy holds its maximum of 448 client connections');
      // Every client slot is taken: the other session is refused with a reason, not left hanging.
      const full = await curl(other.proxy_url, 'http://good.test/while-full');
      expect(full.stdout).toBe('503');
      // The descriptors kept in reserve serve the admin socket.
      const ls = await runCli(['session', 'ls', '--state-dir', stateDir], { timeoutMs: 15_000 });
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout).toContain(flooder.id);
      const rm = await runCli(['session', 'rm', flooder.id, '--state-dir', stateDir], { timeoutMs: 15_000 });
      expect(rm.code, rm.stderr).toBe(0);
      await waitFor(() => flood!.open() === 0, 5_000, 'the flood connections to be closed with the session');
    } finally {
      flood?.close();
    }
    expect((await curl(other.proxy_url, 'http://good.test/after-full')).stdout).toBe('200');
    expect(daemon.log()).toContain('refused client connections: the proxy is at its connection cap');
  }, 120_000);
});
