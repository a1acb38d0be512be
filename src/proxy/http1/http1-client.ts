// The proxy's upstream HTTP/1.1 client: keep-alive connections pooled per origin, one request at a
// time per connection, bodies streamed both ways with backpressure. It exists because a general
// client's per-request machinery (request objects, abort signals, async resources) cost more CPU
// than the whole relay of a small request (bench/README.md has the measurements); this one does
// only what a forwarding proxy needs: write one head, parse one response, frame bodies strictly.
import type net from 'node:net';
import type { Readable } from 'node:stream';
import { BAD_VALUE, TOKEN } from './http-syntax.js';
import type { BodySink, ResponseHead, SinkFactory } from './types.js';

/** How the client reaches an origin; the caller resolves, guards and (for https) verifies TLS. */
export type Dial = (host: string, port: number, secure: boolean) => Promise<net.Socket>;

export interface Http1Options {
  readonly dial: Dial;
  /** Connections per origin; further requests wait for one to come free. */
  readonly maxPerOrigin?: number;
  /** An exchange fails when the upstream sends nothing for this long (before or in the body). */
  readonly stallTimeoutMs?: number;
  /** Idle keep-alive connections close after this (or the server's own, shorter, hint). */
  readonly keepAliveMs?: number;
}

export interface UpstreamCall {
  readonly secure: boolean;
  readonly host: string;
  readonly port: number;
  readonly method: string;
  /** Path and query, already checked. */
  readonly path: string;
  /** Flat [name, value, ...] list; sent as given (Host added when absent). */
  readonly headers: readonly string[];
  /** Request body: with a Content-Length header it is sent as is, otherwise chunked. */
  readonly body: Readable | null;
  /** Called per body chunk before it is sent; throwing stops the request with that error. */
  readonly onBodyChunk?: (bytes: number) => void;
}

export class Http1Error extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export const TIMEOUT_CODES: ReadonlySet<string> = new Set(['ETIMEDOUT', 'UPSTREAM_HEADERS_TIMEOUT', 'UPSTREAM_BODY_TIMEOUT']);

const MAX_HEAD_BYTES = 64 * 1024;
/**
 * How much of a response body may wait in the client's socket buffer before the upstream is
 * paused. Above a stream's 16 KiB default on purpose: pausing at every full TLS record stalled
 * the relay between reads (the 100 MB transfers ran at 0.75 of a core, waiting); at 64 KiB a
 * 1 GiB download still cost 10-15% more CPU per MiB.
 */
const RESPONSE_BUFFER_LIMIT = 256 * 1024;
/**
 * The same for a request body waiting in the upstream socket's buffer. Lower: with 256 KiB a
 * 1 GiB upload kept V8's major collector busy on its helper threads (650-880 µs of CPU per MiB,
 * a fifth of the proxy's); at 64 KiB that fell to ~25 µs and the upload ran faster.
 */
const REQUEST_BUFFER_LIMIT = 64 * 1024;
const MAX_CHUNK_LINE = 4096;
const CRLF = Buffer.from('\r\n');
const CRLF2 = Buffer.from('\r\n\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const BAD_PATH = /[^\x21-\x7e\x80-\xff]/;
/** Methods that may be sent again when a kept-alive connection died before any answer. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
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

/** One request in flight: its promise, its sink, and whether it may still be retried. */
export class UpstreamRequest {
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (err: Error) => void;
  sink: BodySink | null = null;
  conn: Connection | null = null;
  settled = false;
  /** Response bytes seen: after the first, a failure is not retried. */
  answered = false;
  /** The head went out: from then on only an idempotent, bodiless request may go again. */
  written = false;
  retried = false;

  origin!: Origin;

  constructor(
    readonly call: UpstreamCall,
    readonly factory: SinkFactory,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
  }

  /** The client left: drop the exchange (a connection mid-response cannot be reused). */
  abort(): void {
    if (this.settled) return;
    const conn = this.conn;
    this.origin?.unqueue(this);
    this.fail(new Http1Error('aborted by the client', 'ABORTED'));
    conn?.destroy();
  }

  succeed(): void {
    if (this.settled) return;
    this.settled = true;
    this.resolveDone();
  }

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.rejectDone(err);
  }
}

