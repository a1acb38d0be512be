// Copy-out against forged archives: what a hostile session could hand back through
// `docker cp` (or any stream that reaches the extractor). Every test has a canary directory next to
// the output folder, with an owner, mode and contents of its own: whatever the archive holds, the
// canary and the folder above the output folder must come out exactly as they went in.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { pbkdf2 } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { copyOut, copyOutNotices, invokingUser } from '../../src/launcher/copy-out.js';
import type { CopyOutReport } from '../../src/launcher/copy-out.js';
import { rmTmp, sleep, tmpDir } from '../helpers/servers.js';
import { craftStream, craftTar } from './tar-craft.js';
import type { CraftEntry } from './tar-craft.js';
import { snapshot } from './run-helpers.js';
import type { FsNode } from './run-helpers.js';

const ROOT = process.getuid?.() === 0;
/** The canary's owner (when the tests can chown): neither the archive's 4242 nor the caller's. */
const CANARY_ID = 31337;
/** Who copied-out files must belong to (as if run under sudo by this uid). */
const OWNER = ROOT ? { uid: 31338, gid: 31339 } : { uid: process.getuid!(), gid: process.getgid!() };

let base: string;
let out: string;
let canary: string;

/** The canary and the folder above `out`, to compare after the copy-out. */
function outside(): Record<string, FsNode> {
  return snapshot(base, out);
}

function names(list: readonly { path: string }[]): string[] {
  return list.map((e) => e.path).sort();
}

/**
 * Copies `entries` out. A failed copy-out is returned, not thrown, so each test checks the canary
 * first (what matters most) and only then that the copy-out went through.
 */
async function attempt(entries: readonly CraftEntry[], dest = out): Promise<CopyOutReport | Error> {
  try {
    return await copyOut(craftStream(entries), dest, { owner: OWNER });
  } catch (err) {
    return err as Error;
  }
}

function succeeded(result: CopyOutReport | Error): CopyOutReport {
  if (result instanceof Error) throw new Error(`copy-out failed: ${result.message}`);
  if (!result) throw new Error('copy-out returned no report');
  return result;
}

async function run(entries: readonly CraftEntry[], dest = out): Promise<CopyOutReport> {
  return succeeded(await attempt(entries, dest));
}

beforeEach(() => {
  base = tmpDir('airlock-copyout-unit-');
  chmodSync(base, 0o751);
  out = join(base, 'out');
  mkdirSync(out);
  canary = join(base, 'canary');
  mkdirSync(canary, { mode: 0o750 });
  chmodSync(canary, 0o750);
  writeFileSync(join(canary, 'secret'), 'canary secret\n', { mode: 0o640 });
  if (ROOT) {
    chownSync(canary, CANARY_ID, CANARY_ID);
    chownSync(join(canary, 'secret'), CANARY_ID, CANARY_ID);
  }
});

afterEach(() => rmTmp(base));

