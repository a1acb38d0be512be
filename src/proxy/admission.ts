// Admission of client connections: how many the proxy holds per listener and in all, and how long
// one may stay without proving which session it belongs to. A hostile session can open idle
// connections far faster than it could use them; without these bounds it takes the file
// descriptors every other session, the upstream side and the admin socket need.
//
// Counted from accept, before any byte is read: an unauthenticated connection costs the same
// descriptor as an authenticated one. On a listener that belongs to one session (a Docker
// session's gateway listener, where only its credential works) every connection is that
// session's, so its policy's max_connections applies there before authentication too.
import type net from 'node:net';
import type pino from 'pino';
import type { ProxySession } from './context.js';

export interface AdmissionLimits {
  /** A connection must send a complete request head with valid proxy credentials within this. */
  readonly authTimeoutMs: number;
  /** Client connections one listener holds at once, authenticated or not. */
  readonly maxListenerConnections: number;
  /**
   * Client connections all listeners hold at once. Kept below the open-file limit (see the
   * daemon), so upstream connections, audit logs and the admin socket still get descriptors.
   */
  readonly maxClientConnections: number;
}

export interface Refusal {
  readonly status: 429 | 503;
  readonly reason: string;
  readonly body: string;
}

/** How often repeated refusals of one kind are summed up in the log (a flood is thousands). */
const LOG_EVERY_MS = 5_000;

export class Admission {
  private total = 0;
  private readonly perListener = new Map<string, number>();
  /** Connections still to authenticate, with the timer that closes them. */
  private readonly awaiting = new Map<net.Socket, NodeJS.Timeout>();
  /** Connections refused at accept: their answer is on its way, nothing they send is served. */
  private readonly refused = new WeakSet<net.Socket>();
  private readonly log: ThrottledLog;

  constructor(
    private readonly limits: AdmissionLimits,
    log: pino.Logger,
  ) {
    this.log = new ThrottledLog(log, LOG_EVERY_MS);
  }

  /** Open client connections: in all, and on one listener. */
  open(listener?: string): number {
    return listener === undefined ? this.total : (this.perListener.get(listener) ?? 0);
  }

  /**
   * Counts a freshly accepted connection and starts its authentication deadline, or returns why
   * it is refused. `owner` is the session the listener belongs to, if only one may use it.
   */
  admit(socket: net.Socket, listener: string, owner: ProxySession | null): Refusal | null {
    const onListener = this.perListener.get(listener) ?? 0;
    const sessionCap = owner?.policy.limits.maxConnections ?? null;
    const listenerCap = Math.min(this.limits.maxListenerConnections, sessionCap ?? Infinity);
    let refusal: Refusal | null = null;
    if (this.total >= this.limits.maxClientConnections) {
      refusal = {
        status: 503,
        reason: 'Service Unavailable',
        body: `Airlock: the proxy holds its maximum of ${this.limits.maxClientConnections} client connections (all sessions together); retry later.\n`,
      };
      this.log.note(`total`, { listener, open: this.total, cap: this.limits.maxClientConnections }, 'refused client connections: the proxy is at its connection cap (raise it with --max-connections, or the open-file limit)');
    } else if (onListener >= listenerCap) {
      const own = owner !== null && sessionCap !== null && sessionCap <= this.limits.maxListenerConnections;
      refusal = {
        status: 429,
        reason: 'Too Many Requests',
        body: own
          ? `Airlock: session ${owner.id} has ${onListener} connections open, its policy's limit (limits.max_connections); close some and retry.\n`
          : `Airlock: this proxy listener has ${onListener} connections open, its limit; close some and retry.\n`,
      };
      this.log.note(
        `listener:${listener}`,
        { listener, session: owner?.id, open: onListener, cap: listenerCap },
        own
          ? "refused client connections: the session is at its policy's max_connections"
          : 'refused client connections: the listener is at its connection cap (--listener-connections)',
      );
    }
    if (refusal) {
      this.refused.add(socket);
      return refusal;
    }
    this.total++;
    this.perListener.set(listener, onListener + 1);
    const timer = setTimeout(() => {
      this.awaiting.delete(socket);
      this.log.note(
        `auth:${listener}`,
        { listener, session: owner?.id, timeout_ms: this.limits.authTimeoutMs },
        'closed connections that sent no authenticated request in time',
      );
      socket.destroy();
    }, this.limits.authTimeoutMs);
    this.awaiting.set(socket, timer);
    socket.once('close', () => {
      this.total--;
      const left = (this.perListener.get(listener) ?? 1) - 1;
      if (left > 0) this.perListener.set(listener, left);
      else this.perListener.delete(listener);
      this.authenticated(socket);
    });
    return null;
  }

  /** The connection proved its session: no more deadline (idle limits take over). */
  authenticated(socket: net.Socket): void {
    const timer = this.awaiting.get(socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.awaiting.delete(socket);
  }

  /** True for a connection refused at accept (the HTTP server may still parse what it sent). */
  isRefused(socket: unknown): boolean {
    return this.refused.has(socket as net.Socket);
  }

  close(): void {
    for (const timer of this.awaiting.values()) clearTimeout(timer);
    this.awaiting.clear();
    this.log.close();
  }
}

/**
 * Says the first event of a kind at once, then at most one line per interval with how many more
 * there were: a flood must show in the log without becoming one.
 */
class ThrottledLog {
  private readonly pending = new Map<string, { more: number; fields: Record<string, unknown>; message: string }>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: pino.Logger,
    private readonly everyMs: number,
  ) {}

  note(key: string, fields: Record<string, unknown>, message: string): void {
    const entry = this.pending.get(key);
    if (entry) {
      entry.more++;
      entry.fields = fields;
      return;
    }
    this.log.warn({ ...fields, count: 1 }, message);
    this.pending.set(key, { more: 0, fields, message });
    this.timer ??= setTimeout(() => this.flush(), this.everyMs).unref();
  }

  private flush(): void {
    this.timer = null;
    for (const [key, entry] of this.pending) {
      if (entry.more === 0) {
        this.pending.delete(key);
        continue;
      }
      this.log.warn({ ...entry.fields, count: entry.more, within_ms: this.everyMs }, entry.message);
      entry.more = 0;
    }
    if (this.pending.size > 0) this.timer = setTimeout(() => this.flush(), this.everyMs).unref();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending.clear();
  }
}
