// How the proxy reaches upstreams: one place that turns a checked host into the address to dial,
// shared by the HTTP client pool, blind tunnels and WebSockets, so every path dials what was
// checked. Resolve overrides work like curl's --resolve (operator-trusted, for tests and
// split-horizon DNS).
import net from 'node:net';
import { INTERNAL_HOST } from './responses.js';
import tls from 'node:tls';
import { lookup } from 'node:dns/promises';
import { DestinationGuard } from './destination.js';
import { Http1Client } from './http1/http1-client.js';

export interface UpstreamOptions {
  /** "host:port" → where to dial instead of resolving the name (operator-trusted). */
  readonly resolve: ReadonlyMap<string, Endpoint>;
  /** Trusted roots for upstream TLS (PEM). Empty = Node's defaults. */
  readonly ca: readonly string[];
  readonly connectTimeoutMs?: number;
  /** CIDR ranges the operator opens despite the destination guard (allow_private). */
  readonly allowPrivate?: readonly string[];
  /** Name resolution; default the system resolver (dns.lookup, all addresses). */
  readonly lookup?: (host: string) => Promise<string[]>;
  /** Called with the exact endpoint just before any upstream connection (tests record it). */
  readonly beforeDial?: (endpoint: Endpoint, host: string) => void;
}

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly status: 403 | 502 | 504,
    readonly code: string,
  ) {
    super(message);
  }
}

/** The destination guard refused every address of a host. */
export class DestinationBlocked extends UpstreamError {
  constructor(
    readonly host: string,
    readonly address: string,
    readonly why: string,
  ) {
    super(host === address ? `${host} is ${why}` : `${host} resolves to ${address}: ${why}`, 403, 'destination_blocked');
  }
}

async function systemLookup(host: string): Promise<string[]> {
  const addresses = await lookup(host, { all: true, verbatim: true });
  return addresses.map((a) => a.address);
}

export class Upstream {
  readonly http: Http1Client;
  readonly guard: DestinationGuard;
  /**
   * Built once: parsing a root list per connection would cost milliseconds per handshake. Built
   * at the first upstream TLS connection (or prepare()), not at start: a system bundle takes
   * ~100 ms to load, which `airlock exec` would otherwise add before its command starts.
   */
  private context: tls.SecureContext | undefined | null = null;
  /** Last TLS session per server name, so a new upstream connection resumes instead of a full handshake. */
  private readonly sessions = new Map<string, Buffer>();

  constructor(private readonly options: UpstreamOptions) {
    this.guard = new DestinationGuard(options.allowPrivate);
    this.http = new Http1Client({
      dial: (host, port, secure) => (secure ? this.connectTls(host, port) : this.connectTcp(host, port)),
      keepAliveMs: 30_000,
      stallTimeoutMs: 300_000,
      maxPerOrigin: 256,
    });
  }

  private get secureContext(): tls.SecureContext | undefined {
    // No roots given: a context on Node's default store (shared, built once per process), made
    // once here rather than by tls.connect at every connection.
    if (this.context === null) this.context = tls.createSecureContext(this.options.ca.length > 0 ? { ca: [...this.options.ca] } : {});
    return this.context;
  }

  /** Loads the trusted roots now (a launcher calls it once its command is running). */
  prepare(): void {
    void this.secureContext;
  }

