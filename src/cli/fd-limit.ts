// The daemon's open-file limit and the connection caps that fit under it. Every client connection
// is a descriptor, and most have an upstream one too; audit logs, listeners and the admin socket
// need theirs. Caps below the limit keep a flood of connections from leaving the daemon unable to
// accept anything else (EMFILE), the admin socket included.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface OpenFileLimit {
  readonly soft: number;
  readonly hard: number;
}

/** RLIMIT_NOFILE of this process from /proc (Linux), or null where it cannot be read. */
export function readOpenFileLimit(file = '/proc/self/limits'): OpenFileLimit | null {
  try {
    const line = readFileSync(file, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const match = line ? /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(line) : null;
    if (!match) return null;
    const value = (v: string) => (v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v));
    return { soft: value(match[1]!), hard: value(match[2]!) };
  } catch {
    return null;
  }
}

export interface RaiseResult {
  /** The limit in force afterwards, or null when it cannot be read (not Linux). */
  readonly limit: OpenFileLimit | null;
  /** Why the soft limit is still below the hard one, when it is. */
  readonly problem?: string;
}

/**
 * Raises the soft open-file limit to the hard limit. Node has no setrlimit; it raises the soft
 * limit itself at start-up on most systems, so this usually finds nothing to do. When it does,
 * it asks util-linux's prlimit to change this process's limit.
 */
export function raiseOpenFileLimit(): RaiseResult {
  const before = readOpenFileLimit();
  if (!before || before.soft >= before.hard) return { limit: before };
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${before.hard}:`], { stdio: 'pipe', timeout: 5_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    const why = e.code === 'ENOENT' ? 'prlimit (util-linux) is not installed' : (e.stderr?.toString().trim() || e.message);
    return { limit: before, problem: why };
  }
  const after = readOpenFileLimit() ?? before;
  return after.soft >= after.hard ? { limit: after } : { limit: after, problem: 'prlimit ran but the soft limit did not change' };
}

export interface ConnectionCaps {
  /** All client connections of the proxy together. */
  readonly total: number;
  /** Client connections on one listener. */
  readonly perListener: number;
  /** Descriptors left for everything else. */
  readonly reserve: number;
}

/** The caps used when the open-file limit is unknown. */
export const UNKNOWN_LIMIT_CAPS: ConnectionCaps = Object.freeze({ total: 4_096, perListener: 1_024, reserve: 0 });

/**
 * Caps that fit an open-file limit: a reserve (an eighth, 128 to 4096) for the process itself,
 * audit logs, listeners and the admin socket; half of the rest for client connections (each may
 * have an upstream connection too); one listener gets a quarter of that, at most 1024, so one
 * session cannot take every slot.
 */
export function capsFor(limit: number): ConnectionCaps {
  const reserve = Math.min(4_096, Math.max(128, Math.floor(limit / 8)));
  const total = Math.max(16, Math.floor((limit - reserve) / 2));
  return { total, perListener: Math.max(4, Math.min(1_024, Math.floor(total / 4))), reserve };
}