describe('copy-out: links in the archive', () => {
  it('a symlink chain that reads as the folder itself (y -> ., u1 -> y/..) and directories "through" it stay inside', async () => {
    const before = outside();
    const result = await attempt([
      { name: './', type: 'dir', mode: 0o777 },
      { name: './y', type: 'symlink', link: '.' },
      { name: './u1', type: 'symlink', link: 'y/..' },
      { name: './u1/', type: 'dir', mode: 0o777 },
      { name: './u1/canary/', type: 'dir', mode: 0o777 },
      { name: './u1/canary/pwned/', type: 'dir', mode: 0o777 },
      { name: './u1/canary/pwned/planted', content: 'planted\n' },
      { name: './u1/canary/secret', content: 'overwritten\n' },
    ]);
    expect(outside()).toEqual(before);
    const report = succeeded(result);
    expect(existsSync(join(canary, 'pwned'))).toBe(false);
    expect(names(report.dropped)).toEqual(['u1', 'y']);
    expect(report.dropped.find((e) => e.path === 'u1')!.reason).toContain('symbolic link');
    // What came "through" the dropped link is a real directory inside the output folder.
    expect(lstatSync(join(out, 'u1')).isDirectory()).toBe(true);
    expect(readFileSync(join(out, 'u1', 'canary', 'pwned', 'planted'), 'utf8')).toBe('planted\n');
    expect(readFileSync(join(out, 'u1', 'canary', 'secret'), 'utf8')).toBe('overwritten\n');
    expect(readdirSync(out).sort()).toEqual(['u1']);
  });

  it('absolute symlinks and symlinks out of the folder are dropped, and nothing is written through them', async () => {
    const before = outside();
    const result = await attempt([
      { name: 'abs', type: 'symlink', link: canary },
      { name: 'rel', type: 'symlink', link: '../canary' },
      { name: 'inside', type: 'symlink', link: 'sub' },
      { name: 'sub/', type: 'dir' },
      { name: 'abs/f', content: 'through abs\n' },
      { name: 'after.txt', content: 'after\n' },
    ]);
    expect(outside()).toEqual(before);
    const report = succeeded(result);
    expect(names(report.dropped)).toEqual(['abs', 'inside', 'rel']);
    expect(readFileSync(join(out, 'abs', 'f'), 'utf8')).toBe('through abs\n');
    expect(readFileSync(join(out, 'after.txt'), 'utf8')).toBe('after\n');
  });

  it('hard links to outside the copy are dropped; one to a file copied before it is kept', async () => {
    const before = outside();
    const result = await attempt([
      { name: './f', content: 'first\n' },
      { name: './hl', type: 'link', link: './f' },
      { name: './h-dotdot', type: 'link', link: '../canary/secret' },
      { name: './h-abs', type: 'link', link: join(canary, 'secret') },
      { name: './y', type: 'symlink', link: '.' },
      { name: './u1', type: 'symlink', link: 'y/..' },
      { name: './h-chain', type: 'link', link: './u1/canary/secret' },
      { name: './h-missing', type: 'link', link: './nothing' },
      { name: './d/', type: 'dir' },
      { name: './h-dir', type: 'link', link: './d' },
      { name: './after.txt', content: 'after\n' },
    ]);
    expect(outside()).toEqual(before);
    const report = succeeded(result);
    expect(lstatSync(join(canary, 'secret')).nlink).toBe(1);
    expect(names(report.dropped)).toEqual(['h-abs', 'h-chain', 'h-dir', 'h-dotdot', 'h-missing', 'u1', 'y']);
    expect(readFileSync(join(out, 'hl'), 'utf8')).toBe('first\n');
    expect(lstatSync(join(out, 'hl')).ino).toBe(lstatSync(join(out, 'f')).ino);
    expect(readFileSync(join(out, 'after.txt'), 'utf8')).toBe('after\n');
  });
});

describe('copy-out: names', () => {
  it('absolute names and names with ".." parts are dropped, not written anywhere (not even remapped inside)', async () => {
    const before = outside();
    const result = await attempt([
      { name: '../escape.txt', content: 'x\n' },
      { name: 'a/../../escape2.txt', content: 'x\n' },
      { name: './../escape3.txt', content: 'x\n' },
      { name: '/abs.txt', content: 'x\n' },
      { name: join(canary, 'abs-into-canary.txt'), content: 'x\n' },
      { name: '../canary/', type: 'dir', mode: 0o777 },
      { name: './ok.txt', content: 'ok\n' },
    ]);
    expect(outside()).toEqual(before);
    expect(readdirSync(out)).toEqual(['ok.txt']);
    const report = succeeded(result);
    expect(names(report.dropped)).toEqual(
      ['../canary/', '../escape.txt', './../escape3.txt', '/abs.txt', 'a/../../escape2.txt', join(canary, 'abs-into-canary.txt')].sort(),
    );
  });

  it('names are escaped in the notices: control characters from the session never reach the terminal raw', async () => {
    const report = await run([
      { name: 'evil\x1b]0;title\x07\x1b[2Jname', type: 'symlink', link: '/etc' },
      { name: 'bidi\u202etxt.exe', type: 'fifo' },
      { name: 'csi\u009b31m', type: 'symlink', link: '.' },
    ]);
    const lines = copyOutNotices(report, out);
    const text = lines.join('\n');
    expect(text).toContain('evil\\u001b]0;title\\u0007\\u001b[2Jname');
    expect(text).toContain('bidi\\u202etxt.exe');
    expect(text).toContain('csi\\u009b31m');
    for (const line of lines) expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
  });
});

