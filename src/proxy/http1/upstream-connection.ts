// One keep-alive upstream connection and the request on it: writes the head and streams the body
// with backpressure, feeds what it reads to the response parser, and passes the body to the
// request's sink. When a failed request may be sent again, and when a connection may be reused,
// is decided here; the pool (http1-client.ts) only hands out connections.
import type net from 'node:net';
import type { Readable } from 'node:stream';
import { Http1Error } from './errors.js';
import { chunkPrefix, CRLF, LAST_CHUNK, requestHead } from './request-framer.js';
import { ResponseParser } from './response-parser.js';
import type { ParsedResponseHead } from './response-parser.js';
import type { BodySink, SinkFactory, UpstreamCall } from './types.js';

/**
 * How much of a response body may wait in the client's socket buffer before the upstream is
 * paused. What counts as waiting includes bytes the kernel already took: a TLS socket reports a
 * write done (and drops it from writableLength) only in the next event-loop turn, and this turn's
 * corked writes count too, so the limit is really how much one turn may relay. Pausing at every
 * full TLS record stalled the relay between reads (the 100 MB transfers ran at 0.75 of a core,
 * waiting); at 64 KiB a 1 GiB download cost 10-15% more CPU per MiB than at 256 KiB, and at
 * 256 KiB 3-8% more than at 512 KiB (bench/README.md, "Upload flow").
 */
const RESPONSE_BUFFER_LIMIT = 512 * 1024;
/**
 * The same for a request body waiting in the upstream socket's buffer. At 64 KiB the client was
 * paused and resumed every ~80 KiB (two epoll_ctl calls and an extra turn each: ~24,000 turns for
 * 1 GiB) and the upload cost 15-25% more CPU per MiB than at 256 KiB (~7,800 turns). At 1 MiB a
 * fresh proxy ran 36-38 full collections per GiB uploaded (bench/README.md, "Upload flow").
 */
const REQUEST_BUFFER_LIMIT = 256 * 1024;
/**
 * Past these (the limits before the ones above), a connection relays more only on bytes lent from
 * the client's flow budget (FlowBudget), given back at the writer's next 'drain' or its 'close'.
 * A fast flow borrows for one turn; a reader that stalls keeps its loan, so connections that stop
 * reading hold these amounts each, plus the budget once in all, not the full limits each: a
 * session with a thousand stalled downloads would otherwise make the proxy hold 512 MiB, not 256.
 */
const RESPONSE_BASE_LIMIT = 256 * 1024;
const REQUEST_BASE_LIMIT = 64 * 1024;
/** Methods that may be sent again when a kept-alive connection died before any answer. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/** Bytes connections may hold beyond the base limits, shared by all of a client's connections. */
export class FlowBudget {
  constructor(public left: number) {}

  /** Lends `bytes` until `lease.end()`; null when the budget cannot (the caller pauses at its base limit). */
  lend(bytes: number): Lease | null {
    if (this.left < bytes) return null;
    this.left -= bytes;
    return new Lease(this, bytes);
  }
}

/** Bytes lent by a FlowBudget; given back once. */
export class Lease {
  private open = true;
  constructor(
    private readonly budget: FlowBudget,
    private readonly bytes: number,
  ) {}

  get active(): boolean {
    return this.open;
  }

  end(): void {
    if (!this.open) return;
    this.open = false;
    this.budget.left += this.bytes;
  }
}

/** A writer's current loan (null between them). */
interface Loan {
  lease: Lease | null;
}

/** What a connection needs of the pool it belongs to (one origin's). */
export interface ConnectionPool {
  /** Shared by the client's connections for relaying past the base limits. */
  readonly budget: FlowBudget;
  /** Idle keep-alive time, at most. */
  readonly keepAliveMs: number;
  /** Inactivity allowed before or within a response. */
  readonly stallTimeoutMs: number;
  /** The connection came free: give it the next request, pool it or close it. */
  next(conn: Connection): void;
  /** The connection closed. */
  closed(conn: Connection): void;
  /** Sends a request again (once), on another connection. */
  retry(x: UpstreamRequest): void;
}

