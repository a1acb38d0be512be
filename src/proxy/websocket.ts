// WebSocket upgrades on allowed hosts: decided like any request, then relayed message by message.
// The upstream handshake happens first, so the subprotocol the server picks is the one the client gets.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { admit } from './forward.js';
import { DestinationBlocked } from './upstream.js';
import type { Exchange, ForwardDeps } from './forward.js';
import { forwardRequestHeaders } from './headers.js';
import { denyBody, endWith, rawResponse } from './responses.js';
import { outcomeOf, RequestRecord } from './record.js';
import { usageOf } from './usage.js';

const chosenProtocol = new WeakMap<http.IncomingMessage, string | false>();

const server = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  handleProtocols: (_offered, req) => chosenProtocol.get(req) ?? false,
});

// ws sets these itself for the upstream handshake.
const HANDSHAKE_HEADERS = new Set([
  'host',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
]);

// Close codes that may not be sent on the wire (RFC 6455 7.4.1).
function sendableCode(code: number): number | undefined {
  return code === 1005 || code === 1006 || code === 1015 ? undefined : code;
}

export function relayWebSocket(deps: ForwardDeps, x: Exchange & { req: http.IncomingMessage; socket: Duplex; head: Buffer }): void {
  const { req, socket, session } = x;
  socket.on('error', () => socket.destroy());
  const record = new RequestRecord(session, 'websocket', req.method ?? 'GET', x.scheme);
  const fail = (status: number, reason: string, body: string, rule: string | null, action: 'deny' | 'allow' = 'deny') => {
    record.finish(status, { action, rule, reason: reason as never });
    endWith(socket, rawResponse(status, http.STATUS_CODES[status] ?? 'Error', body));
  };

  const admitted = admit(deps, x, record);
  if ('refusal' in admitted) {
    const { refusal } = admitted;
    const body =
      refusal.status === 403
        ? denyBody(deps.denyInfo(session, record.authority, { rule: admitted.decision.rule, reason: refusal.reason, message: refusal.message }))
        : refusal.message + '\n';
    fail(refusal.status, refusal.reason, body, admitted.decision.rule);
    return;
  }
  const { target, decision } = admitted;
  // Validate the client's handshake before any upstream is opened with credentials in it: ws
  // would abort an invalid one without a callback, leaving that upstream connection behind.
  const key = req.headers['sec-websocket-key'];
  const version = req.headers['sec-websocket-version'];
  if (
    req.method !== 'GET' ||
    String(req.headers.upgrade).toLowerCase() !== 'websocket' ||
    typeof key !== 'string' ||
    !/^[+/0-9A-Za-z]{22}==$/.test(key) ||
    (version !== '13' && version !== '8')
  ) {
    fail(400, 'bad_request', 'Airlock: only WebSocket upgrades (GET, Upgrade: websocket, a valid key, version 13) are relayed.\n', decision.rule);
    return;
  }
  // Same per-session limits as any request; the upgraded connection holds a connection slot.
  const usage = usageOf(session);
  if (!usage.takeRequest() || !usage.openConnection()) {
    fail(429, 'rate_limited', 'Airlock: this session is over its connection or request-rate limit; retry later.\n', decision.rule);
    return;
  }
  socket.once('close', () => usage.closeConnection());
  let detail: string | undefined;
  // Messages from a host that may hold a secret are scrubbed like response bodies.
  const scrub = session.credentials.empty
    ? null
    : session.credentials.scrubResponse({
        host: target.host,
        status: 101,
        headers: {},
        hasBody: true,
        onScrub: () => {
          detail = 'secret_scrubbed';
        },
      });
  const forwarded = forwardRequestHeaders(req.rawHeaders, req.headers.connection);
  const headers: string[] = [];
  for (let i = 0; i < forwarded.length; i += 2) {
    if (!HANDSHAKE_HEADERS.has(forwarded[i]!.toLowerCase())) headers.push(forwarded[i]!, forwarded[i + 1]!);
  }

  const start = async () => {
    let finalHeaders = headers;
    let path = target.forward;
    if (!session.credentials.empty) {
      const swap = await session.credentials.swapRequest({
        scheme: x.scheme,
        host: target.host,
        port: target.port,
        pathWithQuery: path,
        headers,
        contentType: undefined,
      });
      if (swap.kind === 'misuse') {
        const message = `credential "${swap.credential}" placeholder found in ${swap.where}: ${swap.why}`;
        record.finish(403, { action: 'deny', rule: decision.rule, reason: 'credential_misuse' }, `${swap.credential} in ${swap.where}`);
        endWith(socket, rawResponse(403, 'Forbidden', denyBody(deps.denyInfo(session, target, { rule: decision.rule, reason: 'credential_misuse', message }))));
        return;
      }
      finalHeaders = swap.headers;
      path = swap.pathWithQuery;
      record.usedCredentials(swap.used);
    }
    const endpoint = await deps.upstream.endpointFor(target.host, target.port);
    const secure = x.scheme === 'https';
    const hostInUrl = target.host.includes(':') ? `[${target.host}]` : target.host;
    const offered = (req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    const headerObject: Record<string, string> = {};
    for (let i = 0; i < finalHeaders.length; i += 2) headerObject[finalHeaders[i]!] = finalHeaders[i + 1]!;
    const upstream = new WebSocket(`${secure ? 'wss' : 'ws'}://${hostInUrl}:${target.port}${path}`, offered, {
      headers: headerObject,
      perMessageDeflate: false,
      handshakeTimeout: 15_000,
      followRedirects: false,
      // Dial the address that was checked, verify TLS against the name.
      createConnection: (opts: tls.ConnectionOptions & net.NetConnectOpts) =>
        secure
          ? tls.connect({ ...opts, host: endpoint.address, port: endpoint.port, ...deps.upstream.tlsOptionsFor(target.host) })
          : net.connect({ host: endpoint.address, port: endpoint.port }),
    } as WebSocket.ClientOptions);

    let up = 0;
    let down = 0;
    upstream.on('unexpected-response', (_r, response) => {
      const status = response.statusCode ?? 502;
      response.resume();
      record.bytes(0, 0);
      record.finish(status, outcomeOf(decision), 'upstream refused the upgrade');
      endWith(socket, rawResponse(status, response.statusMessage ?? 'Error', `Airlock: upstream refused the WebSocket upgrade (${status}).\n`));
      upstream.terminate();
    });
    upstream.on('error', (err: Error & { code?: string }) => {
      if (upstream.readyState === WebSocket.CONNECTING || !chosenProtocol.has(req)) {
        fail(502, 'upstream_error', `Airlock: upstream ${target.host}:${target.port} failed (${err.code ?? 'error'}).\n`, decision.rule, 'allow');
      }
    });
    // The client leaving during the upstream handshake ends that handshake too.
    socket.once('close', () => {
      if (upstream.readyState !== WebSocket.CONNECTING) return;
      record.finish(499, outcomeOf(decision), 'client_closed');
      upstream.terminate();
    });
    upstream.on('open', () => {
      chosenProtocol.set(req, upstream.protocol || false);
      if (socket.destroyed) {
        upstream.terminate();
        record.finish(499, outcomeOf(decision), 'client_closed');
        return;
      }
      server.handleUpgrade(req, socket, x.head, (client) => {
        client.on('message', (data: RawData, isBinary) => {
          up += byteLength(data);
          if (!usage.addUpload(byteLength(data))) {
            detail = 'upload_budget_exceeded';
            client.close(1008, 'upload budget exceeded');
            return;
          }
          forward(client, upstream, data, isBinary);
        });
        upstream.on('message', (data: RawData, isBinary) => {
          down += byteLength(data);
          const out = scrub?.scrubWhole ? scrub.scrubWhole(toBuffer(data)) : data;
          forward(upstream, client, out, isBinary);
        });
        client.on('close', (code, reason) => upstream.close(sendableCode(code), reason));
        upstream.on('close', (code, reason) => client.close(sendableCode(code), reason));
        client.on('error', () => client.terminate());
        upstream.on('error', () => client.terminate());
        client.once('close', () => {
          upstream.terminate();
          record.bytes(up, down);
          record.finish(101, outcomeOf(decision), detail);
        });
      });
    });
  };
  start().catch((err: Error & { code?: string }) => {
    if (err instanceof DestinationBlocked) {
      const refusal = { rule: decision.rule, reason: 'destination_blocked' as const, message: err.message };
      record.finish(403, { action: 'deny', rule: decision.rule, reason: 'destination_blocked' }, err.message);
      endWith(socket, rawResponse(403, 'Forbidden', denyBody(deps.denyInfo(session, target, refusal))));
      return;
    }
    fail(502, 'upstream_error', `Airlock: upstream ${target.host}:${target.port} failed (${err.code ?? err.message}).\n`, decision.rule, 'allow');
  });
}

function byteLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return (data as Buffer | ArrayBuffer).byteLength;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data as ArrayBuffer);
}

// Backpressure between the two sides: a sender faster than its receiver is paused while more than
// HIGH_WATER bytes wait to be written, and resumed once the backlog drains below LOW_WATER.
const HIGH_WATER = 1 << 20;
const LOW_WATER = 1 << 18;

function forward(from: WebSocket, to: WebSocket, data: RawData | Buffer, isBinary: boolean): void {
  if (to.readyState !== WebSocket.OPEN) return;
  to.send(data, { binary: isBinary }, () => {
    if (from.isPaused && to.bufferedAmount < LOW_WATER) from.resume();
  });
  if (to.bufferedAmount > HIGH_WATER) from.pause();
}