describe('copy-out: special files', () => {
  it('device files, fifos and unknown entry types are dropped and named; the rest is copied', async () => {
    const before = outside();
    const result = await attempt([
      { name: './null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: './disk', type: 'block', devmajor: 8, devminor: 0, mode: 0o666 },
      { name: './pipe', type: 'fifo' },
      { name: './contig', type: 'contiguous', content: 'c\n' },
      { name: './odd', type: 'unknown' },
      { name: './after.txt', content: 'after\n' },
    ]);
    expect(outside()).toEqual(before);
    const report = succeeded(result);
    expect(readdirSync(out)).toEqual(['after.txt']);
    expect(names(report.dropped)).toEqual(['contig', 'disk', 'null', 'odd', 'pipe']);
    expect(report.dropped.find((e) => e.path === 'null')!.reason).toContain('character device');
    expect(report.dropped.find((e) => e.path === 'pipe')!.reason).toContain('fifo');
  });
});

describe('copy-out: links already in the output folder', () => {
  it('a directory entry where the folder holds a link is not written through it: the link stays, its target is untouched', async () => {
    symlinkSync(canary, join(out, 'esc'));
    symlinkSync('../canary', join(out, 'rel'));
    // The chain an older copy-out could have left behind.
    symlinkSync('.', join(out, 'y'));
    symlinkSync('y/..', join(out, 'u1'));
    const before = outside();
    const result = await attempt([
      { name: './esc/', type: 'dir', mode: 0o777 },
      { name: './esc/pwned/', type: 'dir', mode: 0o777 },
      { name: './u1/', type: 'dir', mode: 0o777 },
      { name: './u1/canary/', type: 'dir', mode: 0o777 },
      { name: './u1/canary/pwned2/', type: 'dir', mode: 0o777 },
      { name: './rel', content: 'file over a link\n' },
      { name: './esc/f', content: 'through esc\n' },
      { name: './ok.txt', content: 'ok\n' },
    ]);
    expect(outside()).toEqual(before);
    const report = succeeded(result);
    for (const [name, target] of [
      ['esc', canary],
      ['rel', '../canary'],
      ['y', '.'],
      ['u1', 'y/..'],
    ]) {
      expect(lstatSync(join(out, name!)).isSymbolicLink(), name).toBe(true);
      expect(readlinkSync(join(out, name!)), name).toBe(target);
    }
    expect(names(report.left)).toEqual(['esc', 'rel', 'u1']);
    expect(report.left.find((e) => e.path === 'esc')!.reason).toContain('symbolic link');
    expect(readFileSync(join(out, 'ok.txt'), 'utf8')).toBe('ok\n');
  });

  it('a file over an existing hard link replaces the name, never writes into the shared file', async () => {
    linkSync(join(canary, 'secret'), join(out, 'shared'));
    const before = outside();
    const result = await attempt([{ name: './shared', content: 'from the run\n' }]);
    expect(outside()).toEqual({ ...before, 'canary/secret': { ...before['canary/secret']!, nlink: 1 } });
    succeeded(result);
    expect(readFileSync(join(canary, 'secret'), 'utf8')).toBe('canary secret\n');
    expect(readFileSync(join(out, 'shared'), 'utf8')).toBe('from the run\n');
  });

  it('an output folder that is itself a link the user named is followed (the user chose it)', async () => {
    const real = join(base, 'real-out');
    mkdirSync(real);
    const viaLink = join(base, 'out', 'to-real');
    symlinkSync(real, viaLink);
    const report = await copyOut(craftStream([{ name: './x', content: 'x\n' }]), viaLink, { owner: OWNER });
    expect(report.dropped).toEqual([]);
    expect(readFileSync(join(real, 'x'), 'utf8')).toBe('x\n');
  });
});

describe('copy-out: ownership, modes, staging', () => {
  // As root the files are given away to OWNER (another uid); without root, OWNER is the caller
  // itself, and the archive's uid 0 and setuid bits must still not come back.
  it('files come back owned by the invoking user, never by the uid in the archive; no setuid bits', async () => {
    const outBefore = lstatSync(out);
    const result = await attempt([
      { name: './', type: 'dir', mode: 0o777, uid: 0, gid: 0 },
      { name: './d/', type: 'dir', mode: 0o000 },
      { name: './d/suid', content: '#!/bin/sh\n', mode: 0o4755 },
      { name: './d/plain', content: 'plain\n', mode: 0o640 },
      { name: './rootfile', content: 'r\n', uid: 0, gid: 0 },
    ]);
    const owners = ['d', 'd/suid', 'd/plain', 'rootfile'].map((rel) => {
      const st = lstatSync(join(out, rel), { throwIfNoEntry: false });
      return { rel, uid: st?.uid, gid: st?.gid };
    });
    expect(owners).toEqual(['d', 'd/suid', 'd/plain', 'rootfile'].map((rel) => ({ rel, uid: OWNER.uid, gid: OWNER.gid })));
    expect(succeeded(result).dropped).toEqual([]);
    expect(lstatSync(join(out, 'd', 'suid')).mode & 0o7000).toBe(0);
    // A directory always comes back usable by its owner.
    expect(lstatSync(join(out, 'd')).mode & 0o700).toBe(0o700);
    // The output folder itself keeps its owner and mode.
    expect(lstatSync(out).uid).toBe(outBefore.uid);
    if (ROOT) expect(outBefore.uid).toBe(0);
    expect(lstatSync(out).mode & 0o777).not.toBe(0o777);
  });

  it('extracts into a fresh private directory first, and leaves nothing of it behind', async () => {
    const archive = craftTar([
      { name: './first.txt', content: 'first\n' },
      { name: './second.txt', content: 'second\n' },
    ]);
    const stream = new PassThrough();
    const done = copyOut(stream, out, { owner: OWNER });
    stream.write(archive.subarray(0, 1024));
    // While the archive is still coming in: nothing is in the output folder but the staging dir.
    let staging: string[] = [];
    for (let i = 0; i < 100 && staging.length === 0; i++) {
      await sleep(20);
      staging = readdirSync(out).filter((n) => n.startsWith('.airlock-copy-out-'));
    }
    expect(staging).toHaveLength(1);
    expect(readdirSync(out)).toEqual(staging);
    const st = lstatSync(join(out, staging[0]!));
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o777).toBe(0o700);
    stream.end(archive.subarray(1024));
    await done;
    expect(readdirSync(out).sort()).toEqual(['first.txt', 'second.txt']);
  });

  it('a missing output folder is created, and belongs to the invoking user', async () => {
    const fresh = join(base, 'new', 'deeper');
    const result = await attempt([{ name: './x', content: 'x\n' }], fresh);
    expect(readFileSync(join(fresh, 'x'), 'utf8')).toBe('x\n');
    expect(lstatSync(fresh).uid).toBe(OWNER.uid);
    expect(lstatSync(join(base, 'new')).uid).toBe(OWNER.uid);
    succeeded(result);
  });

  it('the invoking user is SUDO_UID:SUDO_GID under sudo, else the current user', () => {
    expect(invokingUser({ SUDO_UID: '1234', SUDO_GID: '5678' })).toEqual(
      process.getuid?.() === 0 ? { uid: 1234, gid: 5678 } : { uid: process.getuid!(), gid: process.getgid!() },
    );
    expect(invokingUser({})).toEqual({ uid: process.getuid!(), gid: process.getgid!() });
    if (ROOT) expect(() => invokingUser({ SUDO_UID: 'x', SUDO_GID: '1' })).toThrow(/SUDO_UID/);
  });
});

