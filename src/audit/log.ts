// The per-session audit log, <session dir>/audit.jsonl, and the in-memory per-host tally that
// `airlock exec` prints when the command ends.
//
// Write-ahead: an exchange about to send its first byte upstream calls admit(), which writes its
// `admit` line to the OS (write(2), no user-space buffer) before it returns; if that write fails
// (a full disk) the exchange is refused with 503 instead. The end line of every exchange follows
// when it ends, written at the end of that event-loop turn (or with an admit line before it). Data is fsynced and the signed head (`audit.head`) rewritten at most `syncMs`
// after a write. Every line is chained (chain.ts); the log rotates by size and keeps the chain.
//
// Past 500 lines on purpose: the writer alone holds the chain's state (seq, prev, what is written,
// what waits), and admission, a full disk, rotation, retention and resuming a file all change it;
// split across files, each would need that state handed to it.
import { closeSync, fstatSync, fsync, fsyncSync, rename, writeFile, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { AuditEntry } from './entry.js';
import { chainLine, genesis, signHead, splitLine } from './chain.js';

export interface HostTally {
  allowed: number;
  denied: number;
  /** Report mode: let through, but the policy would deny it. */
  wouldDeny: number;
}

/** What is recorded of an exchange before it goes upstream (its end line adds the outcome). */
export type AdmitRecord = Pick<AuditEntry, 'session' | 'id' | 'kind' | 'method' | 'scheme' | 'host' | 'port' | 'path' | 'action' | 'policy_version' | 'rule' | 'reason' | 'credentials'>;

export interface AuditLogOptions {
  readonly key: Buffer;
  readonly session: string;
  /** Rotate once the file holds this many bytes (0: never). Default 64 MiB. */
  readonly rotateBytes?: number;
  /** Rotated files kept (the oldest go first; 0: all). Default 0. */
  readonly retainFiles?: number;
  /** Longest time between a write and its fsync (and the head's update). Default 200 ms. */
  readonly syncMs?: number;
  /** Told when the log stops being writable and when it is again (the proxy's own log). */
  readonly notify?: (level: 'error' | 'info', message: string) => void;
}

export const DEFAULT_ROTATE_BYTES = 64 << 20;
/** Refusals kept in memory while the disk is full; past this they are counted, not kept. */
const MAX_PENDING_REFUSALS = 1 << 20;
const RETRY_MS = 500;

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

/** Open logs, flushed if the process exits with lines still pending. */
const open = new Set<AuditLog>();
let exitHook = false;
function flushAllOnExit(log: AuditLog): void {
  open.add(log);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const l of open) l.flush(true);
  });
}

/** Told about each end line as it is recorded (the denial inbox, a live view, exporters). */
export type AuditListener = (entry: Readonly<AuditEntry>, time: string) => void;

interface QueuedAdmit {
  readonly json: string;
  readonly done: (written: boolean) => void;
  cancelled: boolean;
}

function admitJson(record: AdmitRecord): string {
  return `{"event":"admit","time":"${now()}",${JSON.stringify(record).slice(1)}`;
}

interface Pending {
  readonly line: string;
  readonly seq: number;
  readonly mac: string;
}

/** `audit.<n>.jsonl`: the n-th file of a session's log, rotated out. */
export function rotatedName(index: number): string {
  return `audit.${index}.jsonl`;
}

/** The rotated files in `dir`, oldest first, with their index. */
export function rotatedFiles(dir: string): { index: number; name: string }[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: { index: number; name: string }[] = [];
  for (const name of names) {
    const m = /^audit\.(\d{1,9})\.jsonl$/.exec(name);
    if (m) out.push({ index: Number(m[1]), name });
  }
  return out.sort((a, b) => a.index - b.index);
}

