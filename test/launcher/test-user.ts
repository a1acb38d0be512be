// An unprivileged user made by a test (rootless engines run as one), with its own home and runtime
// dir, and what the rootless-engine tests do with it: run commands as it, copy images into its
// engine, and remove it with everything it still runs.
import { spawn } from 'node:child_process';
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runProcess, sleep, tmpDir } from '../helpers/servers.js';
import { dockerOk } from './run-helpers.js';
import { buildTestImage } from '../helpers/docker.js';

export class TestUser {
  private constructor(
    readonly name: string,
    readonly uid: number,
    readonly gid: number,
    readonly home: string,
    /** Its XDG_RUNTIME_DIR (there is no login session here to make one). */
    readonly runtimeDir: string,
  ) {}

  /** useradd with a home the launcher can read (it reads the policy and CA files kept there). */
  static async create(name: string, homePrefix: string): Promise<TestUser> {
    const home = tmpDir(homePrefix);
    const add = await runProcess('useradd', ['--home-dir', home, '--no-create-home', '--shell', '/usr/sbin/nologin', name]);
    if (add.code !== 0) {
      rmSync(home, { recursive: true, force: true });
      throw new Error(`useradd: ${add.stderr}`);
    }
    const uid = Number((await runProcess('id', ['-u', name])).stdout.trim());
    const gid = Number((await runProcess('id', ['-g', name])).stdout.trim());
    chownSync(home, uid, gid);
    chmodSync(home, 0o755);
    const runtimeDir = join(home, 'run');
    mkdirSync(runtimeDir, { mode: 0o700 });
    chownSync(runtimeDir, uid, gid);
    return new TestUser(name, uid, gid, home, runtimeDir);
  }

  private argv(cmd: string, args: readonly string[], env: Record<string, string> = {}): string[] {
    const extra = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    return ['-u', this.name, '--', 'env', `XDG_RUNTIME_DIR=${this.runtimeDir}`, `HOME=${this.home}`, ...extra, cmd, ...args];
  }

  /** A command as this user, to completion. */
  run(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}) {
    return runProcess('runuser', this.argv(cmd, args, opts.env), {
      cwd: '/',
      env: { PATH: process.env.PATH, LANG: 'C.UTF-8' },
      input: opts.input,
      timeoutMs: opts.timeoutMs ?? 120_000,
    });
  }

  /** A long-running command as this user (an engine). */
  start(cmd: string, args: readonly string[], stdio: StdioOptions = 'ignore', env: Record<string, string> = {}): ChildProcess {
    return spawn('runuser', this.argv(cmd, args, env), { cwd: '/', env: { PATH: process.env.PATH }, stdio });
  }

  /** Copies an image from the system Docker engine into this user's engine (`load` reads an archive). */
  async loadImage(image: string, load: (archive: string) => [string, string[]]): Promise<void> {
    const archive = join(this.home, `${image.replace(/[^a-z0-9]/gi, '_')}.tar`);
    await dockerOk(['save', '-o', archive, image], { timeoutMs: 600_000 });
    chownSync(archive, this.uid, this.gid);
    const [cmd, args] = load(archive);
    const r = await this.run(cmd, args, { timeoutMs: 600_000 });
    rmSync(archive, { force: true });
    if (r.code !== 0) throw new Error(`${cmd} ${args[0]} ${image} as ${this.name} failed: ${r.stderr}`);
  }

  /**
   * Ends what the user still runs (engine, its helpers, a pause process holding its user
   * namespace), by pid, TERM then KILL; then removes the user and its home, as root (the engine's
   * store holds files of the user's subordinate ids).
   */
  async remove(): Promise<void> {
    const pids = async () => (await runProcess('ps', ['-u', String(this.uid), '-o', 'pid='])).stdout.split('\n').map(Number).filter((n) => n > 0);
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      for (const pid of await pids()) {
        try {
          process.kill(pid, signal);
        } catch {
          /* gone */
        }
      }
      for (let i = 0; i < 50 && (await pids()).length; i++) await sleep(100);
    }
    await runProcess('userdel', [this.name], { timeoutMs: 30_000 });
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** A small session image with curl, built on the system engine from Debian packages, labelled. */
export async function buildCurlImage(tag: string, label: string): Promise<void> {
  await buildTestImage(
    tag,
    'FROM debian:bookworm-slim\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*\n',
    label,
  );
}
