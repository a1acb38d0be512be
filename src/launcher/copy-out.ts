// `airlock run --copy --copy-out DIR`: the container's /workspace, as the archive Docker gives,
// brought back into DIR on the host.
//
// Every name, link target, mode and owner in that archive is the session's choice, and the session
// may be hostile; the host side runs as root. So:
//
//  - The archive is extracted into a fresh private (0700) staging directory made inside DIR, never
//    into DIR itself: nothing already in DIR (a link an older copy-out or the user left there) is
//    on the path of any entry while it is written.
//  - No symbolic link is ever created. A link's target is text that the host resolves later, in a
//    tree (DIR, with whatever links it holds) and at a time no check made here can see; `y -> .`
//    reads as "inside" and is, until `u1 -> y/..` is resolved through it. Without links in the
//    staging tree, no path in it can lead out. Hard links are kept only to a regular file this
//    copy-out wrote before them (they can then only share an inode with that fresh file); devices,
//    fifos, absolute names and names with a ".." part are dropped. All of it is reported by name.
//  - git runs programs a repository names: core.fsmonitor on `git status`, hooks, core.hooksPath,
//    filter drivers, all from its config or hooks directory. In every git directory of the copy
//    (`.git`, bare repositories, submodule and worktree git directories: a directory with a HEAD
//    file and objects/ or commondir), `config`, `config.worktree` and `hooks` are renamed with the
//    suffix `.airlock-session`, where git never reads them; the user reviews and applies them.
//  - tar-fs never chowns to the archive's uid/gid (it would, as root); as root, the staged tree
//    is lchown-ed to the invoking user (SUDO_UID:SUDO_GID under sudo).
//  - The staged tree is then moved into DIR with rename(2), descending only into real directories
//    (lstat). A path that is a symbolic link in DIR is left as it is, neither followed nor
//    replaced, and what the run had there is reported; a file replaces the name in DIR, never
//    writes into the existing file (which could be a hard link to anything).
//
// Nothing but the user can change DIR while this runs: the session has no host path mounted
// (--copy), and its container has exited before its archive is read.
import fs, { lchownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { Writable } from 'node:stream';
import { extract } from 'tar-fs';
import type { Headers } from 'tar-fs';
import { formatBytes } from '../policy/index.js';
import { LaunchError } from './errors.js';

/** Who owns what copy-out writes. */
export interface Owner {
  readonly uid: number;
  readonly gid: number;
}

export interface CopyOutEntry {
  /** The entry's name in the archive (normalized when it is a safe one). */
  readonly path: string;
  readonly reason: string;
}

export interface CopyOutReport {
  /** Entries of the archive that were not copied out: links, special files, unsafe names. */
  readonly dropped: CopyOutEntry[];
  /** Paths in the output folder left as they were; the run's version of them was not copied out. */
  readonly left: CopyOutEntry[];
  /** Git config files and hook directories of the run, copied out under inert names. */
  readonly disarmed: CopyOutEntry[];
}

/** Appended to what git would run from; git never reads a file of that name. */
export const DISARMED_SUFFIX = '.airlock-session';

/** What git reads from a git directory to choose a program to run. */
const GIT_ACTIVE = ['config', 'config.worktree', 'hooks'];

/** Staging directories are named this, plus random characters, inside the output folder. */
export const STAGING_PREFIX = '.airlock-copy-out-';

/** What copy-out writes at most unless told otherwise: a session must not fill the host's disk. */
export const DEFAULT_COPY_OUT_LIMIT = 8 * 1024 ** 3;

/** Notices list at most this many names of each kind (a session can make millions). */
const MAX_LISTED = 50;

const SPECIAL: Partial<Record<NonNullable<Headers['type']>, string>> = {
  'character-device': 'character device',
  'block-device': 'block device',
  fifo: 'fifo',
  'contiguous-file': 'contiguous file (a type copy-out does not write)',
};

/**
 * The user copy-out writes files as: SUDO_UID:SUDO_GID when running as root under sudo, else the
 * current user. Only root can give files away, so a non-root process is always its own owner.
 */
export function invokingUser(env: NodeJS.ProcessEnv = process.env): Owner {
  const self = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  if (self.uid !== 0 || (env.SUDO_UID === undefined && env.SUDO_GID === undefined)) return self;
  const { SUDO_UID: uid = '', SUDO_GID: gid = '' } = env;
  if (!/^\d+$/.test(uid) || !/^\d+$/.test(gid)) {
    throw new LaunchError(
      `SUDO_UID=${quote(uid)} and SUDO_GID=${quote(gid)}: expected the numeric ids sudo sets, for the owner of what --copy-out writes; ` +
        'run under sudo as it sets them, or unset both to have root own the copy',
    );
  }
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Writes the tar `archive` (the session's /workspace) into the directory `dest`, which is made if
 * missing. Returns what was dropped and what was left as it was; throws a LaunchError when the
 * archive cannot be read or written (nothing is moved into `dest` when the archive is bad).
 */
export async function copyOut(archive: NodeJS.ReadableStream, dest: string, opts: { owner?: Owner; maxBytes?: number } = {}): Promise<CopyOutReport> {
  const owner = opts.owner ?? invokingUser();
  const giveAway = process.getuid?.() === 0;
  const root = outputFolder(dest, giveAway ? owner : undefined);
  let staging: string;
  try {
    staging = mkdtempSync(join(root, STAGING_PREFIX));
  } catch (err) {
    throw new LaunchError(`--copy-out ${dest}: cannot write in that directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const report: CopyOutReport = { dropped: [], left: [], disarmed: [] };
  try {
    await extractInto(archive, staging, report, opts.maxBytes ?? DEFAULT_COPY_OUT_LIMIT);
    disarmGitDirs(staging, '', report);
    if (giveAway) {
      chownTree(staging, owner);
      // Still 0700: private to the user, who can then clear up after a failed move.
      lchownSync(staging, owner.uid, owner.gid);
    }
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    // Error messages name the session's paths: escaped like every other name.
    throw new LaunchError(`--copy-out ${dest}: reading the session's /workspace failed, nothing was copied out: ${printable((err as Error).message)}`);
  }
  try {
    moveInto(staging, root, '', report, basename(staging));
  } catch (err) {
    throw new LaunchError(
      `--copy-out ${dest}: moving the copy into place failed: ${printable((err as Error).message)}. ` +
        `What was not moved yet is in ${staging}; move it by hand or remove it`,
    );
  }
  rmSync(staging, { recursive: true, force: true });
  return report;
}

/** Lines for stderr: what was dropped and what was left, names escaped, lists capped. */
export function copyOutNotices(report: CopyOutReport, dest: string): string[] {
  const lines: string[] = [];
  const list = (entries: readonly CopyOutEntry[]) => {
    for (const e of entries.slice(0, MAX_LISTED)) lines.push(`  ${quote(e.path)}: ${e.reason}`);
    if (entries.length > MAX_LISTED) lines.push(`  ... and ${entries.length - MAX_LISTED} more`);
  };
  const n = report.dropped.length;
  if (n) {
    lines.push(
      `copy-out: dropped ${n} ${n === 1 ? 'entry' : 'entries'} of /workspace (symbolic links, devices, fifos, absolute names and names ` +
        'with ".." are never copied out; hard links only to a file copied out before them):',
    );
    list(report.dropped);
  }
  const d = report.disarmed.length;
  if (d) {
    lines.push(
      `copy-out: set aside ${d} git ${d === 1 ? 'file' : 'files'} of the run under inert names (git would run programs they name; ` +
        'read them, then apply what you want by hand):',
    );
    list(report.disarmed);
  }
  const m = report.left.length;
  if (m) {
    lines.push(
      `copy-out: left ${m} ${m === 1 ? 'path' : 'paths'} in ${quote(dest)} as ${m === 1 ? 'it was' : 'they were'}, without the run's version ` +
        `(remove or rename ${m === 1 ? 'it' : 'them'} and run again to get that):`,
    );
    list(report.left);
  }
  return lines;
}

/**
 * A name for messages: JSON-quoted, and with every character a terminal could act on escaped
 * (C0/C1 controls, DEL, bidi overrides, invisible ones), since the session chose the names.
 */
export function quote(text: string): string {
  return JSON.stringify(text).replace(
    /[\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** `text` with what a terminal could act on escaped, as in quote(), without the quotes. */
function printable(text: string): string {
  return quote(text).slice(1, -1);
}

/** The real path of `dest` (the user named it: links in it are followed), made if missing. */
function outputFolder(dest: string, owner: Owner | undefined): string {
  if (statOrNull(dest, true) === null) {
    let made: string | undefined;
    try {
      made = mkdirSync(dest, { recursive: true });
    } catch (err) {
      throw new LaunchError(`--copy-out ${dest}: cannot make that directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    // What was made here is the user's, like everything copied into it.
    if (made && owner) {
      let dir = made;
      lchownSync(dir, owner.uid, owner.gid);
      for (const part of relative(made, dest).split(sep).filter(Boolean)) {
        dir = join(dir, part);
        lchownSync(dir, owner.uid, owner.gid);
      }
    }
  }
  const real = realpathSync(dest);
  if (!statSync(real).isDirectory()) throw new LaunchError(`--copy-out ${dest} is not a directory: give a directory (it is made if missing)`);
  return real;
}

function statOrNull(path: string, follow = false): Stats | null {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** The archive name as a path inside the copy ('' for its root); null when absolute or with "..". */
function entryPath(name: string): string | null {
  if (name.startsWith('/')) return null;
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  return parts.includes('..') ? null : parts.join('/');
}

function extractInto(archive: NodeJS.ReadableStream, staging: string, report: CopyOutReport, maxBytes: number): Promise<void> {
  const drop = (path: string, reason: string) => {
    report.dropped.push({ path, reason });
    return true;
  };
  let written = 0;
  let overLimit = false;
  // tar-fs reads entries one at a time and calls this only once the previous one is written, so
  // the checks below see the staging tree as it is when the entry lands.
  const ignore = (_name: string, h?: Headers): boolean => {
    if (!h) return true;
    const rel = entryPath(h.name);
    const kind = h.type === null ? 'entry of an unknown type' : SPECIAL[h.type];
    if (rel === null) return drop(h.name, 'absolute name, or a name with a ".." part');
    if (rel === '') return h.type === 'directory' ? true : drop(h.name, `${kind ?? h.type} in place of /workspace itself`);
    if (h.type === 'symlink') return drop(rel, `symbolic link to ${quote(h.linkname ?? '')}`);
    if (h.type !== 'file' && h.type !== 'directory' && h.type !== 'link') return drop(rel, kind ?? String(h.type));
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = statOrNull(join(staging, ...parts.slice(0, i)));
      if (parent && !parent.isDirectory()) return drop(rel, `${quote(parts.slice(0, i).join('/'))} came earlier in the archive as a file`);
    }
    const here = statOrNull(join(staging, rel));
    if (here && here.isDirectory() !== (h.type === 'directory')) {
      return drop(rel, here.isDirectory() ? 'a directory of that name came earlier in the archive' : 'a file of that name came earlier in the archive');
    }
    if (h.type === 'link') {
      const target = entryPath(h.linkname ?? '');
      const st = target ? statOrNull(join(staging, target)) : null;
      if (!target || target === rel || !st?.isFile()) return drop(rel, `hard link to ${quote(h.linkname ?? '')}, not to a file copied out before it`);
    }
    if (h.type === 'file') {
      written += h.size ?? 0;
      // Past the limit nothing more is written; the rest of the archive is read and skipped.
      if (overLimit || written > maxBytes) return (overLimit = true);
    }
    return false;
  };
  const calls = new FsCalls();
  const extracted = new Promise<void>((resolve, reject) => {
    // chown: false: tar-fs running as root would give each entry the archive's uid/gid.
    // dmode: every directory stays usable by its owner, so the copy can be moved into place.
    const sink = extract(staging, { ignore, chown: false, dmode: 0o700, strict: true, fs: calls.fs });
    sink.on('finish', () => {
      if (!overLimit) return resolve();
      reject(
        new Error(
          `its files add up to more than the copy-out limit of ${formatBytes(maxBytes)} ` +
            '(raise it with --copy-out-limit, e.g. --copy-out-limit 20g, or copy what you need with docker cp from a --keep container)',
        ),
      );
    });
    sink.on('error', reject);
    archive.on('error', reject);
    archive.pipe(sink);
  });
  // Settled only once none of tar-fs's file system calls is left to run: after a failure it still
  // finishes the entry under way, whose mkdir would make the staging directory again once removed.
  return extracted.finally(() => calls.stop());
}

/**
 * The file system tar-fs extracts with: it counts the calls under way (a write stream until it
 * closes), and once stopped refuses new ones and closes the write streams still open.
 */
class FsCalls {
  private inFlight = 0;
  private stopped = false;
  private idle: (() => void) | null = null;
  private readonly open = new Set<fs.WriteStream>();
  readonly fs: Record<string, unknown>;

  constructor() {
    const wrapped: Record<string, unknown> = {};
    for (const name of ['mkdir', 'stat', 'lstat', 'utimes', 'chmod', 'lchmod', 'chown', 'lchown', 'unlink', 'symlink', 'link', 'realpath', 'readlink'] as const) {
      const real = fs[name] as (...args: unknown[]) => void;
      wrapped[name] = (...args: unknown[]) => {
        const cb = args.pop() as (...r: unknown[]) => void;
        if (this.stopped) return process.nextTick(cb, Object.assign(new Error('copy-out stopped'), { code: 'ECANCELED' }));
        this.inFlight++;
        real(...args, (...r: unknown[]) => {
          this.settle();
          cb(...r);
        });
      };
    }
    wrapped.createWriteStream = (path: string, options?: unknown) => {
      if (this.stopped) {
        const refused = new Writable({ write: (_c, _e, done) => done() });
        process.nextTick(() => refused.destroy(Object.assign(new Error('copy-out stopped'), { code: 'ECANCELED' })));
        return refused;
      }
      this.inFlight++;
      const ws = fs.createWriteStream(path, options as Parameters<typeof fs.createWriteStream>[1]);
      this.open.add(ws);
      ws.once('close', () => {
        this.open.delete(ws);
        this.settle();
      });
      return ws;
    };
    this.fs = { ...fs, ...wrapped };
  }

  private settle(): void {
    if (--this.inFlight === 0) this.idle?.();
  }

  /** Refuses new calls, closes open write streams; settles once no call is under way. */
  stop(): Promise<void> {
    this.stopped = true;
    for (const ws of this.open) ws.destroy();
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => (this.idle = resolve));
  }
}

/**
 * Renames the config files and hooks of every git directory under `dir` (staged: directories and
 * regular files only) to names git does not read. Sorted, so reports come in a stable order.
 */
function disarmGitDirs(dir: string, rel: string, report: CopyOutReport): void {
  const names = readdirSync(dir).sort();
  const isGitDir = names.includes('HEAD') && (names.includes('objects') || names.includes('commondir'));
  if (isGitDir) {
    for (const name of GIT_ACTIVE) {
      if (!names.includes(name)) continue;
      const inert = name + DISARMED_SUFFIX;
      // The session may have made an entry of that name too: the one git would have read wins.
      rmSync(join(dir, inert), { recursive: true, force: true });
      renameSync(join(dir, name), join(dir, inert));
      report.disarmed.push({ path: rel ? `${rel}/${name}` : name, reason: `renamed to ${inert}` });
    }
  }
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (lstatSync(path).isDirectory()) disarmGitDirs(path, rel ? `${rel}/${name}` : name, report);
  }
}

/** lchown everything under `dir`. */
function chownTree(dir: string, owner: Owner): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    lchownSync(path, owner.uid, owner.gid);
    if (lstatSync(path).isDirectory()) chownTree(path, owner);
  }
}

/**
 * Moves the entries of `from` (staged: directories and regular files only) into `to`, a real
 * directory of the output folder. Never follows a link that exists in `to`.
 */
function moveInto(from: string, to: string, rel: string, report: CopyOutReport, stagingName?: string): void {
  for (const name of readdirSync(from)) {
    const path = rel ? `${rel}/${name}` : name;
    if (name === stagingName) {
      report.dropped.push({ path, reason: "has the name of copy-out's own staging directory" });
      continue;
    }
    const src = join(from, name);
    const dst = join(to, name);
    const staged = lstatSync(src);
    const there = statOrNull(dst);
    if (!there) {
      renameSync(src, dst);
    } else if (there.isSymbolicLink()) {
      report.left.push({ path, reason: 'a symbolic link in the output folder (not followed, not replaced)' });
    } else if (staged.isDirectory() && there.isDirectory()) {
      moveInto(src, dst, path, report);
    } else if (staged.isFile() && there.isFile()) {
      // Replaces the name: the file there may be a hard link, whose other names must not change.
      renameSync(src, dst);
    } else {
      const what = there.isDirectory() ? 'a directory' : there.isFile() ? 'a file' : 'a special file';
      report.left.push({ path, reason: `${what} in the output folder, where the run has ${staged.isDirectory() ? 'a directory' : 'a file'}` });
    }
  }
}
