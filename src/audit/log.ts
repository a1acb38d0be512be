// The per-session audit log: pino writing JSON lines to <session dir>/audit.jsonl, plus the
// in-memory per-host tally that `airlock exec` prints when the command ends.
import { appendFileSync } from 'node:fs';
import pino from 'pino';
import type { AuditEntry } from './entry.js';

export interface HostTally {
  allowed: number;
  denied: number;
  /** Report mode: let through, but the policy would deny it. */
  wouldDeny: number;
}

let clockMs = 0;
let clockIso = '';
/** The ISO time, formatted once per millisecond (a busy proxy ends many requests in one). */
function now(): string {
  const ms = Date.now();
  if (ms !== clockMs) {
    clockMs = ms;
    clockIso = new Date(ms).toISOString();
  }
  return clockIso;
}

/**
 * One JSON line, "time" first. Serialised here rather than by pino's logger: JSON.stringify of
 * the entry is several times cheaper than pino's generic serialiser, and an audit line needs
 * none of its features (levels, bindings, child loggers). pino's destination still writes it.
 */
function lineOf(entry: AuditEntry): string {
  return `{"time":"${now()}",${JSON.stringify(entry).slice(1)}\n`;
}

/** Open logs, flushed if the process exits with lines still buffered. */
const open = new Set<AuditLog>();
let exitHook = false;
function flushAllOnExit(log: AuditLog): void {
  open.add(log);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const l of open) l.flush();
  });
}

/** Told about each line as it is written (the denial inbox, a live view). */
export type AuditListener = (entry: Readonly<AuditEntry>, time: string) => void;

export class AuditLog {
  private readonly destination: ReturnType<typeof pino.destination>;
  readonly tally = new Map<string, HostTally>();
  private closed = false;
  private readonly listeners = new Set<AuditListener>();

  constructor(readonly file: string) {
    this.destination = pino.destination({ dest: file, mkdir: true, sync: false });
    // A full disk on one session's log must not take the proxy (and every session) down.
    this.destination.on('error', (err: Error) => {
      process.emitWarning(`airlock audit log ${file}: ${err.message}`);
    });
    flushAllOnExit(this);
  }

  /**
   * Resolves once the file is open. Until then the destination cannot flush, and a flush at exit
   * would throw if the process ended in that window.
   */
  ready(): Promise<void> {
    const d = this.destination as unknown as { fd: number; once(e: string, f: (...a: unknown[]) => void): void };
    if (d.fd >= 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      d.once('ready', () => resolve());
      d.once('error', (err) => reject(err as Error));
    });
  }

  record(entry: AuditEntry): void {
    const key = `${entry.host}:${entry.port}`;
    let t = this.tally.get(key);
    if (!t) {
      t = { allowed: 0, denied: 0, wouldDeny: 0 };
      this.tally.set(key, t);
    }
    if (entry.action === 'deny') t.denied++;
    else if (entry.action === 'would_deny') t.wouldDeny++;
    else t.allowed++;
    const line = lineOf(entry);
    this.tell(entry);
    if (this.closed) {
      // A request that ended after its session was removed (or the proxy shut down) is still
      // logged, in the same format; writing to the ended stream would throw.
      try {
        appendFileSync(this.file, line);
      } catch (err) {
        process.emitWarning(`airlock audit log ${this.file}: ${(err as Error).message}`);
      }
      return;
    }
    this.destination.write(line);
  }

  /** Calls `listener` with every line written from now on; returns the call that stops it. */
  subscribe(listener: AuditListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private tell(entry: AuditEntry): void {
    for (const listener of this.listeners) {
      try {
        listener(entry, clockIso);
      } catch (err) {
        // A listener's bug must not cost the request its audit line, nor the proxy its process.
        process.emitWarning(`airlock audit listener failed: ${(err as Error).message}`);
      }
    }
  }

  /** Writes buffered lines now (tests and `audit --follow` read the file). */
  flush(): void {
    try {
      this.destination.flushSync();
    } catch {
      // Not ready yet (file still opening): lines are written when it opens.
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    open.delete(this);
    return new Promise((resolve) => {
      this.flush();
      this.destination.once('close', () => resolve());
      this.destination.end();
      setTimeout(resolve, 500).unref();
    });
  }
}
