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

export class AuditLog {
  private readonly logger: pino.Logger;
  private readonly destination: ReturnType<typeof pino.destination>;
  readonly tally = new Map<string, HostTally>();
  private closed = false;

  constructor(readonly file: string) {
    this.destination = pino.destination({ dest: file, mkdir: true, sync: false });
    // A full disk on one session's log must not take the proxy (and every session) down.
    this.destination.on('error', (err: Error) => {
      process.emitWarning(`airlock audit log ${file}: ${err.message}`);
    });
    this.logger = pino(
      {
        base: null,
        // Every line starts with "time". The level is noise in an audit line, so its formatter
        // returns nothing and the timestamp (no leading comma) comes first. pino caches the level
        // formatter's output per level, so the time must not come from there: it would be the
        // time the log was opened on every line.
        timestamp: () => `"time":"${new Date().toISOString()}"`,
        formatters: { level: () => ({}) },
      },
      this.destination,
    );
  }

  /**
   * Resolves once the file is open. Until then pino cannot flush, and its exit hook would throw
   * if the process ended in that window.
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
    if (this.closed) {
      // A request that ended after its session was removed (or the proxy shut down) is still
      // logged, in the same format; writing to the ended stream would throw.
      try {
        appendFileSync(this.file, JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n');
      } catch (err) {
        process.emitWarning(`airlock audit log ${this.file}: ${(err as Error).message}`);
      }
      return;
    }
    this.logger.info(entry);
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
    return new Promise((resolve) => {
      this.flush();
      this.destination.once('close', () => resolve());
      this.destination.end();
      setTimeout(resolve, 500).unref();
    });
  }
}