/** The pool of connections to one origin. */
class Origin {
  readonly idle: Connection[] = [];
  readonly waiting: UpstreamRequest[] = [];
  total = 0;

  constructor(
    readonly client: Http1Client,
    readonly key: string,
    readonly secure: boolean,
    readonly host: string,
    readonly port: number,
  ) {}

  dispatch(x: UpstreamRequest): void {
    if (x.settled) return;
    const now = Date.now();
    while (this.idle.length > 0) {
      const conn = this.idle.pop()!;
      if (conn.usable() && conn.idleUntil > now) return conn.start(x);
      conn.destroy();
    }
    if (this.total >= this.client.maxPerOrigin) {
      this.waiting.push(x);
      return;
    }
    this.total++;
    this.client.dial(this.host, this.port, this.secure).then(
      (socket) => {
        const conn = new Connection(socket, this);
        if (x.settled) conn.release();
        else conn.start(x, true);
      },
      (err: Error) => {
        x.fail(err);
        this.lost();
      },
    );
  }

  unqueue(x: UpstreamRequest): void {
    const i = this.waiting.indexOf(x);
    if (i !== -1) this.waiting.splice(i, 1);
  }

  /** A connection came free (or closed): start the next waiting request, if any. */
  next(conn?: Connection): void {
    while (this.waiting.length > 0) {
      const x = this.waiting.shift()!;
      if (x.settled) continue;
      if (conn?.usable()) return conn.start(x);
      return this.dispatch(x);
    }
    if (!conn?.usable()) return;
    // Shutting down, or the server is about to close it anyway: do not pool it.
    if (this.client.closed || conn.keepAliveMs < 1000) return conn.destroy();
    // Idle expiry is checked when a connection is taken and by the client's sweep, not with a
    // timer per request.
    conn.idleUntil = Date.now() + conn.keepAliveMs;
    this.idle.push(conn);
    this.client.sweepSoon();
  }

  closed(conn: Connection): void {
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    this.lost();
  }

  /** One connection fewer (closed, or its dial failed): serve who waits; forget an unused origin. */
  private lost(): void {
    this.total--;
    this.next();
    if (this.total === 0 && this.waiting.length === 0) this.client.forget(this);
  }
}

/** One keep-alive connection and the response parser for its current request. */
class Connection {
  private x: UpstreamRequest | null = null;
  private phase = Phase.Idle;
  private pending: Buffer | null = null;
  private left = 0;
  private keepAlive = true;
  private requestBodyDone = true;
  private draining = false;
  private dead = false;
  private reused = false;
  private method = 'GET';
  private stopBody: ((drain?: boolean) => void) | null = null;
  private gone = false;
  keepAliveMs: number;
  idleUntil = 0;

