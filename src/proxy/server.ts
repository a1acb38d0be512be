// The forward proxy's listeners: each connection admitted and each request, CONNECT and upgrade
// authenticated here, then handed to its path (forward.ts, connect.ts, websocket.ts), where it is
// one exchange (exchange.ts) until its audit line. Also the sockets taken over from Node's HTTP
// server, so that a listener or a session can be closed with all it carries.
import http from 'node:http';
import type net from 'node:net';
import type tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { chmodSync, rmSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';
import type pino from 'pino';
import type { ProxySession, SessionDirectory } from './context.js';
import type { Upstream } from './upstream.js';
import { PROXY_AUTH_BODY, rawResponse } from './responses.js';
import { answerRaw } from './exchange.js';
import type { ExchangeDeps } from './exchange.js';
import { bodyOf, forwardHttp } from './forward.js';
import { relayWebSocket } from './websocket.js';
import { answerClientError, openTunnel, refuseInnerConnect } from './connect.js';
import type { TunnelHost } from './connect.js';
import { Admission } from './admission.js';
import type { AdmissionLimits } from './admission.js';
import { serveTunnelHttp } from './http1/tunnel-http.js';
import type { TunnelContext } from './tunnel-context.js';

export interface ProxyLimits extends AdmissionLimits {
  /** Tunnels with no traffic for this long are closed. */
  readonly idleTimeoutMs: number;
  /** Time allowed to receive a request's headers (slowloris). */
  readonly headersTimeoutMs: number;
  /** Idle keep-alive time on client connections. */
  readonly keepAliveTimeoutMs: number;
  readonly maxHeaderBytes: number;
}

export const DEFAULT_LIMITS: ProxyLimits = Object.freeze({
  idleTimeoutMs: 10 * 60_000,
  headersTimeoutMs: 30_000,
  keepAliveTimeoutMs: 60_000,
  maxHeaderBytes: 32 * 1024,
  // A client sends its first request right after connecting; 10 s covers a slow start, not an
  // idle flood.
  authTimeoutMs: 10_000,
  // Far above what one agent uses (browsers keep ~6 per host, npm ~15), far below what exhausts a
  // host. The daemon lowers both caps to fit its open-file limit.
  maxListenerConnections: 1024,
  maxClientConnections: Infinity,
});

export interface ProxyOptions {
  readonly sessions: SessionDirectory;
  readonly upstream: Upstream;
  /** The proxy's own operational log (never the audit log). */
  readonly log: pino.Logger;
  readonly limits?: Partial<ProxyLimits>;
}

const AUTH_CHALLENGE = ['Proxy-Authenticate: Basic realm="airlock"'];

export class ProxyServer {
  private readonly servers: http.Server[] = [];
  /** Serves the decrypted side of inspected tunnels. It never listens on a port. */
  private readonly inner: http.Server;
  private readonly tunnels = new WeakMap<object, TunnelContext>();
  /**
   * CONNECT, tunnel and upgrade sockets, by the name of the listener they came in on. They are
   * detached from the HTTP server, which cannot finish closing while they are open, so close()
   * and unlisten() end them.
   */
  private readonly detached = new Map<Duplex, { listener: string; session: string | null }>();
  /** Plain-HTTP requests being answered, by session id (ended with their session). */
  private readonly plainInFlight = new Map<http.ServerResponse, string>();
  private readonly listenerNames = new WeakMap<http.Server, string>();
  private readonly limits: ProxyLimits;
  private readonly deps: ExchangeDeps;
  private readonly tunnelHost: TunnelHost;
  private readonly admission: Admission;

  constructor(private readonly options: ProxyOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.admission = new Admission(this.limits, options.log);
    this.deps = { upstream: this.options.upstream, log: this.options.log };
    this.tunnelHost = {
      deps: this.deps,
      limits: this.limits,
      adopt: (tlsSocket, socket, context) => {
        this.tunnels.set(tlsSocket, context);
        this.track(tlsSocket, this.detached.get(socket)?.listener ?? 'default');
        this.bind(tlsSocket, context.session);
      },
      serve: (tlsSocket, context) => this.serveTunnel(tlsSocket, context),
    };
    this.inner = this.createHttpServer();
    // The inner server never listens, and Node starts the headersTimeout checker (the
    // slowloris bound) only on 'listening': start it by hand, or requests inside tunnels would
    // have no header deadline at all. close() stops it.
    this.inner.emit('listening');
    this.inner.on('request', (req, res) => this.onTunnelRequest(req, res));
    this.inner.on('upgrade', (req, socket, head) => this.onTunnelUpgrade(req, socket, head));
    this.inner.on('connect', (req, socket) => this.onTunnelConnect(req, socket));
  }

  private createHttpServer(): http.Server {
    const server = http.createServer({
      headersTimeout: this.limits.headersTimeoutMs,
      requestTimeout: 0, // long uploads and streams are legitimate; idle is bounded below
      keepAliveTimeout: this.limits.keepAliveTimeoutMs,
      maxHeaderSize: this.limits.maxHeaderBytes,
      insecureHTTPParser: false,
      // Node enforces headersTimeout only when this checker runs (default every 30 s), so a
      // slowloris head would otherwise live up to headersTimeout + 30 s.
      connectionsCheckingInterval: checkingInterval(this.limits.headersTimeoutMs),
    });
    // Node resets each socket's timeout to server.timeout on every request: without this, a
    // kept-alive connection or tunnel would have no idle limit after its first request.
    server.timeout = this.limits.idleTimeoutMs;
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // Node reports the parse error again for every later chunk the client sends; the first
      // answer stands (destroying the socket then would reset the connection under it).
      if (answered.has(socket)) return;
      this.options.log.debug({ code: err.code }, 'client error');
      const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'; // headersTimeout (slowloris)
      if (socket.writable && (timedOut || err.code?.startsWith('HPE_'))) {
        this.answerClientError(socket, err.code!);
      } else {
        socket.destroy();
      }
    });
    return server;
  }

  /** Starts a listener. `name` identifies it to the session directory (session binding). */
  async listen(host: string, port: number, name = 'default'): Promise<AddressInfo> {
    const server = this.createHttpServer();
    // Registered after the HTTP server's own handler: a refused socket is ended right away, and
    // the handlers below ignore anything its parser still reports.
    server.on('connection', (socket: net.Socket) => this.admit(socket, name));
    server.on('request', (req, res) => this.onPlainRequest(req, res, name));
    server.on('connect', (req, socket, head) => this.onConnect(req, socket as net.Socket, head, name));
    server.on('upgrade', (req, socket, head) => this.onPlainUpgrade(req, socket, head, name));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.servers.push(server);
    this.listenerNames.set(server, name);
    const address = server.address() as AddressInfo;
    this.markOwnAddress(address.address);
    return address;
  }

  /**
   * Starts a listener on a unix socket (a relayed Docker session's only way in), owner-only. The
   * socket's directory must already be private to this user: the socket exists with umask bits
   * between listen() and chmod(), and only the directory keeps others out in that moment.
   */
  async listenSocket(path: string, name: string): Promise<string> {
    const server = this.createHttpServer();
    server.on('request', (req, res) => this.onPlainRequest(req, res, name));
    server.on('connect', (req, socket, head) => this.onConnect(req, socket as net.Socket, head, name));
    server.on('upgrade', (req, socket, head) => this.onPlainUpgrade(req, socket, head, name));
    rmSync(path, { force: true }); // a socket left by a killed run of this session id
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
    this.servers.push(server);
    this.listenerNames.set(server, name);
    return path;
  }

  /** The proxy never dials itself: a listener's address (or, for a wildcard, every interface's). */
  private markOwnAddress(address: string): void {
    const guard = this.options.upstream.guard;
    if (address !== '0.0.0.0' && address !== '::') {
      guard.addOwnAddress(address);
      return;
    }
    for (const list of Object.values(networkInterfaces())) {
      for (const info of list ?? []) guard.addOwnAddress(info.address);
    }
  }

  /** Stops one listener (a Docker session's gateway listener, or its unix socket, which is removed). */
  async unlisten(address: AddressInfo | string): Promise<void> {
    const index = this.servers.findIndex((s) => {
      const a = s.address() as AddressInfo | string | null;
      if (typeof address === 'string' || typeof a === 'string') return a === address;
      return a !== null && a.port === address.port && a.address === address.address;
    });
    if (index === -1) return;
    const [server] = this.servers.splice(index, 1);
    const name = this.listenerNames.get(server!);
    const open = [...this.detached].filter(([, entry]) => entry.listener === name).map(([socket]) => socket);
    await settle([closeServer(server!), destroyAll(open)]);
  }

  /** Open client connections, in all or on one listener (by name). */
  clientConnections(listener?: string): number {
    return this.admission.open(listener);
  }

  async close(): Promise<void> {
    const servers = this.servers.splice(0);
    this.admission.close();
    this.inner.closeAllConnections();
    this.inner.close(() => {}); // not listening: this only stops its connection checker
    // Ending the tunnels and upgrades lets the listeners finish closing, and lets their audit
    // lines be written before the caller closes the sessions' audit logs.
    await settle([...servers.map(closeServer), destroyAll([...this.detached.keys()])]);
  }

  /**
   * Ends every connection of a session (when it is removed): its tunnels and upgrades, and its
   * plain requests in flight. Resolves once they have closed and been audited.
   */
  async endSession(id: string): Promise<void> {
    const sockets = [...this.detached].filter(([, entry]) => entry.session === id).map(([socket]) => socket);
    for (const [res, session] of this.plainInFlight) if (session === id && res.socket) sockets.push(res.socket);
    if (sockets.length > 0) await settle([destroyAll(sockets)]);
  }

  /** Counts an accepted connection against its caps, or answers why not and closes it. */
  private admit(socket: net.Socket, listener: string): void {
    const refusal = this.admission.admit(socket, listener, this.options.sessions.ownerOf(listener));
    if (!refusal) return;
    socket.on('error', () => socket.destroy());
    // The answer goes out before the client's request is likely to arrive, so the close is a
    // FIN after it, not a reset that would discard it. No lingering: in a flood every refused
    // socket must give its descriptor back at once.
    socket.end(rawResponse(refusal.status, refusal.reason, refusal.body, ['Retry-After: 1']), () => socket.destroy());
    const stuck = setTimeout(() => socket.destroy(), 1_000).unref();
    socket.once('close', () => clearTimeout(stuck));
  }

  private track(socket: Duplex, listener: string): void {
    if (socket.destroyed) return;
    this.detached.set(socket, { listener, session: null });
    socket.once('close', () => this.detached.delete(socket));
  }

  /** Marks a tracked socket as carrying this session's traffic. */
  private bind(socket: Duplex, session: ProxySession): void {
    const entry = this.detached.get(socket);
    if (entry) entry.session = session.id;
  }

  // ---- plain HTTP: absolute-URI requests to the proxy

  private onPlainRequest(req: http.IncomingMessage, res: http.ServerResponse, listener: string): void {
    if (this.admission.isRefused(req.socket)) {
      req.socket.destroy();
      return;
    }
    inTurn(res, () => this.handlePlainRequest(req, res, listener));
  }

  private handlePlainRequest(req: http.IncomingMessage, res: http.ServerResponse, listener: string): void {
    const session = this.authenticate(req, listener);
    if (!session) {
      res.writeHead(407, { 'Proxy-Authenticate': 'Basic realm="airlock"', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(PROXY_AUTH_BODY);
      return;
    }
    this.admission.authenticated(req.socket);
    this.plainInFlight.set(res, session.id);
    res.once('close', () => this.plainInFlight.delete(res));
    forwardHttp(this.deps, { req, res, body: bodyOf(req), session, scheme: 'http' });
  }

  // ---- CONNECT

  private onConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer, listener: string): void {
    const session = this.authenticateSocket(req, socket, listener);
    if (!session) return;
    openTunnel(this.tunnelHost, session, req.url, socket, head);
  }

  // ---- requests inside an inspected tunnel

  /**
   * Requests the tunnel's fast path reads go straight to forwarding; a connection it hands off
   * (any head outside its subset) goes to the inner Node server, whose handlers are below.
   */
  private serveTunnel(tlsSocket: tls.TLSSocket, context: TunnelContext): void {
    serveTunnelHttp(tlsSocket, this.limits, {
      request: (req, res, body) => forwardHttp(this.deps, { req, res, body, session: context.session, scheme: 'https', tunnel: context }),
      handOff: (socket) => this.inner.emit('connection', socket),
      clientError: (socket, code) => this.answerClientError(socket, code),
    });
  }

  private onTunnelRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const context = this.tunnels.get(req.socket);
    if (!context) {
      req.socket.destroy();
      return;
    }
    inTurn(res, () => forwardHttp(this.deps, { req, res, body: bodyOf(req), session: context.session, scheme: 'https', tunnel: context }));
  }

  /** A CONNECT relayed inside a tunnel: decided like any CONNECT, and never tunnelled twice. */
  private onTunnelConnect(req: http.IncomingMessage, socket: Duplex): void {
    socket.on('error', () => socket.destroy());
    const context = this.tunnels.get(req.socket);
    if (!context) {
      socket.destroy();
      return;
    }
    refuseInnerConnect(this.deps, context, req.url, socket);
  }

  private onTunnelUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const context = this.tunnels.get(req.socket);
    if (!context) {
      socket.destroy();
      return;
    }
    relayWebSocket(this.deps, { req, socket, head, session: context.session, scheme: 'https', tunnel: context });
  }

  private onPlainUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, listener: string): void {
    const session = this.authenticateSocket(req, socket, listener);
    if (!session) return;
    relayWebSocket(this.deps, { req, socket, head, session, scheme: 'http' });
  }

  // ---- shared pieces

  /** Answers a head that could not be served (malformed, too large, too slow); in a tunnel, audits it. */
  private answerClientError(socket: Duplex, code: string): void {
    answered.add(socket);
    // Lingering close: what the client is still sending (a header flood) is read and dropped
    // for a moment, so the answer reaches it instead of a reset; then the connection goes.
    answerClientError(this.deps, this.tunnels.get(socket), socket, code);
  }

  /**
   * For sockets taken over from the HTTP server (CONNECT, upgrades): track them, authenticate,
   * and answer 407 on failure. Returns the session bound to the socket, or null when refused.
   */
  private authenticateSocket(req: http.IncomingMessage, socket: Duplex, listener: string): ProxySession | null {
    socket.on('error', () => socket.destroy());
    if (this.admission.isRefused(socket)) {
      socket.destroy();
      return null;
    }
    this.track(socket, listener);
    const session = this.authenticate(req, listener);
    if (!session) {
      answerRaw(socket, 407, PROXY_AUTH_BODY, AUTH_CHALLENGE);
      return null;
    }
    this.bind(socket, session);
    this.admission.authenticated(socket as net.Socket);
    return session;
  }

  private authenticate(req: http.IncomingMessage, listener: string): ProxySession | null {
    const session = this.options.sessions.authenticate(req.headers['proxy-authorization'], listener);
    if (!session) {
      // Not a session's request, so no session audit log: the proxy's own log keeps it.
      this.options.log.warn(
        { method: req.method, target: req.url, listener, remote: req.socket.remoteAddress, reason: 'auth_required' },
        req.headers['proxy-authorization'] ? 'proxy credential rejected' : 'proxy credential missing',
      );
    }
    return session;
  }

}

