// An HTTP/1.1 response, parsed from bytes: its head, then its body framed by Content-Length,
// chunked encoding or the connection's end. No socket here (bytes in, events out), so every
// framing and every malformed response is tested byte by byte; the upstream client feeds it what
// a connection reads and acts on what it reports. Strict on purpose: a response that could be
// framed two ways is refused, never guessed at, since guessing is how responses get split.
import { BAD_VALUE, TOKEN } from './http-syntax.js';
import type { ResponseHead } from './types.js';

/** A final response head and what it says about the connection. */
export interface ParsedResponseHead extends ResponseHead {
  /** The server keeps the connection open after this response. */
  readonly keepAlive: boolean;
  /** The server's own keep-alive timeout (Keep-Alive: timeout=N), in seconds, or null. */
  readonly keepAliveSeconds: number | null;
  /** A 204/304 that announced a body: bytes may follow that belong to no response. */
  readonly strayBody: boolean;
}

/** What the parser reports, in order: one head, body pieces, then the end (or an error). */
export interface ResponseEvents {
  head(head: ParsedResponseHead): void;
  /** A piece of the body; the last piece comes with end(). */
  body(piece: Buffer): void;
  /** The response is complete; `extra`: bytes followed it that belong to no response. */
  end(last: Buffer | null, extra: boolean): void;
  /** The response cannot be framed (or passed on) safely. */
  error(message: string): void;
}

export const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE = 4096;
const CRLF = Buffer.from('\r\n');
const CRLF2 = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.[01] \d{3}(?: [^\r\n]*)?$/;

const enum Phase {
  Idle,
  Head,
  Fixed,
  UntilClose,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
}

/** Where parsing goes after a head, by how its body is framed. */
const BODY_PHASE: Record<FramedHead['framing'], Phase> = { none: Phase.Idle, length: Phase.Fixed, chunked: Phase.ChunkSize, close: Phase.UntilClose };

export class ResponseParser {
  private phase = Phase.Idle;
  /** A partial head or chunk line, kept for the next feed. */
  private pending: Buffer | null = null;
  private left = 0;
  private method = 'GET';
  /** Counts start() and stop() calls: an event handler may stop the parser (the exchange ended). */
  private run = 0;

  constructor(private readonly events: ResponseEvents) {}

  /** Expects the response to a request with this method. */
  start(method: string): void {
    this.run++;
    this.method = method;
    this.phase = Phase.Head;
    this.pending = null;
  }

  /** Stops parsing (the exchange ended): nothing more is reported until the next start(). */
  stop(): void {
    this.run++;
    this.phase = Phase.Idle;
    this.pending = null;
  }

  /** Whether a response is expected and its head has not arrived. */
  get awaitingHead(): boolean {
    return this.phase === Phase.Head;
  }

  /** The connection ended: completes a body read until close; false when that was not expected. */
  eof(): boolean {
    if (this.phase !== Phase.UntilClose) return false;
    this.phase = Phase.Idle;
    this.events.end(null, false);
    return true;
  }

