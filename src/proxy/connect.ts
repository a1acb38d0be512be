// CONNECT: a tunnel decided by the policy at the CONNECT line, then inspected (TLS terminated with
// the session CA's leaf, each request inside served and decided on its own) or blind (bytes piped
// to the upstream). Each tunnel is one exchange with its own audit line when it closes.
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { ProxySession } from './context.js';
import { answerRaw, Exchange, failureOf } from './exchange.js';
import type { ExchangeDeps } from './exchange.js';
import { parseAuthority } from './target.js';
import type { Authority } from './target.js';
import type { TunnelContext } from './tunnel-context.js';
import { answerDenied, answeredTunnel, noticeCaFor, rawDenied } from './notice.js';
import { serveInternal } from './internal.js';
import { INTERNAL_HOST, rawResponse } from './responses.js';

export interface TunnelLimits {
  /** Tunnels with no traffic for this long are closed. */
  readonly idleTimeoutMs: number;
  /** Time allowed for the TLS handshake of an inspected tunnel, as for a request head. */
  readonly headersTimeoutMs: number;
}

/** What the tunnels need of the proxy server. */
export interface TunnelHost {
  readonly deps: ExchangeDeps;
  readonly limits: TunnelLimits;
  /** The TLS side of an inspected tunnel belongs to the same listener and session as its socket. */
  adopt(tlsSocket: tls.TLSSocket, socket: net.Socket, context: TunnelContext): void;
  /** Serves the decrypted requests of an inspected tunnel once its handshake passed. */
  serve(tlsSocket: tls.TLSSocket, context: TunnelContext): void;
}

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

/** An authenticated CONNECT: parsed, held to the session's limits, decided, then opened. */
export function openTunnel(host: TunnelHost, session: ProxySession, url: string | undefined, socket: net.Socket, head: Buffer): void {
  const ex = new Exchange(host.deps, session, 'tunnel', 'CONNECT', 'https', { socket });
  const authority = parseAuthority(url, null);
  if (authority) ex.target(authority.host, authority.port, '');
  else ex.target('-', 0, (url ?? '').slice(0, 300));
  if (!ex.withinLimits({ connection: true })) return;
  if (!authority) {
    ex.refuse(400, 'invalid_host', 'Airlock: CONNECT needs host:port.', 'bad CONNECT target');
    return;
  }
  if (head.length > 0) socket.unshift(head);
  // The in-session endpoint is the proxy's own: no rule decides it and nothing dials it.
  if (authority.host === INTERNAL_HOST) {
    internalTunnel(host, ex, socket, authority);
    return;
  }
  // Denied before any upstream connection: with a bare 403 (its reason phrase names host,
  // policy and where to ask), or, where the notice CA can speak for the host, inside a tunnel
  // that only ever answers that refusal.
  const decision = ex.consider({ phase: 'connect', scheme: 'https', host: authority.host, port: authority.port });
  if (decision.action === 'deny') {
    if (noticeCaFor(session, authority.host)) noticeTunnel(host, ex, socket, authority);
    else ex.refuse(403, decision.reason, decision.message);
    return;
  }
  if (decision.inspect) interceptTunnel(host, ex, socket, authority);
  else blindTunnel(host, ex, socket, authority);
}

