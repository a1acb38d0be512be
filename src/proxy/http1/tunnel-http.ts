// HTTP/1.1 on the decrypted side of an inspected tunnel, without Node's http server for the
// requests parseRequestHead() accepts: one request at a time, in order, kept alive. Anything else
// (a head it does not accept, an upgrade, 100-continue, chunked uploads) hands the connection,
// with its unread bytes, to Node's server for good, which serves or refuses it as before.
import { Readable } from 'node:stream';
import type tls from 'node:tls';
import { TunnelResponse } from './tunnel-response.js';
import { parseRequestHead } from './request-head.js';
import type { HeadFields, ParsedHead } from './request-head.js';

export interface TunnelHttpLimits {
  readonly headersTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxHeaderBytes: number;
}

export interface TunnelHttpHandlers {
  /** A request to answer through `res`; `body` is set when it has one. */
  request(req: TunnelRequest, res: TunnelResponse, body: Readable | null): void;
  /** Node's server takes the connection over (its unread bytes are back in the socket). */
  handOff(socket: tls.TLSSocket): void;
  /**
   * A head that cannot be served: not complete within headersTimeoutMs (ERR_HTTP_REQUEST_TIMEOUT)
   * or cut off by the client (HPE_INVALID_EOF_STATE); to be answered and audited as Node's
   * server would report it.
   */
  clientError(socket: tls.TLSSocket, code: string): void;
}

const CRLF2 = Buffer.from('\r\n\r\n');
/** Pipelined bytes held while a response is under way before reading stops. */
const PIPELINE_LIMIT = 64 * 1024;

/** The head of a request on the fast path, shaped as forwarding reads Node's IncomingMessage. */
export class TunnelRequest {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly headers: HeadFields;
  constructor(
    head: ParsedHead,
    readonly socket: tls.TLSSocket,
  ) {
    this.method = head.method;
    this.url = head.url;
    this.rawHeaders = head.rawHeaders;
    this.headers = head.headers;
  }
}

/**
 * Received bytes not yet parsed. Appending is amortised linear and the search for a head's end
 * resumes where it stopped, so a head sent a byte at a time costs no more than one sent whole.
 */
class Pending {
  private buf: Buffer | null = null;
  /** Whether `buf` is a buffer of ours with spare room (not a chunk as received). */
  private owned = false;
  length = 0;
  private scanned = 0;

  append(chunk: Buffer): void {
    if (this.length === 0) {
      this.buf = chunk;
      this.owned = false;
      this.length = chunk.length;
      return;
    }
    const need = this.length + chunk.length;
    if (!this.owned || need > this.buf!.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.length * 2, 1024));
      this.buf!.copy(grown, 0, 0, this.length);
      this.buf = grown;
      this.owned = true;
    }
    chunk.copy(this.buf!, this.length);
    this.length = need;
  }

  bytes(): Buffer {
    return this.buf ? this.buf.subarray(0, this.length) : EMPTY;
  }

  /** Index of the CRLFCRLF ending the head, or -1 while it has not arrived. */
  headEnd(): number {
    const end = this.bytes().indexOf(CRLF2, Math.max(0, this.scanned - 3));
    if (end === -1) this.scanned = this.length;
    return end;
  }

  clear(): void {
    this.buf = null;
    this.owned = false;
    this.length = 0;
    this.scanned = 0;
  }
}

const EMPTY = Buffer.alloc(0);

/** A request body of known length, fed from the connection. */
class RequestBody extends Readable {
  constructor(private readonly socket: tls.TLSSocket) {
    super();
  }
  override _read(): void {
    this.socket.resume();
  }
}

/** Serves one decrypted tunnel connection until it closes or is handed off. */
export function serveTunnelHttp(socket: tls.TLSSocket, limits: TunnelHttpLimits, handlers: TunnelHttpHandlers): void {
  new TunnelConnection(socket, limits, handlers);
}

class TunnelConnection {
  /** Received bytes not yet parsed (the next request, or a part of it). */
  private readonly pending = new Pending();
  private res: TunnelResponse | null = null;
  /** A response is out but the socket has too much waiting: the next request waits for 'drain'. */
  private draining = false;
  private body: RequestBody | null = null;
  private bodyLeft = 0;
  private headTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** When the connection last went idle between requests (performance.now()), or -1 while busy. */
  private idleSince = -1;
  /** The client half-closed, or asked for close: no further request is read. */
  private closing = false;

  constructor(
    private readonly socket: tls.TLSSocket,
    private readonly limits: TunnelHttpLimits,
    private readonly handlers: TunnelHttpHandlers,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    // The first head's deadline runs from the connection's start, as in Node's server.
    this.startHeadTimer();
    this.next();
  }