/**
 * Runs `fn` while every thread of libuv's pool is kept busy: file system calls then wait in its
 * queue, as on a loaded machine, and one that an extraction had queued before it failed runs
 * only after the failure was handled.
 */
async function withBusyThreadPool<T>(fn: () => Promise<T>): Promise<T> {
  let busy = true;
  const spin = () =>
    new Promise<void>((resolve) => {
      const loop = (): void => void pbkdf2('x', 'y', 20_000, 32, 'sha256', () => (busy ? loop() : resolve()));
      loop();
    });
  const spinners = Array.from({ length: 8 }, spin);
  try {
    return await fn();
  } finally {
    busy = false;
    await Promise.all(spinners);
  }
}

describe('copy-out: merging into the folder', () => {
  it('a truncated archive moves nothing into the folder and leaves no staging directory', async () => {
    writeFileSync(join(out, 'kept.txt'), 'kept\n');
    const archive = craftTar([
      { name: './a.txt', content: 'a\n' },
      { name: './big', content: 'x'.repeat(3000) },
    ]);
    await expect(copyOut(Readable.from([archive.subarray(0, 2048)]), out, { owner: OWNER })).rejects.toThrow(/nothing was copied out/);
    expect(readdirSync(out)).toEqual(['kept.txt']);
  });

  it('a truncated archive leaves no staging directory behind when file system calls are slow', async () => {
    writeFileSync(join(out, 'kept.txt'), 'kept\n');
    const archive = craftTar([
      { name: './a.txt', content: 'a\n' },
      { name: './dir/big', content: 'x'.repeat(3000) },
    ]);
    await withBusyThreadPool(() => expect(copyOut(Readable.from([archive.subarray(0, 2048)]), out, { owner: OWNER })).rejects.toThrow(/nothing was copied out/));
    // The pool is idle again: whatever the extraction had queued has run by now.
    expect(readdirSync(out)).toEqual(['kept.txt']);
  });

  it('keeps what the run did not touch, replaces files, and leaves a path whose kind differs (named)', async () => {
    writeFileSync(join(out, 'untouched.txt'), 'mine\n');
    writeFileSync(join(out, 'replaced.txt'), 'old\n');
    mkdirSync(join(out, 'was-dir'));
    writeFileSync(join(out, 'was-dir', 'inner'), 'inner\n');
    writeFileSync(join(out, 'was-file'), 'file\n');
    const report = await run([
      { name: './replaced.txt', content: 'new\n' },
      { name: './was-dir', content: 'now a file\n' },
      { name: './was-file/', type: 'dir' },
      { name: './was-file/x', content: 'x\n' },
    ]);
    expect(readFileSync(join(out, 'untouched.txt'), 'utf8')).toBe('mine\n');
    expect(readFileSync(join(out, 'replaced.txt'), 'utf8')).toBe('new\n');
    expect(readFileSync(join(out, 'was-dir', 'inner'), 'utf8')).toBe('inner\n');
    expect(readFileSync(join(out, 'was-file'), 'utf8')).toBe('file\n');
    expect(names(report.left)).toEqual(['was-dir', 'was-file']);
    expect(readdirSync(out).filter((n) => n.startsWith('.airlock-copy-out-'))).toEqual([]);
  });
});