  feed(data: Buffer): void {
    let off = 0;
    for (;;) {
      switch (this.phase) {
        case Phase.Head: {
          const buf = this.pending ? Buffer.concat([this.pending, data.subarray(off)]) : off === 0 ? data : data.subarray(off);
          this.pending = null;
          const end = buf.indexOf(CRLF2);
          if (end === -1) {
            if (buf.length > MAX_HEAD_BYTES) return this.refuse('upstream response head too large');
            if (buf.length > 0) this.pending = buf;
            return;
          }
          if (end > MAX_HEAD_BYTES) return this.refuse('upstream response head too large');
          data = buf;
          off = end + 4;
          if (!this.onHead(buf.toString('latin1', 0, end), off < buf.length)) return;
          break;
        }
        case Phase.Fixed: {
          const n = Math.min(this.left, data.length - off);
          this.left -= n;
          const piece = off === 0 && n === data.length ? data : data.subarray(off, off + n);
          off += n;
          if (this.left === 0) return this.finish(piece, off < data.length);
          if (n > 0) this.events.body(piece);
          return;
        }
        case Phase.UntilClose:
          if (off < data.length) this.events.body(off === 0 ? data : data.subarray(off));
          return;
        case Phase.ChunkSize: {
          const line = this.line(data, off, 'upstream sent a malformed chunk size');
          if (!line) return;
          ({ next: off, data } = line);
          const size = parseChunkSize(line.text);
          if (size < 0) return this.refuse('upstream sent a malformed chunk size');
          if (size === 0) {
            this.phase = Phase.Trailers;
          } else {
            this.left = size;
            this.phase = Phase.ChunkData;
          }
          break;
        }
        case Phase.ChunkData: {
          if (off >= data.length) return;
          const n = Math.min(this.left, data.length - off);
          this.left -= n;
          off += n;
          if (this.left === 0) this.phase = Phase.ChunkDataEnd;
          this.events.body(data.subarray(off - n, off));
          break;
        }
        case Phase.ChunkDataEnd: {
          const line = this.line(data, off, 'upstream chunk not followed by CRLF');
          if (!line) return;
          if (line.text !== '') return this.refuse('upstream chunk not followed by CRLF');
          ({ next: off, data } = line);
          this.phase = Phase.ChunkSize;
          break;
        }
        case Phase.Trailers: {
          // Trailers are read and dropped (the client's framing is the proxy's own).
          const line = this.line(data, off, 'upstream trailer too long');
          if (!line) return;
          ({ next: off, data } = line);
          if (line.text === '') return this.finish(null, off < data.length);
          break;
        }
        default:
          return;
      }
    }
  }

  private finish(last: Buffer | null, extra: boolean): void {
    this.phase = Phase.Idle;
    this.pending = null;
    this.events.end(last, extra);
  }

  /** A response that cannot be framed (or passed on) safely: refused, never guessed at. */
  private refuse(message: string): void {
    this.stop();
    this.events.error(message);
  }

  /**
   * The next CRLF-terminated line from `data` at `off`, joined with any partial line held back;
   * null when parsing stops here: the line is not complete yet (kept for the next feed), or it is
   * too long (the response is refused with `tooLong`).
   */
  private line(data: Buffer, off: number, tooLong: string): { text: string; next: number; data: Buffer } | null {
    let buf = data;
    let from = off;
    if (this.pending) {
      buf = Buffer.concat([this.pending, data.subarray(off)]);
      from = 0;
      this.pending = null;
    }
    const end = buf.indexOf(CRLF, from);
    if (end - from > MAX_CHUNK_LINE || (end === -1 && buf.length - from > MAX_CHUNK_LINE)) {
      this.refuse(tooLong);
      return null;
    }
    if (end === -1) {
      if (buf.length > from) this.pending = buf.subarray(from);
      return null;
    }
    return { text: buf.toString('latin1', from, end), next: end + 2, data: buf };
  }

  /** Takes a head; false when parsing stops (an error, or the exchange ended on the head). */
  private onHead(text: string, trailing: boolean): boolean {
    const head = parseResponseHead(text, this.method);
    if (typeof head === 'string') {
      this.refuse(head);
      return false;
    }
    if (head === null) return true; // 100, 102, 103: informational, not passed on; the real head follows
    this.phase = BODY_PHASE[head.framing];
    if (this.phase === Phase.Fixed && head.length === 0) this.phase = Phase.Idle;
    this.left = head.length;
    const run = this.run;
    this.events.head(head);
    if (this.run !== run) return false; // stopped by the handler
    if (this.phase === Phase.Idle) {
      this.finish(null, trailing); // no body
      return false;
    }
    return true;
  }
}

/** A final head with how its body is framed. */
export interface FramedHead extends ParsedResponseHead {
  readonly framing: 'none' | 'length' | 'chunked' | 'close';
  /** Body length for 'length' framing. */
  readonly length: number;
}