  /** A verified TLS connection to host:port (checked, dialled at the checked address). */
  async connectTls(host: string, port: number): Promise<tls.TLSSocket> {
    const started = Date.now();
    const tcp = await this.connectTcp(host, port);
    const servername = net.isIP(host) ? undefined : host;
    const sessionKey = `${host}:${port}`;
    return await new Promise((resolve, reject) => {
      const socket = tls.connect({
        socket: tcp,
        secureContext: this.secureContext,
        servername,
        // Checked against the name, not the address dialled.
        host,
        session: this.sessions.get(sessionKey),
      });
      const timer = setTimeout(
        () => fail(Object.assign(new Error('TLS handshake timeout'), { code: 'ETIMEDOUT' })),
        Math.max(1, (this.options.connectTimeoutMs ?? 10_000) - (Date.now() - started)),
      );
      const fail = (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        tcp.destroy();
        const timeout = err.code === 'ETIMEDOUT';
        reject(new UpstreamError(`TLS to ${host}:${port} failed (${err.code ?? err.message})`, timeout ? 504 : 502, err.code ?? 'ETLS'));
      };
      socket.once('error', fail);
      socket.on('session', (session: Buffer) => {
        if (this.sessions.size >= 1000 && !this.sessions.has(sessionKey)) this.sessions.delete(this.sessions.keys().next().value!);
        this.sessions.set(sessionKey, session);
      });
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        socket.setNoDelay(true);
        resolve(socket);
      });
    });
  }

  /**
   * The one endpoint this host:port is dialled at: a --resolve override, or the first resolved
   * address the destination guard accepts. Every path dials what this returns. Overrides are the
   * operator's word and skip the guard: they are how a service on this host (or a test's upstream
   * on 127.0.0.1) is reached on purpose, and a session cannot add one.
   */
  async endpointFor(host: string, port: number): Promise<Endpoint> {
    const endpoint = (await this.checkedEndpoint(host, port)) ;
    this.options.beforeDial?.(endpoint, host);
    return endpoint;
  }

  private async checkedEndpoint(host: string, port: number): Promise<Endpoint> {
    // The proxy answers this name itself; no rule, override or resolver makes it a destination.
    if (host === INTERNAL_HOST || host.endsWith('.' + INTERNAL_HOST)) throw new DestinationBlocked(host, host, "the proxy's own in-session endpoint, never dialled");
    const override = this.options.resolve.get(`${host}:${port}`);
    if (override) {
      const why = this.guard.overrideBlockedBecause(override.address, override.port);
      if (why) throw new DestinationBlocked(host, override.address, why);
      return override;
    }
    let addresses: string[];
    if (net.isIP(host)) {
      addresses = [host];
    } else {
      try {
        addresses = await (this.options.lookup ?? systemLookup)(host);
      } catch (err) {
        throw new UpstreamError(`cannot resolve ${host}`, 502, (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND');
      }
      if (addresses.length === 0) throw new UpstreamError(`cannot resolve ${host}`, 502, 'ENOTFOUND');
    }
    let firstRefusal: DestinationBlocked | undefined;
    for (const address of addresses) {
      const why = this.guard.blockedBecause(address);
      if (!why) return { address, port };
      firstRefusal ??= new DestinationBlocked(host, address, why);
    }
    throw firstRefusal!;
  }

  /** A raw TCP connection to host:port (for blind tunnels). */
  async connectTcp(host: string, port: number, signal?: AbortSignal): Promise<net.Socket> {
    const endpoint = await this.endpointFor(host, port);
    if (signal?.aborted) throw new UpstreamError(`client left before ${host}:${port} was dialled`, 502, 'ABORTED');
    return await new Promise((resolve, reject) => {
      const socket = net.connect({ host: endpoint.address, port: endpoint.port, noDelay: true });
      let settled = false;
      const onAbort = () => fail(Object.assign(new Error('aborted'), { code: 'ABORTED' }));
      const settle = () => {
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const fail = (err: NodeJS.ErrnoException) => {
        if (settled) return;
        settle();
        socket.destroy();
        const timeout = err.code === 'ETIMEDOUT';
        reject(new UpstreamError(`cannot connect to ${host}:${port} (${err.code ?? err.message})`, timeout ? 504 : 502, err.code ?? 'ECONNECT'));
      };
      const timer = setTimeout(
        () => fail(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })),
        this.options.connectTimeoutMs ?? 10_000,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.once('error', fail);
      socket.once('connect', () => {
        if (settled) return;
        settle();
        socket.off('error', fail);
        resolve(socket);
      });
    });
  }

  /** TLS options for clients (such as ws) that open their own upstream TLS connections. */
  tlsOptionsFor(host: string): tls.ConnectionOptions {
    return { secureContext: this.secureContext, servername: net.isIP(host) ? undefined : host };
  }

  async close(): Promise<void> {
    this.http.close();
  }
}


