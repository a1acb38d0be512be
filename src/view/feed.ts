// Following one session's audit log for the view: the lines appended since the last look, counted
// (decisions and per-rule hits) and sent to the pages following the session as server-sent
// events. An event's id is the byte offset just past its line, so a page that comes
// back with Last-Event-ID gets exactly the lines after the last one it saw, from the file itself.
//
// Nothing here runs per audit line while no page is open: the log is read only when a page asks
// (an API call) or while one follows the session (a 100 ms poll), and then a whole batch of lines
// is read, counted and written to each page in one write.
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';

/** Where a page's stream of one session is written. */
export interface FeedSubscriber {
  write(chunk: string): void;
  /** Bytes written but not yet taken by the page. */
  readonly backlog: number;
  /** Ends the stream (the page's EventSource reconnects with Last-Event-ID). */
  end(): void;
}

/** Lines read per look at most, so a huge log is caught up over several looks, not in one stall. */
const MAX_READ = 8 << 20;
/** A page that has not taken this much is dropped; it reconnects and resumes from the file. */
const MAX_SUBSCRIBER_BACKLOG = 8 << 20;
/** What a page that brings no Last-Event-ID gets first: the last lines, at most this many. */
export const BACKLOG_LINES = 1000;
const BACKLOG_BYTES = 1 << 20;
/** A page further behind than this (asleep for an hour of traffic) skips to the recent lines. */
const MAX_RESUME_BYTES = 4 << 20;

/**
 * Calls `fn` with each complete line of `text` (the UTF-8 bytes from offset `base` of the log,
 * decoded) and the byte offset just past it. All-ASCII text (the usual case: hosts are ASCII and
 * paths percent-encoded) needs no byte counting.
 */
function eachLine(text: string, base: number, ascii: boolean, fn: (line: string, end: number) => void): void {
  let start = 0;
  let offset = base;
  for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
    const line = text.slice(start, nl);
    offset += (ascii ? line.length : Buffer.byteLength(line)) + 1;
    if (line !== '') fn(line, offset);
    start = nl + 1;
  }
}

/**
 * Server-sent events for the complete lines in `buf` (which starts at byte `base` of the log):
 * one event per line, its id the offset just past the line. A line holds no CR or LF (JSON escapes
 * them), so it is one `data:` field as it stands. `keepLast`: only the last lines.
 */
export function sseEvents(buf: Buffer, base: number, keepLast = Infinity): string {
  const end = buf.lastIndexOf(10) + 1; // past the last complete line
  let from = 0;
  if (keepLast !== Infinity) {
    // The start of the last `keepLast` lines: just past the line end before them.
    let nl = end - 1;
    for (let n = 0; n < keepLast && nl > 0; n++) nl = buf.lastIndexOf(10, nl - 1);
    from = nl + 1;
  }
  const text = buf.toString('utf8', from, end);
  let out = '';
  eachLine(text, base + from, text.length === end - from, (line, past) => {
    if (!line.startsWith(EVENT)) out += `id: ${past}\ndata: ${line}\n\n`;
  });
  return out;
}

/** How the log's lines that are not a request's end begin (audit/log.ts). */
const EVENT = '{"event":"';

/** `"key":"` for the fields the view counts by, built once (read per line). */
const ACTION = '"action":"';
const KIND = '"kind":"';
const RULE = '"rule":"';

/**
 * The string value after `pattern` (`"key":"`) in an audit line we wrote, read without parsing the
 * line. Inside a JSON string every quote is escaped, so `"key":"` there is always the key itself.
 * `fromEnd`: search from the end (the counted fields follow the long host and path).
 */
function field(line: string, pattern: string, fromEnd = false): string | undefined {
  const at = fromEnd ? line.lastIndexOf(pattern) : line.indexOf(pattern);
  if (at === -1) return undefined;
  const from = at + pattern.length;
  let end = line.indexOf('"', from);
  if (end === -1) return undefined;
  const raw = line.slice(from, end);
  if (!raw.includes('\\')) return raw;
  // An escape in the value (never in the fields counted today): find the real closing quote.
  for (end = from; end < line.length && line[end] !== '"'; end += line[end] === '\\' ? 2 : 1);
  return end < line.length ? (JSON.parse(`"${line.slice(from, end)}"`) as string) : undefined;
}

export class AuditFeed {
  /** Bytes of the log read and counted: always just past a line. */
  private offset = 0;
  private fd: number | null = null;
  readonly ruleHits = new Map<string, number>();
  readonly totals = { allow: 0, deny: 0, would_deny: 0 };
  private readonly subscribers = new Set<FeedSubscriber>();

  constructor(
    readonly session: string,
    readonly file: string,
    /** Rules that tunnel without inspection: their tunnel lines are their hits. */
    private readonly blindRules: () => ReadonlySet<string> = () => new Set(),
  ) {}

  get following(): number {
    return this.subscribers.size;
  }