/**
 * Parses a response head (without its final CRLFCRLF) for a request with `method`: the head, null
 * for an informational (1xx) head, or why it is refused.
 */
export function parseResponseHead(text: string, method: string): FramedHead | null | string {
  // Scanned by hand rather than split and matched line by line: this runs once per response.
  let eol = text.indexOf('\r\n');
  if (eol === -1) eol = text.length;
  if (!STATUS_LINE.test(eol === text.length ? text : text.slice(0, eol))) return 'upstream sent a malformed status line';
  const http10 = text.charCodeAt(7) === 48; // "HTTP/1.0"
  const statusCode = Number(text.slice(9, 12));
  const headers: Record<string, string | string[]> = Object.create(null);
  let length: string | undefined;
  let transferEncoding: string | undefined;
  let connection = '';
  for (let at = eol + 2; at < text.length; at = eol + 2) {
    eol = text.indexOf('\r\n', at);
    if (eol === -1) eol = text.length;
    const colon = text.indexOf(':', at);
    const name = colon > at && colon < eol ? text.slice(at, colon) : '';
    const value = name ? text.slice(colon + 1, eol).trim() : '';
    // No name, a space before the colon, obs-fold, a bare LF or NUL: not a response that can be
    // framed (or passed on) safely.
    if (!TOKEN.test(name) || BAD_VALUE.test(value)) return 'upstream sent a malformed header line';
    const key = name.toLowerCase();
    if (key === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== value)) return 'upstream sent an invalid Content-Length';
      length = value;
    } else if (key === 'transfer-encoding') {
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
    } else if (key === 'connection') {
      connection += `,${value.toLowerCase()}`;
    }
    const prior = headers[key];
    if (prior === undefined) headers[key] = value;
    else if (Array.isArray(prior)) prior.push(value);
    else headers[key] = [prior, value];
  }
  if (statusCode < 200) {
    if (statusCode === 101) return 'upstream switched protocols on a plain request';
    return null;
  }
  let keepAlive = http10 ? /(^|,)\s*keep-alive\s*(,|$)/.test(connection) : !(connection !== '' && /(^|,)\s*close\s*(,|$)/.test(connection));
  const hint = headers['keep-alive'] === undefined ? null : /timeout=(\d+)/.exec(String(headers['keep-alive']));
  const noBody = method === 'HEAD' || statusCode === 204 || statusCode === 304;
  const strayBody = (statusCode === 204 || statusCode === 304) && (transferEncoding !== undefined || (length !== undefined && length !== '0'));
  let framing: FramedHead['framing'];
  if (!noBody && transferEncoding !== undefined) {
    // Both framings at once is how responses get split; refuse rather than guess.
    if (length !== undefined) return 'upstream sent both Transfer-Encoding and Content-Length';
    // "gzip, chunked" and the like: the proxy asks for none, and a coding it does not undo would
    // pass an echoed secret through the scrubber unseen.
    if (transferEncoding.trim().toLowerCase() !== 'chunked') return `upstream sent Transfer-Encoding: ${transferEncoding}`;
    framing = 'chunked';
  } else if (noBody) {
    framing = 'none';
  } else if (length !== undefined) {
    framing = 'length';
  } else {
    framing = 'close';
    keepAlive = false;
  }
  return {
    statusCode,
    headers,
    keepAlive,
    keepAliveSeconds: hint ? Number(hint[1]) : null,
    strayBody,
    framing,
    length: framing === 'length' ? Number(length) : 0,
  };
}

/** Hex chunk size with optional extensions; -1 when malformed. */
export function parseChunkSize(text: string): number {
  const semi = text.indexOf(';');
  const digits = (semi === -1 ? text : text.slice(0, semi)).trim();
  if (!/^[0-9a-fA-F]{1,12}$/.test(digits)) return -1;
  return parseInt(digits, 16);
}