function interceptTunnel(host: TunnelHost, ex: Exchange, socket: net.Socket, connect: Authority): void {
  const { session } = ex;
  const started = { read: socket.bytesRead, written: socket.bytesWritten };
  Promise.resolve(session.ca.contextFor(connect.host)).then(
    (secureContext) => {
      if (socket.destroyed) {
        ex.end(499, 'client_closed');
        return;
      }
      socket.write(ESTABLISHED);
      const context: TunnelContext = { session, connect, sni: null };
      const tlsSocket = new tls.TLSSocket(socket, {
        isServer: true,
        secureContext,
        ALPNProtocols: ['http/1.1'],
        SNICallback: (servername, cb) => {
          const sni = (servername || '').toLowerCase().replace(/\.$/, '');
          context.sni = sni;
          // Present the CONNECT host's leaf unless the client names another allowed host; a
          // differing Host/SNI is refused per request (domain fronting), not by handshake.
          if (sni === connect.host) return cb(null, secureContext);
          const other = ex.judge({ phase: 'connect', scheme: 'https', host: sni, port: connect.port });
          if (other.action === 'deny') return cb(null, secureContext);
          Promise.resolve(session.ca.contextFor(sni)).then(
            (ctx) => cb(null, ctx),
            () => cb(null, secureContext),
          );
        },
      });
      host.adopt(tlsSocket, socket, context);
      let tlsError: string | undefined;
      let withoutSni = false;
      tlsSocket.on('error', (err: NodeJS.ErrnoException) => {
        tlsError = err.code ?? 'tls_error';
        tlsSocket.destroy();
      });
      // The handshake gets the same bound as a request head: a ClientHello trickled a byte at
      // a time would otherwise keep resetting the idle timer below forever.
      const handshakeTimer = setTimeout(() => {
        tlsError = 'tls_handshake_timeout';
        tlsSocket.destroy();
      }, host.limits.headersTimeoutMs);
      tlsSocket.once('close', () => clearTimeout(handshakeTimer));
      // The raw socket came from the HTTP server half-open capable, and the TLS socket inherits
      // that: a client hanging up before the handshake is done would leave the tunnel (and its
      // connection slot) open. Until the HTTP server takes over below, EOF ends the tunnel.
      const onEarlyEnd = () => tlsSocket.destroy();
      tlsSocket.once('end', onEarlyEnd);
      tlsSocket.once('secure', () => {
        clearTimeout(handshakeTimer);
        tlsSocket.off('end', onEarlyEnd);
        // A client that names no server cannot be held to the CONNECT host: refuse. (IP
        // literals carry no SNI by design; their leaf is for the address itself.)
        if (!(tlsSocket as tls.TLSSocket & { servername?: string | false }).servername && net.isIP(connect.host) === 0) {
          withoutSni = true;
          tlsSocket.destroy();
          return;
        }
        // Only now is the decrypted stream read (as https.Server does): a request sent along
        // with the client's Finished is never parsed, let alone forwarded, before the checks
        // above have run. Until then it waits, unread, in the TLS socket.
        host.serve(tlsSocket, context);
      });
      // Idle tunnels (slowloris, forgotten connections) are closed.
      tlsSocket.setTimeout(host.limits.idleTimeoutMs, () => tlsSocket.destroy());
      tlsSocket.on('close', () => {
        socket.destroy();
        ex.bytes(socket.bytesRead - started.read, socket.bytesWritten - started.written);
        if (withoutSni) ex.refused(400, 'bad_request', 'TLS without SNI');
        else ex.end(200, tlsError);
      });
    },
    (err: Error) => {
      host.deps.log.error({ err: err.message, host: connect.host }, 'leaf certificate minting failed');
      ex.refuse(502, 'upstream_error', 'Airlock: could not prepare a certificate for this host.', 'certificate minting failed');
    },
  );
}

/**
 * A denied CONNECT answered inside TLS: every request gets the same 403 with a plain-text body.
 * Audited once, as the denied CONNECT; nothing inside is forwarded or decided again.
 */
function noticeTunnel(host: TunnelHost, ex: Exchange, socket: net.Socket, connect: Authority): void {
  const denial = ex.refusal()!;
  let answered = 0;
  answeredTunnel(host, ex, socket, connect, ex.session.notice!.contextFor(connect.host), {
    respond: (req, res) => {
      answered++;
      answerDenied(denial, req, res);
    },
    refuseRaw: (req) => {
      answered++;
      return rawDenied(denial, req);
    },
    closed: (up, down, tlsError) => {
      ex.bytes(up, down);
      ex.refused(403, denial.reason, tlsError ?? `answered inside the tunnel (${answered} requests)`);
    },
    gone: () => ex.refused(403, denial.reason, 'client_closed'),
    noLeaf: () => ex.refuse(403, denial.reason, denial.message),
  });
}