/** One request in flight: its promise, its sink, and whether it may still be retried. */
export class UpstreamRequest {
  /** Made only when asked for (done): a proxied request is told of a failure through call.onFail. */
  private promise: Promise<void> | null = null;
  private resolveDone: (() => void) | null = null;
  private rejectDone: ((err: Error) => void) | null = null;
  private failure: Error | null = null;
  sink: BodySink | null = null;
  conn: Connection | null = null;
  settled = false;
  /** Response bytes seen: after the first, a failure is not retried. */
  answered = false;
  /** The head went out: from then on only an idempotent, bodiless request may go again. */
  written = false;
  retried = false;

  /** The pool it waits in, if it waits. */
  pool: { unqueue(x: UpstreamRequest): void } | null = null;

  constructor(
    readonly call: UpstreamCall,
    readonly factory: SinkFactory,
  ) {}

  /** Settles once the response was passed on whole, or rejects with why the request failed. */
  get done(): Promise<void> {
    if (this.promise) return this.promise;
    if (this.settled) this.promise = this.failure ? Promise.reject(this.failure) : Promise.resolve();
    else
      this.promise = new Promise<void>((resolve, reject) => {
        this.resolveDone = resolve;
        this.rejectDone = reject;
      });
    return this.promise;
  }

  /** The client left: drop the exchange (a connection mid-response cannot be reused). */
  abort(): void {
    if (this.settled) return;
    const conn = this.conn;
    this.pool?.unqueue(this);
    this.fail(new Http1Error('aborted by the client', 'ABORTED'));
    conn?.destroy();
  }

  succeed(): void {
    if (this.settled) return;
    this.settled = true;
    this.resolveDone?.();
  }

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.failure = err;
    this.rejectDone?.(err);
    // Told in a microtask, as a rejection's handler would be: never from inside the caller's own
    // handlers (the client's 'close' that aborted this request, say).
    const onFail = this.call.onFail;
    if (onFail) queueMicrotask(() => onFail(err));
  }
}

/** One keep-alive connection and the response parser for its current request. */
export class Connection {
  private x: UpstreamRequest | null = null;
  private readonly parser: ResponseParser;
  private keepAlive = true;
  private requestBodyDone = true;
  private draining = false;
  private dead = false;
  private reused = false;
  private stopBody: ((drain?: boolean) => void) | null = null;
  private gone = false;
  /**
   * Loans from the flow budget while a writer has more than its base limit waiting: the current
   * response's sink, and this connection's socket for request bodies.
   */
  private responseLoan: Loan | null = null;
  private requestLoan: Loan | null = null;
  keepAliveMs: number;
  idleUntil = 0;

  constructor(
    readonly socket: net.Socket,
    readonly origin: ConnectionPool,
  ) {
    this.keepAliveMs = origin.keepAliveMs;
    this.parser = new ResponseParser({
      head: (head) => this.onHead(this.x!, head),
      body: (piece) => this.write(this.x!, piece),
      end: (last, extra) => {
        if (extra) this.dead = true; // bytes past the response: out of step
        this.finish(this.x!, last);
      },
      error: (message) => this.fail(new Http1Error(message, 'UPSTREAM_BAD_RESPONSE')),
    });
    // One inactivity timeout for the connection's whole life: set once, not per request.
    socket.setTimeout(origin.stallTimeoutMs);
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
    this.parser.start(call.method);
    let head: string;
    let chunked = false;
    try {
      ({ head, chunked } = requestHead(call));
    } catch (err) {
      this.x = null;
      this.parser.stop();
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
        socket.write(chunkPrefix(chunk.length), 'latin1');
        socket.write(chunk);
        more = socket.write(CRLF);
      } else {
        more = socket.write(chunk);
      }
      // 'drain' follows a false write once the buffer empties, so the resume below comes.
      if (!more && this.overLimit(socket.writableLength, REQUEST_BASE_LIMIT, REQUEST_BUFFER_LIMIT, socket, false)) body.pause();
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
    this.parser.feed(data);
  }

