// Hand-built proxy clients for tests that need control over every byte: a raw CONNECT, requests
// inside a tunnel with any Host/SNI, plain absolute-URI requests, WebSockets through a tunnel.
//
//   basicAuth(user, password)              → "Basic ..."
//   rawConnect({ proxyPort, target, proxyAuthorization? }) → { status, head, body, socket }
//   httpsViaProxy({ proxyPort, proxyAuthorization?, url, ca, ... })  → { connectStatus, status, headers, body }
//   httpViaProxy({ proxyPort, proxyAuthorization?, url, ... })        → { status, headers, body }
//   openTunnelTls({ proxyPort, proxyAuthorization, target, servername, ca }) → tls.TLSSocket (after CONNECT 200)
//   openIdleConnections(host, port, count) → a flood of connections that never send a byte
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { readFileSync } from 'node:fs';

export function basicAuth(user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

export interface RawConnectResult {
  readonly status: number;
  /** Status line and headers as text. */
  readonly head: string;
  /** For non-200 answers: the body up to the proxy closing the connection. */
  readonly body: string;
  /** For 200: the open socket (bytes after the header block are unshifted back). */
  readonly socket: net.Socket;
}

/** Sends `CONNECT target` to the proxy by hand and reads the answer. */
export function rawConnect(opts: {
  proxyPort: number;
  /** Default 127.0.0.1. */
  proxyHost?: string;
  target: string;
  proxyAuthorization?: string;
  /** More header lines for the CONNECT request ("Name: value"). */
  extraHeaders?: readonly string[];
  timeoutMs?: number;
}): Promise<RawConnectResult> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: opts.proxyHost ?? '127.0.0.1', port: opts.proxyPort });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`CONNECT ${opts.target}: no answer within ${opts.timeoutMs ?? 10_000} ms`));
    }, opts.timeoutMs ?? 10_000);
    let buffer: Buffer = Buffer.alloc(0);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('connect', () => {
      const lines = [`CONNECT ${opts.target} HTTP/1.1`, `Host: ${opts.target}`];
      if (opts.proxyAuthorization) lines.push(`Proxy-Authorization: ${opts.proxyAuthorization}`);
      lines.push(...(opts.extraHeaders ?? []));
      socket.write(lines.join('\r\n') + '\r\n\r\n');
    });
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      const head = buffer.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const rest = buffer.subarray(end + 4);
      if (status === 200) {
        clearTimeout(timer);
        socket.pause();
        if (rest.length > 0) socket.unshift(rest);
        resolve({ status, head, body: '', socket });
        return;
      }
      const chunks = [rest];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('close', () => {
        clearTimeout(timer);
        resolve({ status, head, body: Buffer.concat(chunks).toString('utf8'), socket });
      });
    };
    socket.on('data', onData);
  });
}