/** CONNECT airlock.internal:443: the endpoint over https, under a notice leaf. */
function internalTunnel(host: TunnelHost, ex: Exchange, socket: net.Socket, connect: Authority): void {
  const notice = ex.session.notice;
  if (!notice || !noticeCaFor(ex.session, INTERNAL_HOST)) {
    ex.refuse(400, 'bad_request', `Airlock: use http://${INTERNAL_HOST}/ in this session.`, 'no notice CA for the endpoint');
    return;
  }
  ex.answeredHere('airlock.internal');
  answeredTunnel(host, ex, socket, connect, notice.contextFor(INTERNAL_HOST), {
    respond: (req, res) => serveInternal(host.deps, { req, res, session: ex.session, scheme: 'https', inTunnel: true }),
    refuseRaw: () => rawResponse(400, 'Bad Request', `Airlock: ${INTERNAL_HOST} answers plain requests only.\n`),
    closed: (up, down, tlsError) => {
      ex.bytes(up, down);
      ex.end(200, tlsError);
    },
    gone: () => ex.end(499, 'client_closed'),
    noLeaf: () => ex.refuse(502, 'upstream_error', 'Airlock: could not prepare a certificate.', 'certificate minting failed'),
  });
}

function blindTunnel(host: TunnelHost, ex: Exchange, socket: net.Socket, connect: Authority): void {
  // Recorded before the upstream is dialled; unrecordable, it never is.
  if (!ex.admit()) return;
  const aborter = new AbortController();
  socket.once('close', () => aborter.abort());
  host.deps.upstream.connectTcp(connect.host, connect.port, aborter.signal).then(
    (upstream) => {
      if (socket.destroyed) {
        upstream.destroy();
        ex.end(499, 'client_closed');
        return;
      }
      socket.write(ESTABLISHED);
      const started = { read: socket.bytesRead, written: socket.bytesWritten };
      socket.setTimeout(host.limits.idleTimeoutMs, () => socket.destroy());
      upstream.on('error', () => upstream.destroy());
      socket.pipe(upstream);
      upstream.pipe(socket);
      const done = () => {
        socket.destroy();
        upstream.destroy();
      };
      upstream.once('close', done);
      socket.once('close', () => {
        done();
        ex.bytes(socket.bytesRead - started.read, socket.bytesWritten - started.written);
        ex.end(200);
      });
    },
    (err: Error & { code?: string }) => ex.fail(err),
  );
}

/** A CONNECT relayed inside a tunnel: decided like any CONNECT, and never tunnelled twice. */
export function refuseInnerConnect(deps: ExchangeDeps, context: TunnelContext, url: string | undefined, socket: Duplex): void {
  const ex = new Exchange(deps, context.session, 'tunnel', 'CONNECT', 'https', { socket });
  const authority = parseAuthority(url, null);
  ex.target(authority?.host ?? '-', authority?.port ?? 0, authority ? '' : (url ?? '').slice(0, 300));
  const decision = authority ? ex.consider({ phase: 'connect', scheme: 'https', host: authority.host, port: authority.port }) : null;
  const denied = decision?.action === 'deny' ? decision : null;
  ex.refuse(403, denied?.reason ?? 'bad_request', denied?.message ?? 'CONNECT inside a tunnel is not supported', 'CONNECT inside a tunnel');
}

/**
 * A request inside a tunnel that the parser refused (smuggling attempts, header floods) or that
 * timed out belongs to the tunnel's session: answered and audited. On a listener no session is
 * known yet (the head never parsed), so it is answered and only the operational log has it.
 */
export function answerClientError(deps: ExchangeDeps, context: TunnelContext | undefined, socket: Duplex, code: string): void {
  const err = Object.assign(new Error(`client error ${code}`), { code });
  if (!context) {
    const failure = failureOf(err, { host: '-', port: 0 });
    answerRaw(socket, failure.status, failure.message + '\n');
    return;
  }
  const ex = new Exchange(deps, context.session, 'request', '-', 'https', { socket });
  ex.target(context.connect.host, context.connect.port, '');
  ex.fail(err);
}
