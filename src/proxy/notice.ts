// Tunnels the proxy answers itself, under a leaf of the session's notice CA: a denied HTTPS host
// (every request inside answered 403 with a plain-text explanation, so curl, git and fetch show
// it) and the in-session endpoint over https. Nothing inside such a tunnel is ever forwarded: no
// upstream connection, no credential swap, no decision besides the one the CONNECT already got.
import http from 'node:http';
import type net from 'node:net';
import tls from 'node:tls';
import type { Exchange } from './exchange.js';
import type { SessionCa } from '../ca/session-ca.js';
import type { Authority } from './target.js';
import type { TunnelContext } from './tunnel-context.js';
import type { Duplex } from 'node:stream';
import { asciiSafe, endWith, INTERNAL_HOST, rawResponse } from './responses.js';

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

type Denial = NonNullable<ReturnType<Exchange['refusal']>>;

/** A notice tunnel lives at most this long, however busy: it only ever carries fixed answers. */
const NOTICE_LIFETIME_MS = 60_000;
/** Requests one proxy-answered tunnel serves before it is closed. */
const MAX_REQUESTS = 100;

/** Whether the session's notice CA can speak for `host` now (never a host the session may reach). */
export function noticeCaFor(ctx: { readonly notice?: SessionCa | null }, host: string): boolean {
  const notice = ctx.notice;
  return !!notice && notice.current && notice.mayIssueOutsideExclusions(host);
}

/** What a denied request inside a notice tunnel is told: plain text, printable ASCII, bounded. */
export function denialText(d: Denial, method: string, path: string): string {
  const safePath = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]{0,200}$/.test(path) ? path : '/';
  const safeMethod = /^[A-Za-z]{1,20}$/.test(method) ? method.toUpperCase() : 'GET';
  const policy = asciiSafe(d.policy, 60);
  return [
    `Airlock, the egress proxy of this session, refused ${safeMethod} https://${d.host}:${d.port}${safePath}`,
    `Policy "${policy}" (version ${d.version}) does not allow it: ${asciiSafe(d.message, 300)} [${d.reason}]`,
    'This is a policy decision, not a network error: retrying or another route will not get through.',
    `Why, in detail: curl -s 'http://${INTERNAL_HOST}/why?method=${safeMethod}&url=https://${d.host}:${d.port}${safePath}'`,
    `Ask the operator for access: curl -s http://${INTERNAL_HOST}/request-access -d host=${d.host} -d port=${d.port} -d method=${safeMethod} -d path=${safePath} -d reason='what you need it for'`,
    `The operator sees it with \`airlock inbox\`; once approved, the same request works in this session without a restart.`,
    '',
  ].join('\n');
}

/** What an answered tunnel needs of the proxy (a part of connect.ts's TunnelHost). */
export interface AnsweredTunnelHost {
  readonly limits: { readonly idleTimeoutMs: number; readonly headersTimeoutMs: number };
  adopt(tlsSocket: tls.TLSSocket, socket: net.Socket, context: TunnelContext): void;
}

export interface AnsweredTunnelHandlers {
  /** Answers one request inside the tunnel. */
  respond(req: http.IncomingMessage, res: http.ServerResponse, context: TunnelContext): void;
  /** The raw answer to an upgrade or CONNECT inside the tunnel (nothing is ever relayed). */
  refuseRaw(req: http.IncomingMessage): string;
  /** The tunnel closed: its bytes, and the TLS error that ended it, if one did. */
  closed(bytesUp: number, bytesDown: number, tlsError: string | undefined): void;
  /** The client left while the leaf was being minted. */
  gone(): void;
  /** No leaf could be minted. */
  noLeaf(): void;
}

/**
 * Completes the CONNECT and the TLS handshake under `leaf` (a notice leaf, once minted), then serves
 * each request inside with `respond`. The exchange of the CONNECT is audited once, when the
 * tunnel closes, through `closed`. Bounded: handshake deadline, idle timeout, total lifetime,
 * requests per tunnel, header size.
 */