  /** A final response head: its sink, and what it says about this connection. */
  private onHead(x: UpstreamRequest, head: ParsedResponseHead): void {
    if (!head.keepAlive) this.keepAlive = false;
    if (head.keepAliveSeconds !== null) this.keepAliveMs = Math.min(this.origin.keepAliveMs, Math.max(0, head.keepAliveSeconds * 1000 - 1000));
    if (head.strayBody) this.dead = true; // a body may follow that nobody reads: never reuse this connection
    let sink: BodySink;
    try {
      sink = x.factory(head);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    x.sink = sink;
    if (sink.discard) {
      // Not wanted (the proxy answered the client itself): do not read what may be endless.
      this.parser.stop();
      this.x = null;
      x.conn = null;
      this.dead = true;
      this.socket.destroy();
      x.succeed();
      return;
    }
    sink.on('error', (err) => {
      if (this.x === x) this.fail(err);
    });
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
    if (!more && !this.draining && this.overLimit(sink.writableLength ?? Infinity, RESPONSE_BASE_LIMIT, RESPONSE_BUFFER_LIMIT, sink, true)) {
      this.draining = true;
      this.socket.pause();
      sink.once('drain', () => {
        this.draining = false;
        if (this.x === x) this.socket.resume();
      });
    }
  }

  /**
   * Whether `waiting` bytes are too many: past `limit` always, past `base` unless this direction
   * holds (or now gets) a loan from the flow budget for the bytes in between.
   */
  private overLimit(waiting: number, base: number, limit: number, writer: Pick<BodySink, 'once'>, response: boolean): boolean {
    if (waiting > limit) return true;
    if (waiting <= base) return false;
    let loan = response ? this.responseLoan : this.requestLoan;
    if (loan?.lease?.active) return false;
    const lease = this.origin.budget.lend(limit - base);
    if (!lease) return true;
    if (!loan) {
      // One 'close' listener per writer: a writer that is destroyed never drains. The loan
      // outlives the response (its bytes still wait in the client's socket after the end).
      const made: Loan = (loan = { lease: null });
      writer.once('close', () => made.lease?.end());
      if (response) this.responseLoan = made;
      else this.requestLoan = made;
    }
    loan.lease = lease;
    writer.once('drain', () => lease.end());
    return false;
  }

  private finish(x: UpstreamRequest, last: Buffer | null): void {
    const sink = x.sink!;
    this.x = null;
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
    // The next response has a sink of its own; this one's loan ends when it drains or closes.
    this.responseLoan = null;
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

  private fail(err: Error): void {
    const x = this.x;
    this.x = null;
    this.dead = true;
    this.parser.stop();
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
    if (x) this.parser.eof(); // ends a body read until close
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
    const code = this.parser.awaitingHead ? 'UPSTREAM_HEADERS_TIMEOUT' : 'UPSTREAM_BODY_TIMEOUT';
    this.fail(new Http1Error(`upstream ${code === 'UPSTREAM_HEADERS_TIMEOUT' ? 'sent no response head' : 'stalled mid-body'} in time`, code));
  }

  private onClose(err: Error | null): void {
    if (this.gone) return; // 'error' is followed by 'close'
    this.gone = true;
    this.dead = true;
    const x = this.x;
    this.x = null;
    this.parser.stop();
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
      this.origin.retry(x);
      return;
    }
    const code = (err as NodeJS.ErrnoException | null)?.code ?? 'UPSTREAM_CLOSED';
    x.fail(err ? new Http1Error(`upstream connection failed (${code})`, code) : new Http1Error('upstream closed the connection before the response ended', code));
  }
}