  constructor(
    readonly socket: net.Socket,
    readonly origin: Origin,
  ) {
    this.keepAliveMs = origin.client.keepAliveMs;
    // One inactivity timeout for the connection's whole life: set once, not per request.
    socket.setTimeout(origin.client.stallTimeoutMs);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: Error) => this.onClose(err));
    socket.on('close', () => this.onClose(null));
    socket.on('timeout', () => this.onTimeout());
  }

  usable(): boolean {
    return !this.dead && this.keepAlive && this.socket.writable && this.x === null;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Returns a fresh connection nobody needs any more to the pool. */
  release(): void {
    this.origin.next(this);
  }

  start(x: UpstreamRequest, fresh = false): void {
    if (!fresh) this.reused = true;
    this.x = x;
    x.conn = this;
    const { call } = x;
    this.method = call.method;
    this.phase = Phase.Head;
    this.pending = null;
    let head: string;
    let chunked = false;
    try {
      ({ head, chunked } = requestHead(call));
    } catch (err) {
      this.x = null;
      x.fail(err as Error);
      this.release();
      return;
    }
    if (!call.body) {
      x.written = true;
      this.socket.write(head, 'latin1');
      return;
    }
    this.sendBody(x, head, call.body, chunked);
  }

  /**
   * Streams the request body. The head waits for the first body bytes (or the end): a request
   * whose body turns out malformed (the client's parser fails on it) never reaches the upstream.
   */
  private sendBody(x: UpstreamRequest, head: string, body: Readable, chunked: boolean): void {
    this.requestBodyDone = false;
    const socket = this.socket;
    const sendHead = () => {
      if (x.written) return;
      x.written = true;
      socket.write(head, 'latin1');
    };
    const cleanup = () => {
      this.stopBody = null;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      socket.off('drain', onDrain);
    };
    // Answered (or failed) before the body was all sent: stop sending, let the rest drain away;
    // or, when nothing was sent yet and the request goes again elsewhere, just let go of it.
    this.stopBody = (drain = true) => {
      cleanup();
      if (drain) body.resume();
      else body.pause();
    };
    const onData = (chunk: Buffer) => {
      if (x.settled || this.x !== x) return cleanup();
      try {
        x.call.onBodyChunk?.(chunk.length);
      } catch (err) {
        cleanup();
        this.fail(err as Error);
        return;
      }
      if (chunk.length === 0) return;
      let more: boolean;
      // Batched like response bodies: one TLS write for what one read of the client delivered.
      this.corkUntilImmediate(socket);
      sendHead();
      if (chunked) {
        socket.write(chunk.length.toString(16) + '\r\n', 'latin1');
        socket.write(chunk);
        more = socket.write(CRLF);
      } else {
        more = socket.write(chunk);
      }
      // 'drain' follows a false write once the buffer empties, so the resume below comes.
      if (!more && socket.writableLength > REQUEST_BUFFER_LIMIT) body.pause();
    };
    const onDrain = () => body.resume();
    const onEnd = () => {
      cleanup();
      if (this.x !== x) return;
      socket.cork();
      sendHead();
      if (chunked) socket.write(LAST_CHUNK);
      socket.uncork();
      this.requestBodyDone = true;
    };
    const onError = (err: Error) => {
      cleanup();
      if (this.x === x) this.fail(err);
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    socket.on('drain', onDrain);
    body.resume();
  }

  private onData(data: Buffer): void {
    const x = this.x;
    if (x === null) {
      // Bytes nobody asked for: this connection is out of step; never reuse it.
      this.dead = true;
      this.socket.destroy();
      return;
    }
    x.answered = true;
    this.parse(x, data);
  }

  private parse(x: UpstreamRequest, data: Buffer): void {
    let off = 0;
    while (this.x === x && !x.settled) {
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
          if (!this.onHead(x, buf.toString('latin1', 0, end), off < buf.length)) return;
          break;
        }
        case Phase.Fixed: {
          const n = Math.min(this.left, data.length - off);
          this.left -= n;
          const piece = off === 0 && n === data.length ? data : data.subarray(off, off + n);
          off += n;
          if (this.left === 0) {
            if (off < data.length) this.dead = true; // more than the response: out of step
            return this.finish(x, piece);
          }
          if (n > 0) this.write(x, piece);
          return;
        }
        case Phase.UntilClose:
          if (off < data.length) this.write(x, off === 0 ? data : data.subarray(off));
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
          this.write(x, data.subarray(off, off + n));
          off += n;
          this.left -= n;
          if (this.left === 0) this.phase = Phase.ChunkDataEnd;
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
          if (line.text === '') {
            if (off < data.length) this.dead = true;
            return this.finish(x, null);
          }
          break;
        }
        default:
          return;
      }
    }
  }

  /**
   * The next CRLF-terminated line from `data` at `off`, joined with any partial line held back;
   * null when parsing stops here: the line is not complete yet (kept for the next read), or it is
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

  /** Parses a response head; false when the exchange ended (error) or is waiting for more. */
  private onHead(x: UpstreamRequest, text: string, trailing: boolean): boolean {
    // Scanned by hand rather than split and matched line by line: this runs once per response.
    let eol = text.indexOf('\r\n');
    if (eol === -1) eol = text.length;
    if (!STATUS_LINE.test(eol === text.length ? text : text.slice(0, eol))) {
      this.refuse('upstream sent a malformed status line');
      return false;
    }
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
      if (!TOKEN.test(name) || BAD_VALUE.test(value)) {
        // No name, a space before the colon, obs-fold, a bare LF or NUL: not a response we can
        // frame (or pass on) safely.
        this.refuse('upstream sent a malformed header line');
        return false;
      }
      const key = name.toLowerCase();
      if (key === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== value)) {
          this.refuse('upstream sent an invalid Content-Length');
          return false;
        }
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
      if (statusCode === 101) {
        this.refuse('upstream switched protocols on a plain request');
        return false;
      }
      return true; // 100, 102, 103: informational, not passed on; the real head follows
    }
    if (http10 ? !/(^|,)\s*keep-alive\s*(,|$)/.test(connection) : connection !== '' && /(^|,)\s*close\s*(,|$)/.test(connection)) {
      this.keepAlive = false;
    }
    const hint = headers['keep-alive'] === undefined ? null : /timeout=(\d+)/.exec(String(headers['keep-alive']));
    if (hint) this.keepAliveMs = Math.min(this.origin.client.keepAliveMs, Math.max(0, Number(hint[1]) * 1000 - 1000));
    const noBody = this.method === 'HEAD' || statusCode === 204 || statusCode === 304;
    if ((statusCode === 204 || statusCode === 304) && (transferEncoding !== undefined || (length !== undefined && length !== '0'))) {
      this.dead = true; // a body may follow that nobody reads: never reuse this connection
    }
    if (!noBody && transferEncoding !== undefined) {
      if (length !== undefined) {
        // Both framings at once is how responses get split; refuse rather than guess.
        this.refuse('upstream sent both Transfer-Encoding and Content-Length');
        return false;
      }
      if (transferEncoding.trim().toLowerCase() !== 'chunked') {
        // "gzip, chunked" and the like: the proxy asks for none, and a coding it does not undo
        // would pass an echoed secret through the scrubber unseen.
        this.refuse(`upstream sent Transfer-Encoding: ${transferEncoding}`);
        return false;
      }
      this.phase = Phase.ChunkSize;
    } else if (noBody) {
      this.phase = Phase.Idle;
    } else if (length !== undefined) {
      this.left = Number(length);
      this.phase = this.left === 0 ? Phase.Idle : Phase.Fixed;
    } else {
      this.phase = Phase.UntilClose;
    }
    if (this.phase === Phase.UntilClose) this.keepAlive = false;
    let sink: BodySink;
    try {
      sink = x.factory({ statusCode, headers });
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    x.sink = sink;
    if (sink.discard) {
      // Not wanted (the proxy answered the client itself): do not read what may be endless.
      this.x = null;
      x.conn = null;
      this.dead = true;
      this.socket.destroy();
      x.succeed();
      return false;
    }
    sink.on('error', (err) => {
      if (this.x === x) this.fail(err);
    });
    if (this.phase === Phase.Idle) {
      if (trailing) this.dead = true; // bytes after a bodiless response: out of step
      this.finish(x, null);
      return false;
    }
    return true;
  }

  /**
   * Holds a sink's writes until the event loop has delivered everything that arrived together:
   * TLS hands over one 16 KiB record per 'data' event, and writing each on its own would cost a
   * TLS record and a syscall apiece. A body that ends (end()) flushes at once.
   */
  private corkUntilImmediate(sink: Pick<BodySink, 'cork' | 'uncork'>): void {
    if (this.corked === sink) return;
    this.uncorkNow();
    sink.cork();
    this.corked = sink;
    setImmediate(this.uncorkNow);
  }

  private corked: Pick<BodySink, 'cork' | 'uncork'> | null = null;
  private readonly uncorkNow = (): void => {
    const sink = this.corked;
    this.corked = null;
    sink?.uncork();
  };

  /** A piece of a body that goes on (the last piece goes with end()). */
  private write(x: UpstreamRequest, piece: Buffer): void {
    const sink = x.sink!;
    this.corkUntilImmediate(sink);
    let more: boolean;
    try {
      more = sink.write(piece);
    } catch (err) {
      // A sink that throws (Node refusing a header only when it is finally written, say) fails
      // this exchange; it must never escape into the socket's event handler.
      return this.fail(err as Error);
    }
    if (!more && !this.draining && (sink.writableLength ?? Infinity) > RESPONSE_BUFFER_LIMIT) {
      this.draining = true;
      this.socket.pause();
      sink.once('drain', () => {
        this.draining = false;
        if (this.x === x) this.socket.resume();
      });
    }
  }

  private finish(x: UpstreamRequest, last: Buffer | null): void {
    const sink = x.sink!;
    this.x = null;
    this.phase = Phase.Idle;
    this.pending = null;
    x.conn = null;
    try {
      if (last && last.length > 0) sink.end(last);
      else sink.end();
    } catch (err) {
      this.dead = true;
      this.socket.destroy();
      x.fail(err as Error);
      return;
    }
    x.succeed();
    if (this.draining) {
      this.draining = false;
      this.socket.resume();
    }
    // A request body still going when the answer ended: the connection is out of step.
    if (!this.requestBodyDone) {
      this.dead = true;
      this.stopBody?.();
    }
    if (this.usable()) this.release();
    else this.socket.destroy();
  }

  /** A response that cannot be framed (or passed on) safely: refused, never guessed at. */
  private refuse(message: string): void {
    this.fail(new Http1Error(message, 'UPSTREAM_BAD_RESPONSE'));
  }

  private fail(err: Error): void {
    const x = this.x;
    this.x = null;
    this.dead = true;
    this.stopBody?.();
    this.socket.destroy();
    if (x) {
      x.conn = null;
      x.fail(err);
    }
  }

  private onEnd(): void {
    const x = this.x;
    this.dead = true; // the server is done with this connection
    if (x && this.phase === Phase.UntilClose) {
      this.keepAlive = false;
      this.finish(x, null);
    }
  }

  private onTimeout(): void {
    if (!this.x) {
      this.socket.destroy(); // idle past keep-alive
      return;
    }
    if (!this.x.written) {
      // The head waits for the client's body, which never came: the client stalled, not the upstream.
      this.fail(new Http1Error('the client sent no request body in time', 'CLIENT_BODY_TIMEOUT'));
      return;
    }
    const code = this.phase === Phase.Head ? 'UPSTREAM_HEADERS_TIMEOUT' : 'UPSTREAM_BODY_TIMEOUT';
    this.fail(new Http1Error(`upstream ${code === 'UPSTREAM_HEADERS_TIMEOUT' ? 'sent no response head' : 'stalled mid-body'} in time`, code));
  }

  private onClose(err: Error | null): void {
    if (this.gone) return; // 'error' is followed by 'close'
    this.gone = true;
    this.dead = true;
    const x = this.x;
    this.x = null;
    // Sent again elsewhere, once, when that is safe: nothing written at all (the head was waiting
    // for the body), or a kept-alive connection the server closed as it was reused, for an
    // idempotent request without a body that got no answer. A request the server may have acted
    // on is never sent twice.
    const retry =
      x !== null &&
      !x.settled &&
      !x.answered &&
      !x.retried &&
      (!x.written || (this.reused && !x.call.body && IDEMPOTENT.has(x.call.method)));
    this.stopBody?.(!retry);
    this.socket.destroy();
    this.origin.closed(this);
    if (!x || x.settled) return;
    x.conn = null;
    if (retry) {
      x.retried = true;
      this.origin.client.route(x);
      return;
    }
    const code = (err as NodeJS.ErrnoException | null)?.code ?? 'UPSTREAM_CLOSED';
    x.fail(err ? new Http1Error(`upstream connection failed (${code})`, code) : new Http1Error('upstream closed the connection before the response ended', code));
  }
}

