// The proxy's upstream HTTP/1.1 client: keep-alive connections pooled per origin, one request at a
// time per connection, bodies streamed both ways with backpressure. It exists because a general
// client's per-request machinery (request objects, abort signals, async resources) cost more CPU
// than the whole relay of a small request (bench/README.md has the measurements); this one does
// only what a forwarding proxy needs: write one head, parse one response, frame bodies strictly.
// This file is the pool; a connection and its request are in upstream-connection.ts, the bytes on
// the wire in request-framer.ts and response-parser.ts.
import type net from 'node:net';
import { Http1Error } from './errors.js';
import { Connection, FlowBudget, UpstreamRequest } from './upstream-connection.js';
import type { ConnectionPool } from './upstream-connection.js';
import type { SinkFactory, UpstreamCall } from './types.js';

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
  /**
   * Bytes all connections together may hold past their base flow limits (upstream-connection.ts,
   * FlowBudget); default 64 MiB.
   */
  readonly flowBudgetBytes?: number;
}

/** The pool of connections to one origin. */
class Origin implements ConnectionPool {
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

  get keepAliveMs(): number {
    return this.client.keepAliveMs;
  }

  get stallTimeoutMs(): number {
    return this.client.stallTimeoutMs;
  }

  get budget(): FlowBudget {
    return this.client.budget;
  }

  retry(x: UpstreamRequest): void {
    this.client.route(x);
  }

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

export class Http1Client {
  readonly maxPerOrigin: number;
  readonly stallTimeoutMs: number;
  readonly keepAliveMs: number;
  readonly dial: Dial;
  readonly budget: FlowBudget;
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
    this.budget = new FlowBudget(options.flowBudgetBytes ?? 64 * 1024 * 1024);
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
    x.pool = origin;
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