  /** Reads what was appended since the last look, counts it and sends it to the pages following. */
  catchUp(): void {
    const fd = this.open();
    if (fd === null) return;
    const stat = fstatSync(fd);
    const size = stat.size;
    if (size < this.offset) this.restart();
    if (size <= this.offset) {
      // Read to its end and rotated away (a new audit.jsonl is there): follow the new file.
      if (this.rotated(stat.ino)) {
        this.release();
        this.offset = 0; // the counts go on across files
        this.catchUp();
      }
      return;
    }
    const buf = Buffer.allocUnsafe(Math.min(size - this.offset, MAX_READ));
    const read = readSync(fd, buf, 0, buf.length, this.offset);
    const last = buf.lastIndexOf(10, read - 1);
    if (last === -1) return; // a line still being written
    const text = buf.toString('utf8', 0, last + 1);
    const base = this.offset;
    this.offset += last + 1;
    // One pass: count each line and, for the pages following, frame it as an event.
    const following = this.subscribers.size > 0;
    const blind = this.blindRules();
    let chunk = '';
    eachLine(text, base, text.length === last + 1, (line, end) => {
      // The log's admit lines and its own records (start, rotate, close...) are not rows.
      if (line.startsWith(EVENT)) return;
      this.count(line, blind);
      if (following) chunk += `id: ${end}\ndata: ${line}\n\n`;
    });
    if (following) for (const s of this.subscribers) this.send(s, chunk);
  }

  /**
   * Starts a page's stream: the lines after `after` (a Last-Event-ID), or the last few lines when it
   * has none or one that is not a line boundary of this log, then every new line.
   */
  subscribe(subscriber: FeedSubscriber, after: number | null): () => void {
    this.catchUp();
    const fd = this.fd;
    let history = '';
    if (fd !== null && this.offset > 0) {
      let resume = after !== null && after <= this.offset && this.isLineEnd(fd, after) ? after : null;
      if (resume !== null && this.offset - resume > MAX_RESUME_BYTES) {
        // Said to the page, which tells the operator the export has what it skipped.
        history += `event: gap\ndata: ${JSON.stringify({ skipped_bytes: this.offset - resume })}\n\n`;
        resume = null;
      }
      const start = resume ?? Math.max(0, this.offset - BACKLOG_BYTES);
      const buf = Buffer.allocUnsafe(this.offset - start);
      readSync(fd, buf, 0, buf.length, start);
      // Without a resume point, start at a line boundary and keep the last lines only.
      const cut = resume !== null || start === 0 ? 0 : buf.indexOf(10) + 1;
      history += sseEvents(buf.subarray(cut), start + cut, resume === null ? BACKLOG_LINES : Infinity);
    }
    subscriber.write(`retry: 1000\n\n${history}`);
    this.subscribers.add(subscriber);
    return () => this.subscribers.delete(subscriber);
  }

  /** A keep-alive comment to every page following (proxies and browsers drop silent streams). */
  ping(): void {
    for (const s of this.subscribers) this.send(s, ': ping\n\n');
  }

  close(): void {
    for (const s of this.subscribers) s.end();
    this.subscribers.clear();
    this.release();
  }

  /** Closes the log's descriptor; the next look opens it again. */
  release(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private send(s: FeedSubscriber, chunk: string): void {
    if (s.backlog > MAX_SUBSCRIBER_BACKLOG) {
      this.subscribers.delete(s);
      s.end();
      return;
    }
    s.write(chunk);
  }

  private isLineEnd(fd: number, offset: number): boolean {
    if (offset === 0) return true;
    const one = Buffer.alloc(1);
    return readSync(fd, one, 0, 1, offset - 1) === 1 && one[0] === 10;
  }

  private open(): number | null {
    if (this.fd !== null) return this.fd;
    try {
      this.fd = openSync(this.file, 'r');
    } catch {
      return null; // not written yet: the log is opened lazily
    }
    return this.fd;
  }

  private rotated(ino: number): boolean {
    try {
      return statSync(this.file).ino !== ino;
    } catch {
      return false;
    }
  }

  /** The log was truncated or replaced: count it again from the start. */
  private restart(): void {
    this.offset = 0;
    this.ruleHits.clear();
    this.totals.allow = this.totals.deny = this.totals.would_deny = 0;
  }

  /**
   * Counts one line: its decision, kind and rule are read in place, without parsing it, as the view
   * may follow a session at thousands of lines a second.
   */
  private count(text: string, blind: ReadonlySet<string>): void {
    const action = field(text, ACTION, true);
    if (action === 'allow' || action === 'deny' || action === 'would_deny') this.totals[action]++;
    const rule = field(text, RULE, true);
    if (rule !== undefined && (field(text, KIND) !== 'tunnel' || blind.has(rule))) {
      this.ruleHits.set(rule, (this.ruleHits.get(rule) ?? 0) + 1);
    }
  }
}