export function answeredTunnel(
  host: AnsweredTunnelHost,
  ex: Exchange,
  socket: net.Socket,
  connect: Authority,
  leaf: tls.SecureContext | Promise<tls.SecureContext>,
  handlers: AnsweredTunnelHandlers,
): void {
  Promise.resolve(leaf).then(
    (secureContext) => (socket.destroyed ? handlers.gone() : serveAnswered(host, ex, socket, connect, secureContext, handlers)),
    () => handlers.noLeaf(),
  );
}

function serveAnswered(host: AnsweredTunnelHost, ex: Exchange, socket: net.Socket, connect: Authority, secureContext: tls.SecureContext, handlers: AnsweredTunnelHandlers): void {
  const { respond, refuseRaw, closed } = handlers;
  const started = { read: socket.bytesRead, written: socket.bytesWritten };
  socket.write(ESTABLISHED);
  const context: TunnelContext = { session: ex.session, connect, sni: null };
  // Whatever name the client asks for, it gets this leaf: the answer is the same either way.
  const tlsSocket = new tls.TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
  host.adopt(tlsSocket, socket, context);
  let tlsError: string | undefined;
  tlsSocket.on('error', (err: NodeJS.ErrnoException) => {
    tlsError ??= err.code ?? 'tls_error';
    tlsSocket.destroy();
  });
  const handshake = setTimeout(() => {
    tlsError = 'tls_handshake_timeout';
    tlsSocket.destroy();
  }, host.limits.headersTimeoutMs);
  const lifetime = setTimeout(() => tlsSocket.destroy(), NOTICE_LIFETIME_MS);
  tlsSocket.setTimeout(host.limits.idleTimeoutMs, () => tlsSocket.destroy());
  const onEarlyEnd = () => tlsSocket.destroy();
  tlsSocket.once('end', onEarlyEnd);
  tlsSocket.once('secure', () => {
    clearTimeout(handshake);
    tlsSocket.off('end', onEarlyEnd);
    let served = 0;
    // One small never-listening server per tunnel: it parses the requests and nothing else.
    const server = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 0, keepAliveTimeout: host.limits.idleTimeoutMs });
    server.on('request', (req, res) => {
      if (++served >= MAX_REQUESTS) res.shouldKeepAlive = false;
      respond(req, res, context);
    });
    server.on('clientError', (_err, s) => s.destroy());
    const refuse = (req: http.IncomingMessage, s: Duplex) => {
      s.on('error', () => s.destroy());
      endWith(s, refuseRaw(req));
    };
    server.on('upgrade', refuse);
    server.on('connect', refuse);
    server.emit('connection', tlsSocket);
  });
  tlsSocket.once('close', () => {
    clearTimeout(handshake);
    clearTimeout(lifetime);
    socket.destroy();
    closed(socket.bytesRead - started.read, socket.bytesWritten - started.written, tlsError);
  });
}

/** The fixed answer to an upgrade or CONNECT inside a notice tunnel, on the raw socket. */
export function rawDenied(d: Denial, req: http.IncomingMessage): string {
  const body = denialText(d, req.method ?? 'GET', (req.url ?? '/').split('?')[0]!);
  return rawResponse(403, asciiSafe(`Forbidden by Airlock policy "${d.policy}"`, 100), body, [`X-Airlock-Decision: deny; reason=${d.reason}`]);
}

/** The fixed answer of a notice tunnel: 403 with the explanation as plain text, then close. */
export function answerDenied(d: Denial, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '/';
  const body = denialText(d, req.method ?? 'GET', url.split('?')[0]!);
  // The body, if any, is not read: the connection closes after the answer.
  res.shouldKeepAlive = false;
  res.writeHead(403, asciiSafe(`Forbidden by Airlock policy "${d.policy}"`, 100), {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Airlock-Decision': `deny; reason=${d.reason}`,
  });
  res.end(body);
}