export class AuditLog {
  readonly tally = new Map<string, HostTally>();
  private readonly listeners = new Set<AuditListener>();
  private readonly key: Buffer;
  private readonly session: string;
  private readonly dir: string;
  private readonly headFile: string;
  private fd = -1;
  /** Bytes of the current file known written (a failed write is cut back to this). */
  private size = 0;
  /** Index of the current file in the session's chain of files. */
  private fileIndex = 0;
  /** Last line chained (pending or written) and last line written. */
  private seq = 0;
  private prev: string;
  private written: { seq: number; mac: string };
  private pending: Pending[] = [];
  private admitQueue: QueuedAdmit[] = [];
  private pendingRefusalBytes = 0;
  /** Refusals recorded while the disk was full and not kept (past MAX_PENDING_REFUSALS). */
  private droppedRefusals = 0;
  private flushQueued = false;
  private syncTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Why the log cannot be written (a full disk, say), or null. */
  private failing: string | null = null;
  private closed = false;
  private rotating = false;
  /** An fsync and head update are under way in the thread pool. */
  private headWriting = false;
  private readonly rotateBytes: number;
  private readonly retainFiles: number;
  private readonly syncMs: number;

  constructor(
    readonly file: string,
    private readonly options: AuditLogOptions,
  ) {
    this.key = options.key;
    this.session = options.session;
    this.dir = dirname(file);
    this.headFile = join(this.dir, basename(file, '.jsonl') + '.head');
    this.rotateBytes = options.rotateBytes ?? DEFAULT_ROTATE_BYTES;
    this.retainFiles = options.retainFiles ?? 0;
    this.syncMs = options.syncMs ?? 200;
    this.prev = genesis(this.key, this.session);
    this.written = { seq: 0, mac: this.prev };
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const previous = rotatedFiles(this.dir);
    this.fileIndex = previous.length ? previous[previous.length - 1]!.index + 1 : 0;
    this.openFile();
    flushAllOnExit(this);
  }

  /** Kept for callers that waited for pino's lazy open: the file is open once constructed. */
  ready(): Promise<void> {
    return Promise.resolve();
  }

  /** Why new requests are refused (the log cannot be written), or null when it can. */
  get failure(): string | null {
    return this.failing;
  }

  /**
   * Records that an exchange is about to go upstream: its line is written to the OS before this
   * returns true. False: it could not be written (nothing may be sent; refuse the exchange).
   */
  admit(record: AdmitRecord): boolean {
    // Lines queued by admitSoon() are not written here: one written before its exchange is told
    // could be left behind by an exchange that ends first, an admit line for nothing sent.
    return this.writeAdmits([admitJson(record)]);
  }

  /**
   * admit(), batched: the line is written, in one write(2) with every other line admitted in this
   * event-loop turn, before `done(true)` is called; `done(false)`: it could not be written. Until
   * then the exchange may be ended (the client left) and its admission cancelled: nothing of it is
   * written and `done` is not called.
   */
  admitSoon(record: AdmitRecord, done: (written: boolean) => void): { cancel(): void } {
    const entry: QueuedAdmit = { json: admitJson(record), done, cancelled: false };
    this.admitQueue.push(entry);
    this.queueFlush();
    return {
      cancel: () => {
        entry.cancelled = true;
      },
    };
  }

  /** Chains admit lines after the pending ones and writes them all; on failure none is chained. */
  private writeAdmits(jsons: readonly string[]): boolean {
    if (this.closed) return false;
    if (this.failing && !this.retry()) return false;
    let seq = this.seq;
    let prev = this.prev;
    let text = '';
    for (const p of this.pending) text += p.line;
    for (const json of jsons) {
      const chained = chainLine(this.key, json, ++seq, prev);
      text += chained.line;
      prev = chained.mac;
    }
    if (!this.write(text)) return false;
    this.seq = seq;
    this.prev = prev;
    this.written = { seq, mac: prev };
    this.pending = [];
    this.pendingRefusalBytes = 0;
    this.afterWrite();
    return true;
  }

  /**
   * The end of a turn: its admissions that were not cancelled and the end lines recorded in it go
   * out in one write, then each admission is told whether it was written.
   */
  private flushTurn(): void {
    const todo = this.admitQueue.filter((q) => !q.cancelled);
    this.admitQueue = [];
    if (todo.length === 0) {
      if (!this.closed) this.writePending();
      return;
    }
    const ok = this.writeAdmits(todo.map((q) => q.json));
    // An exchange told before may end another of this turn's (one client connection): that one
    // was written but is not told to go.
    for (const q of todo) if (!q.cancelled) q.done(ok);
  }

