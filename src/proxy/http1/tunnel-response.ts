// The response to a request on the tunnel's fast path (tunnel-http.ts), written straight to the
// decrypted socket: the slice of Node's ServerResponse that forwarding uses, without its
// per-response machinery.
import { STATUS_CODES } from 'node:http';
import type tls from 'node:tls';
import { BAD_VALUE, TOKEN } from './http-syntax.js';

type HeaderValue = string | string[] | number;

/** Bodies up to this size leave in one buffer with their head (see end()). */
const JOIN_LIMIT = 16 * 1024;

/**
 * The response to a fast-path request: the slice of Node's ServerResponse that forwarding uses,
 * writing straight to the socket. Framing: Content-Length when given, else chunked (no body at
 * all for HEAD, 1xx, 204 and 304).
 */
export class TunnelResponse {
  statusCode = 200;
  headersSent = false;
  writableFinished = false;
  destroyed = false;
  /** False: the connection closes after this response (Connection: close is sent). */
  shouldKeepAlive = true;
  private chunked = false;
  private bodyless: boolean;
  /** The head, held until the first body bytes (or the end) so that both go in one write. */
  private head: string | null = null;
  private ended = false;
  private closeListeners: (() => void)[] = [];

  constructor(
    private readonly socket: tls.TLSSocket,
    isHead: boolean,
    private readonly onDone: () => void,
  ) {
    this.bodyless = isHead;
  }

  get writableLength(): number {
    return this.socket.writableLength;
  }

  writeHead(status: number, headers: Record<string, HeaderValue | undefined>): this {
    if (this.headersSent) throw new Error('response head already sent');
    if (this.destroyed) return this;
    // Built and checked whole before anything is committed: a bad header throws and leaves the
    // response as it was, so an error answer can still be sent on it.
    const bodyless = this.bodyless || status < 200 || status === 204 || status === 304;
    let chunked = false;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    let hasLength = false;
    let hasDate = false;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (!TOKEN.test(name)) throw new Error(`invalid response header name ${JSON.stringify(name)}`);
      const lower = name.toLowerCase();
      if (lower === 'content-length') hasLength = true;
      else if (lower === 'date') hasDate = true;
      else if (lower === 'connection' || lower === 'transfer-encoding' || lower === 'keep-alive') continue; // framing is ours
      if (Array.isArray(value)) for (const v of value) head += line(name, v);
      else head += line(name, value);
    }
    if (!hasDate) head += `Date: ${httpDate()}\r\n`;
    if (!hasLength && !bodyless) {
      chunked = true;
      head += 'Transfer-Encoding: chunked\r\n';
    }
    head += this.shouldKeepAlive ? 'Connection: keep-alive\r\n\r\n' : 'Connection: close\r\n\r\n';
    this.statusCode = status;
    this.bodyless = bodyless;
    this.chunked = chunked;
    this.headersSent = true;
    this.head = head;
    return this;
  }

  write(chunk: Buffer): boolean {
    if (this.destroyed) return true; // the client left: nothing goes out
    if (!this.headersSent) this.writeHead(this.statusCode, {});
    if (this.bodyless || chunk.length === 0) return true;
    // Corked: the head, the chunk framing and the bytes leave in one TLS record and syscall.
    this.socket.cork();
    this.flushHead();
    let more: boolean;
    if (this.chunked) {
      this.socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      this.socket.write(chunk);
      more = this.socket.write('\r\n', 'latin1');
    } else {
      more = this.socket.write(chunk);
    }
    this.socket.uncork();
    return more;
  }

  private flushHead(): void {
    if (this.head === null) return;
    this.socket.write(this.head, 'latin1');
    this.head = null;
  }

  end(chunk?: Buffer | string): this {
    if (this.ended || this.destroyed) return this;
    if (!this.headersSent) {
      const length = chunk === undefined ? 0 : Buffer.byteLength(chunk);
      this.writeHead(this.statusCode, { 'Content-Length': length });
    }
    this.ended = true;
    const piece = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const body = piece && piece.length > 0 && !this.bodyless ? piece : null;
    // Finished when the last bytes are handed to the socket (Node's 'finish' does the same); a
    // write that fails means the client left, which 'close' reports instead.
    const written = (err?: Error | null) => {
      if (!err) this.finished();
    };
    this.socket.cork();
    if (this.chunked) {
      if (body) this.write(body);
      this.flushHead();
      this.socket.write('0\r\n\r\n', 'latin1', written);
    } else if (body && this.head !== null && body.length <= JOIN_LIMIT) {
      // A small answer whole: head and body copied into one buffer and written once, which
      // costs less than two corked writes (Node's writev path).
      const headLength = Buffer.byteLength(this.head, 'latin1');
      const whole = Buffer.allocUnsafe(headLength + body.length);
      whole.write(this.head, 0, 'latin1');
      body.copy(whole, headLength);
      this.head = null;
      this.socket.write(whole, written);
    } else if (body) {
      this.flushHead();
      this.socket.write(body, written);
    } else if (this.head !== null) {
      this.socket.write(this.head, 'latin1', written);
      this.head = null;
    } else {
      // Everything went out with earlier writes.
      process.nextTick(written);
    }
    this.socket.uncork();
    return this;
  }

  private finished(): void {
    if (this.writableFinished || this.destroyed) return;
    this.writableFinished = true;
    this.emitClose();
    this.onDone();
  }

  /** The connection closed under this response (or after it). */
  connectionClosed(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emitClose();
  }

  destroy(): this {
    this.socket.destroy();
    return this;
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  on(event: 'close' | 'error', listener: (...args: never[]) => void): this {
    if (event === 'close') this.closeListeners.push(listener as () => void);
    // 'error': a failing socket closes, which 'close' reports.
    return this;
  }

  once(event: 'close' | 'drain', listener: () => void): this {
    if (event === 'drain') this.socket.once('drain', listener);
    else this.closeListeners.push(listener);
    return this;
  }

  private emitClose(): void {
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const listener of listeners) listener();
  }
}

function line(name: string, value: string | number): string {
  const text = typeof value === 'number' ? String(value) : value;
  if (BAD_VALUE.test(text)) throw new Error(`invalid value for response header ${JSON.stringify(name)}`);
  return `${name}: ${text}\r\n`;
}

let dateSecond = 0;
let dateText = '';
/** The Date header value, formatted once per second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}