describe('copy-out: notices', () => {
  it('says what was dropped and what was left, by name', async () => {
    symlinkSync('/nowhere', join(out, 'held'));
    const report = await run([
      { name: './y', type: 'symlink', link: '.' },
      { name: './pipe', type: 'fifo' },
      { name: './held/', type: 'dir' },
    ]);
    const lines = copyOutNotices(report, out);
    expect(lines[0]).toMatch(/^copy-out: dropped 2 entries/);
    expect(lines.join('\n')).toContain('"y": symbolic link');
    expect(lines.join('\n')).toContain('"pipe": fifo');
    expect(lines.join('\n')).toContain('"held"');
    expect(copyOutNotices({ dropped: [], left: [], disarmed: [] }, out)).toEqual([]);
  });
});

describe('copy-out: git metadata that would run a program on the host', () => {
  // git runs what a repository's config and hooks name (core.fsmonitor on `git status`, hooks on
  // commit, core.hooksPath, filters): a session that writes them could run code as the user the
  // first time the user runs git in the copied-out folder.
  const marker = () => join(base, 'pwned');
  const armedRepo = (prefix: string): CraftEntry[] => [
    { name: `./${prefix}/`, type: 'dir' },
    { name: `./${prefix}/HEAD`, content: 'ref: refs/heads/main\n' },
    { name: `./${prefix}/objects/`, type: 'dir' },
    { name: `./${prefix}/refs/`, type: 'dir' },
    { name: `./${prefix}/refs/heads/`, type: 'dir' },
    { name: `./${prefix}/config`, content: `[core]\n\trepositoryformatversion = 0\n\tfsmonitor = "touch ${marker()}; false"\n` },
    { name: `./${prefix}/hooks/`, type: 'dir' },
    { name: `./${prefix}/hooks/pre-commit`, content: `#!/bin/sh\ntouch ${marker()}\n`, mode: 0o755 },
  ];

  it('a repository config and hooks are set aside under inert names, and `git status` on the host runs nothing', async () => {
    const report = await run([{ name: './README.md', content: 'hello\n' }, ...armedRepo('.git')]);
    expect(existsSync(join(out, '.git', 'config'))).toBe(false);
    expect(existsSync(join(out, '.git', 'hooks'))).toBe(false);
    expect(readFileSync(join(out, '.git', 'config.airlock-session'), 'utf8')).toContain('fsmonitor');
    expect(readFileSync(join(out, '.git', 'hooks.airlock-session', 'pre-commit'), 'utf8')).toContain('touch');
    expect(names(report.disarmed)).toEqual(['.git/config', '.git/hooks']);
    const status = await runGit(['status', '--short'], out);
    expect(status.code, status.stderr).toBe(0);
    expect(existsSync(marker())).toBe(false);
    expect(copyOutNotices(report, out).join('\n')).toContain('".git/config": renamed to config.airlock-session');
  });

  it('bare repositories, submodule git directories and worktree directories anywhere in the tree are disarmed too', async () => {
    const report = await run([
      ...armedRepo('vendor/lib.git'),
      { name: './.git/', type: 'dir' },
      ...armedRepo('.git/modules/sub'),
      { name: './.git/worktrees/', type: 'dir' },
      { name: './.git/worktrees/w/', type: 'dir' },
      { name: './.git/worktrees/w/HEAD', content: 'ref: refs/heads/w\n' },
      { name: './.git/worktrees/w/commondir', content: '../..\n' },
      { name: './.git/worktrees/w/config.worktree', content: `[core]\n\tfsmonitor = "touch ${marker()}; false"\n` },
    ]);
    expect(names(report.disarmed)).toEqual([
      '.git/modules/sub/config',
      '.git/modules/sub/hooks',
      '.git/worktrees/w/config.worktree',
      'vendor/lib.git/config',
      'vendor/lib.git/hooks',
    ]);
    const status = await runGit(['status', '--short'], join(out, 'vendor', 'lib.git'));
    expect(existsSync(marker())).toBe(false);
    expect(status.stderr).not.toContain('pwned');
  });

  it("the folder's own git config and hooks stay as they were; the session's versions land beside them", async () => {
    mkdirSync(join(out, '.git', 'hooks'), { recursive: true });
    writeFileSync(join(out, '.git', 'config'), '[user]\n\tname = me\n');
    const report = await run(armedRepo('.git'));
    expect(readFileSync(join(out, '.git', 'config'), 'utf8')).toBe('[user]\n\tname = me\n');
    expect(readdirSync(join(out, '.git', 'hooks'))).toEqual([]);
    expect(existsSync(join(out, '.git', 'config.airlock-session'))).toBe(true);
    expect(names(report.disarmed)).toEqual(['.git/config', '.git/hooks']);
  });
});

function runGit(args: string[], cwd: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('git', ['-c', 'safe.directory=*', ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: base } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('copy-out: size', () => {
  it('files past the limit copy nothing out: a session cannot fill the host disk through copy-out', async () => {
    writeFileSync(join(out, 'kept.txt'), 'mine\n');
    const big = 'x'.repeat(600 * 1024);
    const result = await copyOut(
      craftStream([
        { name: './a.bin', content: big },
        { name: './b.bin', content: big },
      ]),
      out,
      { owner: OWNER, maxBytes: 1024 ** 2 },
    ).catch((err: Error) => err);
    expect(result).toBeInstanceOf(Error);
    expect((result as Error).message).toMatch(/more than the copy-out limit of 1 MiB .*--copy-out-limit/);
    expect(readdirSync(out).sort()).toEqual(['kept.txt']);
    // Under the limit, the same archive is copied out whole.
    const report = await copyOut(craftStream([{ name: './a.bin', content: big }]), out, { owner: OWNER, maxBytes: 1024 ** 2 });
    expect(report.dropped).toEqual([]);
    expect(readFileSync(join(out, 'a.bin'), 'utf8').length).toBe(big.length);
  });
});