function requestHead(call: UpstreamCall): { head: string; chunked: boolean } {
  if (BAD_PATH.test(call.path) || !TOKEN.test(call.method)) throw new Http1Error('request line not sendable', 'INVALID_REQUEST');
  let head = `${call.method} ${call.path} HTTP/1.1\r\n`;
  let host = false;
  let length = false;
  const h = call.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    if (!TOKEN.test(name) || BAD_VALUE.test(value)) throw new Http1Error(`header ${JSON.stringify(name)} not sendable`, 'INVALID_HEADER');
    if (name.length === 4 && name.toLowerCase() === 'host') host = true;
    else if (name.length === 14 && name.toLowerCase() === 'content-length') length = true;
    head += `${name}: ${value}\r\n`;
  }
  if (!host) head += `host: ${hostHeader(call)}\r\n`;
  const chunked = call.body !== null && !length;
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  return { head: head + '\r\n', chunked };
}

function hostHeader(call: UpstreamCall): string {
  const host = call.host.includes(':') ? `[${call.host}]` : call.host;
  return call.port === (call.secure ? 443 : 80) ? host : `${host}:${call.port}`;
}

/** Hex chunk size with optional extensions; -1 when malformed. */
function parseChunkSize(text: string): number {
  const semi = text.indexOf(';');
  const digits = (semi === -1 ? text : text.slice(0, semi)).trim();
  if (!/^[0-9a-fA-F]{1,12}$/.test(digits)) return -1;
  return parseInt(digits, 16);
}