  /**
   * Records the end of an exchange (its one end line; `admitted`: it was admitted upstream). The
   * line is written at the end of this event-loop turn; while the disk is full it is kept until it
   * can be.
   */
  record(entry: AuditEntry, admitted = true): void {
    const key = `${entry.host}:${entry.port}`;
    let t = this.tally.get(key);
    if (!t) {
      t = { allowed: 0, denied: 0, wouldDeny: 0 };
      this.tally.set(key, t);
    }
    if (entry.action === 'deny') t.denied++;
    else if (entry.action === 'would_deny') t.wouldDeny++;
    else t.allowed++;
    const time = now();
    this.tell(entry, time);
    const json = `{"time":"${time}",${JSON.stringify(entry).slice(1)}`;
    if (this.failing && !admitted && this.pendingRefusalBytes > MAX_PENDING_REFUSALS) {
      this.droppedRefusals++;
      return;
    }
    const line = this.chain(json);
    if (this.failing && !admitted) this.pendingRefusalBytes += line.length;
    if (this.closed) {
      // A request that ended after its session was removed (or the proxy shut down) is still
      // logged, and the log closed again after it.
      this.reopenToAppend();
      return;
    }
    this.queueFlush();
  }

  /** Calls `listener` with every end line recorded from now on; returns the call that stops it. */
  subscribe(listener: AuditListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Writes pending lines now (tests read the file; `sync`: and fsyncs, as at exit). */
  flush(sync = false): void {
    if (this.fd < 0) return;
    if (this.pending.length) this.writePending();
    if (sync && !this.failing) this.syncNow();
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.writePending();
    this.chain(`{"event":"close","time":"${now()}","session":${JSON.stringify(this.session)}}`);
    if (!this.writePending()) {
      // Still full as the session ends: what could not be written is named in the proxy's log.
      this.options.notify?.('error', `audit log ${this.file}: closed with ${this.pending.length} line(s) not written (${this.failing}); seq ${this.written.seq + 1}..${this.seq} are missing`);
    }
    this.syncNow();
    this.closed = true;
    open.delete(this);
    this.clearTimers();
    this.closeFd();
    return Promise.resolve();
  }

  // ---- writing

  /** Chains a line after the last one and queues it; returns it. */
  private chain(json: string): string {
    const seq = this.seq + 1;
    const { line, mac } = chainLine(this.key, json, seq, this.prev);
    this.seq = seq;
    this.prev = mac;
    this.pending.push({ line, seq, mac });
    return line;
  }

  /**
   * Queued admissions and end lines go out at the end of this event-loop turn, in one write for
   * all of them. (A 10 ms timer, to share one write with the next request's admit line, measured
   * more CPU per request than this.)
   */
  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      this.flushTurn();
    });
  }

  private writePending(): boolean {
    if (this.pending.length === 0 || this.fd < 0) return true;
    if (!this.write(this.pending.map((p) => p.line).join(''))) return false;
    this.written = this.pending[this.pending.length - 1]!;
    this.pending = [];
    this.pendingRefusalBytes = 0;
    this.afterWrite();
    return true;
  }

  /** One write(2) of whole lines; on failure the file is cut back to its last whole line. */
  private write(text: string): boolean {
    const buf = Buffer.from(text);
    let done = 0;
    try {
      while (done < buf.length) done += writeSync(this.fd, buf, done, buf.length - done);
    } catch (err) {
      if (done > 0) {
        try {
          ftruncateSync(this.fd, this.size);
        } catch {
          // Cannot cut back either: verify will name the torn line.
        }
      }
      this.fail(err as Error);
      return false;
    }
    this.size += buf.length;
    if (this.failing) this.recovered();
    return true;
  }

  private afterWrite(): void {
    if (this.rotateBytes > 0 && this.size >= this.rotateBytes && !this.rotating) {
      this.rotating = true;
      try {
        this.rotate();
      } finally {
        this.rotating = false;
      }
    }
    if (!this.syncTimer && !this.closed) {
      this.syncTimer = setTimeout(() => {
        this.syncTimer = null;
        this.syncSoon();
      }, this.syncMs);
      this.syncTimer.unref();
    }
  }

  /** fsync in the thread pool, then the head names what is now on disk (also written there). */
  private syncSoon(): void {
    const fd = this.fd;
    const at = { file: this.fileIndex, ...this.written };
    if (fd < 0 || this.headWriting) return;
    this.headWriting = true;
    fsync(fd, (err) => {
      if (err || this.closed || fd !== this.fd) {
        this.headWriting = false;
        return;
      }
      const tmp = `${this.headFile}.tmp`;
      writeFile(tmp, this.headText(at), { mode: 0o600 }, (werr) => {
        if (werr || this.closed) {
          this.headWriting = false;
          return;
        }
        rename(tmp, this.headFile, () => {
          this.headWriting = false;
          // Closed meanwhile: close() wrote the final head, which this rename may have replaced.
          if (this.closed) this.writeHead({ file: this.fileIndex, ...this.written });
        });
      });
    });
  }

  private syncNow(): void {
    if (this.fd < 0) return;
    try {
      fsyncSync(this.fd);
      this.writeHead({ file: this.fileIndex, ...this.written });
    } catch (err) {
      this.options.notify?.('error', `audit log ${this.file}: fsync failed: ${(err as Error).message}`);
    }
  }

  /** The signed head: the last line synced, so a log cut shorter than it is detected. */
  private writeHead(at: { file: number; seq: number; mac: string }): void {
    const tmp = `${this.headFile}.sync.tmp`;
    try {
      writeFileSync(tmp, this.headText(at), { mode: 0o600 });
      renameSync(tmp, this.headFile);
    } catch {
      // A full disk: the head stays at the last one written (it lags, it never runs ahead).
    }
  }

  private headText(at: { file: number; seq: number; mac: string }): string {
    return JSON.stringify(signHead(this.key, { session: this.session, file: at.file, seq: at.seq, mac: at.mac, time: now() })) + '\n';
  }

  // ---- a full disk

  private fail(err: Error): void {
    const first = this.failing === null;
    this.failing = (err as NodeJS.ErrnoException).code ?? err.message;
    if (first) {
      this.options.notify?.('error', `audit log ${this.file} cannot be written (${err.message}): new requests of session ${this.session} are refused with 503 until it can`);
    }
    if (!this.retryTimer && !this.closed) {
      this.retryTimer = setInterval(() => this.retry(), RETRY_MS);
      this.retryTimer.unref();
    }
  }

  /** Tries the pending lines again; true when the log is writable. */
  private retry(): boolean {
    if (this.pending.length === 0) {
      // Nothing waiting: probe whether a line would fit.
      if (this.droppedRefusals === 0) {
        if (!this.hasRoom()) return false;
        this.recovered();
        return true;
      }
    }
    if (this.droppedRefusals > 0) {
      this.chain(`{"event":"gap","time":"${now()}","session":${JSON.stringify(this.session)},"refusals_not_logged":${this.droppedRefusals}}`);
      this.droppedRefusals = 0;
    }
    return this.writePending() && this.failing === null;
  }

  private hasRoom(): boolean {
    // Write and cut back a probe the size of a long line: a disk with room for it can take lines.
    const probe = Buffer.alloc(4096, 0x20);
    try {
      writeSync(this.fd, probe);
    } catch {
      try {
        ftruncateSync(this.fd, this.size);
      } catch {
        // nothing more to do
      }
      return false;
    }
    ftruncateSync(this.fd, this.size);
    return true;
  }

  private recovered(): void {
    if (this.failing === null) return;
    this.failing = null;
    if (this.retryTimer) clearInterval(this.retryTimer);
    this.retryTimer = null;
    this.options.notify?.('info', `audit log ${this.file} is writable again: session ${this.session} admits requests`);
  }

  // ---- files

  private openFile(): void {
    this.fd = openSync(this.file, 'a+', 0o600);
    this.size = fstatSync(this.fd).size;
    if (this.size > 0 && this.resume()) return;
    if (this.size > 0) {
      // Not a chain we can continue (written by an old version, or torn): kept as it was.
      closeSync(this.fd);
      renameSync(this.file, join(this.dir, rotatedName(this.fileIndex)));
      this.fileIndex++;
      this.fd = openSync(this.file, 'a+', 0o600);
      this.size = 0;
    }
    this.chain(`{"event":"start","time":"${now()}","session":${JSON.stringify(this.session)},"file":${this.fileIndex},"pid":${process.pid}}`);
    this.writePending();
  }

  /** Continues the chain of an existing file from its last whole line (a session resumed). */
  private resume(): boolean {
    const len = Math.min(this.size, 64 << 10);
    const buf = Buffer.alloc(len);
    readSync(this.fd, buf, 0, len, this.size - len);
    const text = buf.toString('utf8');
    const end = text.lastIndexOf('\n');
    if (end !== text.length - 1) return false; // torn last line
    const last = text.slice(text.lastIndexOf('\n', end - 1) + 1, end);
    const parts = splitLine(last);
    const seq = /"seq":(\d+),"prev":"[0-9a-f]+"$/.exec(parts?.body ?? '');
    if (!parts || !seq) return false;
    this.seq = Number(seq[1]);
    this.prev = parts.mac;
    this.written = { seq: this.seq, mac: this.prev };
    const first = /"file":(\d+)/.exec(this.firstLine());
    this.fileIndex = first ? Number(first[1]) : this.fileIndex;
    this.chain(`{"event":"resume","time":"${now()}","session":${JSON.stringify(this.session)},"pid":${process.pid}}`);
    this.writePending();
    return true;
  }

  private firstLine(): string {
    const buf = Buffer.alloc(Math.min(this.size, 1024));
    readSync(this.fd, buf, 0, buf.length, 0);
    return buf.toString('utf8').split('\n')[0] ?? '';
  }

  /**
   * The current file becomes audit.<n>.jsonl (its last line says so) and a new audit.jsonl starts
   * with a line chained to it; then the oldest rotated files past the retention are removed, after
   * a line that says so.
   */
  private rotate(): void {
    const next = this.fileIndex + 1;
    this.chain(`{"event":"rotate","time":"${now()}","session":${JSON.stringify(this.session)},"next":${next}}`);
    if (!this.writePending()) return;
    try {
      fsyncSync(this.fd);
      this.closeFd();
      renameSync(this.file, join(this.dir, rotatedName(this.fileIndex)));
    } catch (err) {
      this.options.notify?.('error', `audit log ${this.file}: rotation failed: ${(err as Error).message}`);
      if (this.fd < 0) this.fd = openSync(this.file, 'a+', 0o600);
      return;
    }
    this.fileIndex = next;
    this.fd = openSync(this.file, 'a+', 0o600);
    this.size = 0;
    this.chain(`{"event":"start","time":"${now()}","session":${JSON.stringify(this.session)},"file":${this.fileIndex},"pid":${process.pid}}`);
    if (this.retainFiles > 0) {
      const rotated = rotatedFiles(this.dir);
      const drop = rotated.slice(0, Math.max(0, rotated.length - this.retainFiles));
      if (drop.length) {
        const below = drop[drop.length - 1]!.index + 1;
        this.chain(`{"event":"prune","time":"${now()}","session":${JSON.stringify(this.session)},"below":${below}}`);
        if (this.writePending()) {
          for (const f of drop) {
            try {
              unlinkSync(join(this.dir, f.name));
            } catch {
              // Already gone.
            }
          }
        }
      }
    }
    this.writePending();
  }

  private reopenToAppend(): void {
    this.chain(`{"event":"close","time":"${now()}","session":${JSON.stringify(this.session)}}`);
    try {
      this.fd = openSync(this.file, 'a', 0o600);
      this.size = fstatSync(this.fd).size;
      this.writePending();
      this.syncNow();
    } catch (err) {
      process.emitWarning(`airlock audit log ${this.file}: ${(err as Error).message}`);
    } finally {
      this.closeFd();
    }
  }

  private closeFd(): void {
    if (this.fd < 0) return;
    try {
      closeSync(this.fd);
    } catch {
      // Closed already.
    }
    this.fd = -1;
  }

  private clearTimers(): void {
    if (this.syncTimer) clearTimeout(this.syncTimer);
    if (this.retryTimer) clearInterval(this.retryTimer);
    this.syncTimer = this.retryTimer = null;
  }

  private tell(entry: AuditEntry, time: string): void {
    for (const listener of this.listeners) {
      try {
        listener(entry, time);
      } catch (err) {
        // A listener's bug must not cost the request its audit line, nor the proxy its process.
        process.emitWarning(`airlock audit listener failed: ${(err as Error).message}`);
      }
    }
  }
}
