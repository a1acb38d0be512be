// Daemon sessions end with their launcher. `airlock run --daemon` creates its session on an admin
// connection it holds open (a lease): when that process dies, kill -9 included, the daemon removes
// the session and closes its listener. `airlock gc` removes what a lease did not cover: sessions
// naming a launcher pid that is gone. Removing a session retries when the admin socket resets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { CLI_PATH, freePort, REPO_ROOT, rmTmp, runCli, tmpDir, waitFor } from '../helpers/servers.js';
import { removeDaemonSession } from '../../src/cli/daemon.js';

let dir: string;
let stateDir: string;
let daemon: ChildProcess;
let daemonLog = '';

beforeAll(async () => {
  dir = tmpDir('airlock-lease-');
  stateDir = join(dir, 'state');
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nname: lease\nallow:\n  - host: good.test\n');
  const port = await freePort();
  daemon = spawn(process.execPath, [CLI_PATH, 'proxy', '--policy', join(dir, 'policy.yaml'), '--listen', `127.0.0.1:${port}`, '--state-dir', stateDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  daemon.stderr!.setEncoding('utf8').on('data', (c: string) => (daemonLog += c));
  daemon.stdout!.resume();
  await waitFor(() => daemonLog.includes('airlock proxy ready') || daemon.exitCode !== null, 20_000, 'the daemon to start');
  expect(daemon.exitCode, daemonLog).toBeNull();
}, 30_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
    daemon.kill('SIGKILL');
    await new Promise((resolve) => daemon.once('exit', resolve));
  }
  rmTmp(dir);
});

interface Listed {
  id: string;
  proxy_port: number;
  launcher_pid?: number;
  leased?: boolean;
}

function adminJson(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: join(stateDir, 'admin.sock'), method, path, headers: { Authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text || '{}') }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function sessions(): Promise<Listed[]> {
  return (await adminJson('GET', '/sessions')).json as Listed[];
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * A stand-in for `airlock run --daemon`: a process that opens its session's lease the way the
 * launcher does (the built CLI's own code), prints the session id and port, and waits.
 */
function startLauncher(): { child: ChildProcess; started: Promise<{ id: string; port: number; held: boolean }> } {
  const script = `
    const { openLease } = await import(${JSON.stringify(join(REPO_ROOT, 'dist', 'cli', 'daemon.js'))});
    const lease = await openLease(${JSON.stringify(stateDir)}, '/sessions', { listen_host: '127.0.0.1', launcher_pid: process.pid });
    console.log(JSON.stringify({ id: lease.info.id, port: lease.info.proxy_port, held: lease.held }));
    setInterval(() => {}, 60_000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const started = new Promise<{ id: string; port: number; held: boolean }>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      if (out.includes('\n')) resolve(JSON.parse(out));
    });
    child.once('exit', (code) => reject(new Error(`launcher exited (${code}): ${err}`)));
  });
  return { child, started };
}

describe('daemon sessions tied to their launcher', () => {
  it('kill -9 of the launcher holding the lease: the daemon removes the session and closes its listener', async () => {
    const launcher = startLauncher();
    const { id, port, held } = await launcher.started;
    expect(held).toBe(true);
    expect((await sessions()).find((s) => s.id === id)).toMatchObject({ launcher_pid: launcher.child.pid, leased: true });
    expect(await listening(port)).toBe(true);
    const ls = await runCli(['session', 'ls', '--state-dir', stateDir]);
    expect(ls.stdout).toMatch(new RegExp(`^${id}  .*  launcher=${launcher.child.pid} \\(leased\\)$`, 'm'));

    launcher.child.kill('SIGKILL');
    await waitFor(async () => !(await sessions()).some((s) => s.id === id), 5_000, 'the daemon to remove the session of the killed launcher');
    expect(await listening(port)).toBe(false);
    expect((await runCli(['session', 'ls', '--state-dir', stateDir])).stdout).not.toContain(id);
    expect(daemonLog).toMatch(new RegExp(`"session":"${id}".*session removed: its launcher closed its lease`));
  }, 30_000);

  it('airlock gc removes sessions whose launcher pid is gone (and reports them), and leaves the others', async () => {
    // A launcher that is gone: a process that has exited, so its pid names nobody.
    const gone = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => gone.once('exit', resolve));
    const orphan = (await adminJson('POST', '/sessions', { listen_host: '127.0.0.1', launcher_pid: gone.pid })).json as Listed;
    const live = (await adminJson('POST', '/sessions', { listen_host: '127.0.0.1', launcher_pid: process.pid })).json as Listed;
    const manual = (await adminJson('POST', '/sessions', {})).json as Listed;
    expect(await listening(orphan.proxy_port)).toBe(true);

    // gc takes the daemon's sessions before it turns to Docker. Pointed at no engine, it never
    // touches the Docker engine this machine shares with other test runs, and says so.
    const gc = await runCli(['gc', '--state-dir', stateDir], { timeoutMs: 60_000, env: { ...process.env, DOCKER_HOST: `unix://${join(dir, 'no-docker.sock')}` } });
    expect(gc.stderr).toContain(`airlock gc: removed 1 session(s) of the airlock proxy whose launcher is gone: ${orphan.id}`);
    expect(gc.stderr).toContain('Docker engine not reachable');
    expect(gc.code).toBe(2);
    const left = (await sessions()).map((s) => s.id);
    expect(left).not.toContain(orphan.id);
    expect(left).toContain(live.id);
    expect(left).toContain(manual.id);
    expect(await listening(orphan.proxy_port)).toBe(false);

    await adminJson('DELETE', `/sessions/${live.id}`);
    await adminJson('DELETE', `/sessions/${manual.id}`);
  }, 120_000);
});