/** Connections already answered (400/408/431) for a client error: Node reports it again per chunk. */
const answered = new WeakSet<Duplex>();

/** How often Node checks for connections over headersTimeout: often enough to hold the bound. */
function checkingInterval(headersTimeoutMs: number): number {
  return Math.min(30_000, Math.max(100, Math.floor(headersTimeoutMs / 4)));
}

/**
 * Pipelined requests are handled one at a time, in order: Node announces each as soon as it is
 * parsed, but hands its response the socket only when every response before it is finished. A
 * request starts then, so nothing queued behind a response that closes the connection (every
 * refusal does) is ever forwarded (RFC 9112 section 9.6), and a client that leaves with requests
 * queued leaves nothing running or counted for them.
 */
function inTurn(res: http.ServerResponse, handle: () => void): void {
  if (res.socket) handle();
  else res.once('socket', () => handle());
}

/** Destroys sockets and resolves once each has emitted 'close' (and its handlers have run). */
function destroyAll(sockets: readonly Duplex[]): Promise<void> {
  return Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          if ((socket as Duplex & { closed?: boolean }).closed) return resolve();
          socket.once('close', () => setImmediate(resolve));
          socket.destroy();
        }),
    ),
  ).then(() => undefined);
}

/** Waits for all, but at most 2 s: shutting down must not hang on a stuck peer. */
async function settle(work: Promise<unknown>[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(work), new Promise((resolve) => (timer = setTimeout(resolve, 2_000)))]);
  clearTimeout(timer);
  await new Promise((resolve) => setImmediate(resolve));
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