  private startHeadTimer(): void {
    this.headTimer ??= setTimeout(() => {
      this.closing = true;
      this.socket.removeListener('data', this.onData);
      this.handlers.clientError(this.socket, 'ERR_HTTP_REQUEST_TIMEOUT');
    }, this.limits.headersTimeoutMs);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.closing && !this.res) return; // answered and closing: what still comes is dropped
    if (this.bodyLeft > 0) {
      const take = Math.min(this.bodyLeft, chunk.length);
      this.feedBody(take === chunk.length ? chunk : chunk.subarray(0, take));
      if (take === chunk.length) return;
      chunk = chunk.subarray(take);
    }
    this.pending.append(chunk);
    if (this.res || this.draining) {
      // A pipelined request waits for the response before it; past a limit, reading stops.
      if (this.pending.length > PIPELINE_LIMIT) this.socket.pause();
      return;
    }
    this.next();
  };

  private feedBody(piece: Buffer): void {
    const body = this.body!;
    this.bodyLeft -= piece.length;
    const more = body.push(piece);
    if (this.bodyLeft === 0) {
      body.push(null);
      this.body = null;
    } else if (!more) {
      this.socket.pause();
    }
  }

  private readonly onEnd = (): void => {
    // The client hung up (as Node's server sees it: no half-open HTTP). A request under way is
    // aborted, so its upstream exchange is dropped, and the connection ends; a head cut off
    // half-way is answered and audited as Node's parser reports it.
    const tornHead = !this.res && this.bodyLeft === 0 && this.pending.length > 0 && !this.closing;
    this.closing = true;
    this.clearTimers();
    this.abortBody();
    const res = this.res;
    this.res = null;
    res?.connectionClosed();
    if (tornHead) {
      this.socket.removeListener('data', this.onData);
      this.handlers.clientError(this.socket, 'HPE_INVALID_EOF_STATE');
    } else {
      this.socket.end();
    }
  };

  private readonly onClose = (): void => {
    this.clearTimers();
    this.abortBody();
    const res = this.res;
    this.res = null;
    res?.connectionClosed();
  };

  private abortBody(): void {
    if (!this.body) return;
    const body = this.body;
    this.body = null;
    this.bodyLeft = 0;
    body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
  }

  /** Closes the connection once it has been idle for keepAliveTimeoutMs (checked in `ms`). */
  private idleCheck(ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      this.idleTimer = null;
      if (this.idleSince < 0) return;
      const left = this.idleSince + this.limits.keepAliveTimeoutMs - performance.now();
      if (left <= 0) this.socket.destroy();
      else this.idleTimer = this.idleCheck(left);
    }, ms);
  }

  private clearTimers(): void {
    if (this.headTimer) clearTimeout(this.headTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.headTimer = this.idleTimer = null;
  }

  /** Reads the next request, if one has arrived whole; otherwise waits for it with a deadline. */
  private next(): void {
    if (this.closing || this.socket.destroyed) return;
    const pending = this.pending;
    if (pending.length === 0) {
      // Between requests: kept alive for keepAliveTimeoutMs (before the first: its head timer).
      if (!this.headTimer) {
        this.idleSince = performance.now();
        this.idleTimer ??= this.idleCheck(this.limits.keepAliveTimeoutMs);
      }
      return;
    }
    // Busy again: the idle timer stays armed and finds nothing to do when it fires (one timer per
    // keep-alive period, not one set and cleared per request).
    this.idleSince = -1;
    const end = pending.headEnd();
    if (end === -1) {
      if (pending.length > this.limits.maxHeaderBytes) return this.handOff();
      // Started, not finished: a head gets headersTimeoutMs from its first byte (slowloris).
      this.startHeadTimer();
      return;
    }
    const bytes = pending.bytes();
    const head = end + 4 <= this.limits.maxHeaderBytes ? parseRequestHead(bytes, end) : null;
    if (!head) return this.handOff();
    if (this.headTimer) clearTimeout(this.headTimer);
    this.headTimer = null;
    const rest = bytes.subarray(head.headBytes);
    pending.clear();
    let body: RequestBody | null = null;
    if (head.contentLength > 0) {
      body = this.body = new RequestBody(this.socket);
      this.bodyLeft = head.contentLength;
    }
    if (head.close) this.closing = true;
    const res = (this.res = new TunnelResponse(this.socket, head.method === 'HEAD', () => this.done(res)));
    if (head.close) res.shouldKeepAlive = false;
    if (rest.length > 0) {
      if (this.bodyLeft > 0) this.onData(rest);
      else pending.append(rest);
    }
    this.handlers.request(new TunnelRequest(head, this.socket), res, body);
  }

  /** A response was sent whole: serve the next request, or close. */
  private done(res: TunnelResponse): void {
    if (this.res !== res) return;
    this.res = null;
    if (!res.shouldKeepAlive || this.bodyLeft > 0 || this.closing) {
      // Refused, asked to close, or a body left unread (it cannot be told from the next request
      // without reading it): end the connection once the answer is out.
      this.closing = true;
      this.abortBody();
      this.clearTimers();
      this.socket.end();
      this.socket.once('finish', () => this.socket.destroy());
      return;
    }
    // Like Node's server: no further request is read while the answers wait to be sent (a
    // client pipelining requests it never reads the answers to would otherwise fill memory).
    if (this.socket.writableNeedDrain) {
      this.draining = true;
      this.socket.once('drain', () => {
        this.draining = false;
        this.resumeReading();
      });
      return;
    }
    this.resumeReading();
  }

  private resumeReading(): void {
    if (this.socket.destroyed) return;
    if (this.socket.isPaused()) this.socket.resume();
    this.next();
  }

  /** Gives the connection to Node's server: detach, and put the unread bytes back. */
  private handOff(): void {
    this.clearTimers();
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('end', this.onEnd);
    this.socket.removeListener('close', this.onClose);
    if (this.pending.length > 0) this.socket.unshift(this.pending.bytes());
    this.pending.clear();
    this.handlers.handOff(this.socket);
  }
}