describe('removing a daemon session retries when the admin connection fails', () => {
  /** A fake admin socket that resets the first `resets` connections, then answers DELETE with `status`. */
  async function fakeAdmin(resets: number, status: number): Promise<{ stateDir: string; calls: () => number; close: () => Promise<void> }> {
    const state = join(dir, `fake-${resets}-${status}`);
    mkdirSync(state, { recursive: true });
    writeFileSync(join(state, 'admin.token'), 'token\n');
    let calls = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(status === 200 ? '{"removed":"s-1"}' : '{"error":"no session s-1"}');
    });
    server.prependListener('connection', (socket: net.Socket) => {
      if (calls++ < resets) socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(join(state, 'admin.sock'), resolve));
    return { stateDir: state, calls: () => calls, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  it('after two resets the third try removes it, saying each retry', async () => {
    const admin = await fakeAdmin(2, 200);
    const notices: string[] = [];
    await removeDaemonSession(admin.stateDir, 's-1', { notice: (l) => notices.push(l), firstDelayMs: 10 });
    expect(admin.calls()).toBe(3);
    expect(notices).toHaveLength(2);
    expect(notices[0]).toMatch(/^removing session s-1: the admin connection to the airlock proxy at \S+ failed \((EPIPE|ECONNRESET)\); retrying in 0\.0 s \(try 2 of 10\)$/);
    await admin.close();
  });

  it('a 404 after a failed try counts as removed; a 404 at once is an error; it gives up after its tries', async () => {
    const after = await fakeAdmin(1, 404);
    await expect(removeDaemonSession(after.stateDir, 's-1', { firstDelayMs: 10 })).resolves.toBeUndefined();
    await after.close();
    const atOnce = await fakeAdmin(0, 404);
    await expect(removeDaemonSession(atOnce.stateDir, 's-1', { firstDelayMs: 10 })).rejects.toThrow('no session s-1');
    await atOnce.close();
    const never = await fakeAdmin(100, 200);
    await expect(removeDaemonSession(never.stateDir, 's-1', { firstDelayMs: 5, attempts: 4 })).rejects.toThrow(/failed \((EPIPE|ECONNRESET)\)/);
    expect(never.calls()).toBe(4);
    await never.close();
  });
});