/** CONNECTs, expects 200, then starts TLS inside the tunnel. */
export async function openTunnelTls(opts: {
  proxyPort: number;
  proxyAuthorization?: string;
  target: string;
  servername: string;
  ca: string | string[];
  checkServerIdentity?: tls.ConnectionOptions['checkServerIdentity'];
}): Promise<tls.TLSSocket> {
  const connect = await rawConnect({ proxyPort: opts.proxyPort, target: opts.target, proxyAuthorization: opts.proxyAuthorization });
  if (connect.status !== 200) throw new Error(`CONNECT ${opts.target} answered ${connect.status}: ${connect.body}`);
  return await new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: connect.socket,
      servername: opts.servername,
      ca: opts.ca,
      ALPNProtocols: ['http/1.1'],
      ...(opts.checkServerIdentity ? { checkServerIdentity: opts.checkServerIdentity } : {}),
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** A TLS connection through the proxy's tunnel to `host:443`, trusting the session CA the proxy wrote. */
export async function tunnelThrough(
  airlock: { port: number; proxyAuthorization?: string; bundlePath: string },
  host: string,
  opts: { servername?: string; checkServerIdentity?: tls.ConnectionOptions['checkServerIdentity'] } = {},
): Promise<tls.TLSSocket> {
  return openTunnelTls({
    proxyPort: airlock.port,
    proxyAuthorization: airlock.proxyAuthorization,
    target: `${host}:443`,
    servername: opts.servername ?? host,
    ca: readFileSync(airlock.bundlePath, 'utf8'),
    ...(opts.checkServerIdentity ? { checkServerIdentity: opts.checkServerIdentity } : {}),
  });
}

export interface ClientResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

function collect(req: http.ClientRequest, body: string | Buffer | undefined): Promise<ClientResponse> {
  return new Promise((resolve, reject) => {
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.end(body);
  });
}

export interface HttpsViaProxyResult extends ClientResponse {
  /** Status of the CONNECT; when not 200, status/headers/body are those of the CONNECT answer. */
  readonly connectStatus: number;
}

/**
 * An HTTPS request through the proxy: CONNECT host:port, TLS (verified against `ca`, SNI =
 * `servername` ?? URL host), then one HTTP/1.1 request. `headers.Host` overrides the Host header.
 */
export async function httpsViaProxy(opts: {
  proxyPort: number;
  proxyAuthorization?: string;
  url: string;
  ca: string | string[];
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  servername?: string;
  checkServerIdentity?: tls.ConnectionOptions['checkServerIdentity'];
}): Promise<HttpsViaProxyResult> {
  const url = new URL(opts.url);
  const port = Number(url.port || 443);
  const target = `${url.hostname}:${port}`;
  const connect = await rawConnect({ proxyPort: opts.proxyPort, target, proxyAuthorization: opts.proxyAuthorization });
  if (connect.status !== 200) {
    return { connectStatus: connect.status, status: connect.status, headers: {}, body: connect.body };
  }
  const tlsSocket = tls.connect({
    socket: connect.socket,
    servername: opts.servername ?? url.hostname,
    ca: opts.ca,
    ALPNProtocols: ['http/1.1'],
    ...(opts.checkServerIdentity ? { checkServerIdentity: opts.checkServerIdentity } : {}),
  });
  const req = https.request({
    host: url.hostname,
    port,
    method: opts.method ?? 'GET',
    path: url.pathname + url.search,
    headers: opts.headers,
    defaultPort: 443,
    createConnection: () => tlsSocket,
  });
  const res = await collect(req, opts.body);
  tlsSocket.destroy();
  return { connectStatus: 200, ...res };
}

/** A plain-HTTP proxy request: absolute URI to the proxy. `headers.Host` overrides the Host header. */
export function httpViaProxy(opts: {
  proxyPort: number;
  proxyAuthorization?: string;
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}): Promise<ClientResponse> {
  const url = new URL(opts.url);
  const headers: Record<string, string> = { Host: url.host, ...opts.headers };
  if (opts.proxyAuthorization) headers['Proxy-Authorization'] = opts.proxyAuthorization;
  const req = http.request({
    host: '127.0.0.1',
    port: opts.proxyPort,
    method: opts.method ?? 'GET',
    path: opts.url,
    headers,
    agent: false,
  });
  return collect(req, opts.body);
}

/** Sends raw bytes on a socket and reads until the peer closes or `until` matches. */
export function rawExchange(socket: net.Socket | tls.TLSSocket, request: string, until?: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms; got: ${JSON.stringify(text)}`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      resolve(text);
    };
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      text += c;
      if (until && until.test(text)) finish();
    });
    socket.once('close', finish);
    socket.once('error', () => {});
    socket.resume();
    socket.write(request);
  });
}

/**
 * An https.Agent that reaches every host through the proxy with CONNECT (like https-proxy-agent):
 * give it to https.request or to `new WebSocket(url, protocols, { agent })`. A refused CONNECT
 * fails the request with an error carrying `status` (e.g. 403).
 */
export class TunnelAgent extends https.Agent {
  constructor(
    private readonly proxy: { proxyPort: number; proxyAuthorization?: string; ca: string | string[] },
  ) {
    super({ keepAlive: false });
  }

  override createConnection(
    options: http.ClientRequestArgs & { servername?: string },
    callback?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    const host = options.host ?? 'localhost';
    const port = Number(options.port ?? 443);
    rawConnect({ proxyPort: this.proxy.proxyPort, target: `${host}:${port}`, proxyAuthorization: this.proxy.proxyAuthorization }).then(
      (r) => {
        if (r.status !== 200) {
          callback?.(Object.assign(new Error(`proxy answered CONNECT with ${r.status}`), { status: r.status, body: r.body }), undefined as never);
          return;
        }
        const socket = tls.connect({ socket: r.socket, servername: options.servername || host, ca: this.proxy.ca, ALPNProtocols: ['http/1.1'] });
        callback?.(null, socket);
      },
      (err: Error) => callback?.(err, undefined as never),
    );
    return undefined;
  }
}

export interface IdleConnections {
  readonly sockets: net.Socket[];
  /** What each connection received (latin1), by index. */
  readonly received: string[];
  /** Connections the peer has not closed. */
  open(): number;
  close(): void;
}

/**
 * Opens `count` TCP connections to host:port, `batch` at a time, and writes nothing on them. Each
 * batch waits until its connections have connected or been closed (at most `batchTimeoutMs`: a
 * peer that stops accepting leaves connects hanging in its backlog).
 */
export async function openIdleConnections(host: string, port: number, count: number, opts: { batch?: number; batchTimeoutMs?: number } = {}): Promise<IdleConnections> {
  const batch = opts.batch ?? 200;
  const sockets: net.Socket[] = [];
  const received: string[] = [];
  const closed = new Set<net.Socket>();
  for (let start = 0; start < count; start += batch) {
    let timer: NodeJS.Timeout | undefined;
    const settled = Promise.all(
      Array.from({ length: Math.min(batch, count - start) }, (_, k) => {
        const index = start + k;
        received[index] = '';
        return new Promise<void>((resolve) => {
          const socket = net.connect({ host, port });
          sockets.push(socket);
          socket.on('data', (c: Buffer) => (received[index] += c.toString('latin1')));
          socket.on('error', () => {});
          socket.once('close', () => {
            closed.add(socket);
            resolve();
          });
          socket.once('connect', () => resolve());
        });
      }),
    );
    await Promise.race([settled, new Promise((resolve) => (timer = setTimeout(resolve, opts.batchTimeoutMs ?? 10_000)))]);
    clearTimeout(timer);
  }
  return {
    sockets,
    received,
    open: () => sockets.length - closed.size,
    close: () => sockets.forEach((s) => s.destroy()),
  };
}
