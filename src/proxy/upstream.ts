// How the proxy reaches upstreams: one place that turns a checked host into the address to dial,
// shared by the HTTP client pool, blind tunnels and WebSockets, so every path dials what was
// checked. Resolve overrides work like curl's --resolve (operator-trusted, for tests and
// split-horizon DNS).
import net from 'node:net';
import tls from 'node:tls';
import { lookup } from 'node:dns/promises';
import { Agent, buildConnector } from 'undici';
import { DestinationGuard } from './destination.js';

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
    super(`${host} resolves to ${address}: ${why}`, 403, 'destination_blocked');
  }
}

async function systemLookup(host: string): Promise<string[]> {
  const addresses = await lookup(host, { all: true, verbatim: true });
  return addresses.map((a) => a.address);
}

export class Upstream {
  readonly dispatcher: Agent;
  readonly guard: DestinationGuard;
  /** Built once: parsing a root list per connection would cost milliseconds per handshake. */
  private readonly secureContext: tls.SecureContext | undefined;

  constructor(private readonly options: UpstreamOptions) {
    this.guard = new DestinationGuard(options.allowPrivate);
    this.secureContext = options.ca.length > 0 ? tls.createSecureContext({ ca: [...options.ca] }) : undefined;
    const base = buildConnector({
      secureContext: this.secureContext,
      timeout: options.connectTimeoutMs ?? 10_000,
      keepAlive: true,
      maxCachedSessions: 1000,
    } as buildConnector.BuildOptions);
    this.dispatcher = new Agent({
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 120_000,
      headersTimeout: 120_000,
      bodyTimeout: 300_000,
      connections: 256,
      connect: (opts, callback) => {
        const hostname = stripBrackets(opts.hostname);
        this.endpointFor(hostname, Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80)).then(
          (endpoint) =>
            base(
              {
                ...opts,
                hostname: endpoint.address,
                port: String(endpoint.port),
                // Verify the certificate against the name, not the address we dialled.
                servername: net.isIP(hostname) ? undefined : hostname,
              },
              callback,
            ),
          (err: Error) => callback(err, null),
        );
      },
    });
  }

  /**
   * The one endpoint this host:port is dialled at: a --resolve override (operator-trusted), or
   * the first resolved address the destination guard accepts. Every path dials what this returns.
   */
  async endpointFor(host: string, port: number): Promise<Endpoint> {
    const endpoint = (await this.checkedEndpoint(host, port)) ;
    this.options.beforeDial?.(endpoint, host);
    return endpoint;
  }

  private async checkedEndpoint(host: string, port: number): Promise<Endpoint> {
    const override = this.options.resolve.get(`${host}:${port}`);
    if (override) return override;
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
    await this.dispatcher.close();
  }
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