export class Http1Client {
  readonly maxPerOrigin: number;
  readonly stallTimeoutMs: number;
  readonly keepAliveMs: number;
  readonly dial: Dial;
  private readonly origins = new Map<string, Origin>();
  private closing = false;

  get closed(): boolean {
    return this.closing;
  }

  /** Origins with connections or waiting requests (tests check nothing is kept for no reason). */
  get openOrigins(): number {
    return this.origins.size;
  }

  private sweeper: NodeJS.Timeout | null = null;

  /** Closes idle connections past their keep-alive, every few seconds while any are pooled. */
  sweepSoon(): void {
    if (this.sweeper || this.closing) return;
    this.sweeper = setTimeout(() => {
      this.sweeper = null;
      const now = Date.now();
      let pooled = 0;
      for (const origin of this.origins.values()) {
        for (const conn of [...origin.idle]) if (conn.idleUntil <= now) conn.destroy();
        pooled += origin.idle.length;
      }
      if (pooled > 0) this.sweepSoon();
    }, 2000);
    this.sweeper.unref();
  }

  forget(origin: Origin): void {
    if (this.origins.get(origin.key) === origin) this.origins.delete(origin.key);
  }

  constructor(options: Http1Options) {
    this.dial = options.dial;
    this.maxPerOrigin = options.maxPerOrigin ?? 256;
    this.stallTimeoutMs = options.stallTimeoutMs ?? 300_000;
    this.keepAliveMs = options.keepAliveMs ?? 30_000;
  }

  /** Sends a request; the factory gets the response head and returns where the body goes. */
  request(call: UpstreamCall, factory: SinkFactory): UpstreamRequest {
    const x = new UpstreamRequest(call, factory);
    this.route(x);
    return x;
  }

  /** Hands a request to its origin's pool (again, when retried). */
  route(x: UpstreamRequest): void {
    const { call } = x;
    const key = `${call.secure ? 's' : 'p'}${call.host}:${call.port}`;
    let origin = this.origins.get(key);
    if (!origin) {
      origin = new Origin(this, key, call.secure, call.host, call.port);
      this.origins.set(key, origin);
    }
    x.origin = origin;
    if (this.closing) x.fail(new Http1Error('proxy is shutting down', 'CLOSED'));
    else origin.dispatch(x);
  }

  /** Closes idle connections and refuses new requests (those in flight finish or fail). */
  close(): void {
    this.closing = true;
    if (this.sweeper) clearTimeout(this.sweeper);
    for (const origin of this.origins.values()) {
      for (const conn of origin.idle.splice(0)) conn.destroy();
      for (const x of origin.waiting.splice(0)) x.fail(new Http1Error('proxy is shutting down', 'CLOSED'));
    }
  }
}
