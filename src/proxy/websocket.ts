// WebSocket upgrades on allowed hosts: decided like any request, then relayed message by message.
// The upstream handshake happens first, so the subprotocol the server picks is the one the client gets.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import type { RawData, WebSocketServer } from 'ws';
import { enter } from './entrance.js';
import type { CheckedTarget, Incoming } from './entrance.js';
import { Exchange } from './exchange.js';
import type { ExchangeDeps, Forward } from './exchange.js';
import { forwardRequestHeaders } from './headers.js';
import { usageOf } from './usage.js';
import { HOLD_WINDOW } from '../credentials/replace-stream.js';

const chosenProtocol = new WeakMap<http.IncomingMessage, string | false>();

// ws loads at the first upgrade, not with the proxy: most sessions never open a WebSocket, and
// a command's start-up should not wait for it (ARCHITECTURE.md, Start-up).
let wsModule: Promise<{ WebSocket: typeof WebSocket; server: WebSocketServer }> | undefined;
function loadWs(): Promise<{ WebSocket: typeof WebSocket; server: WebSocketServer }> {
  return (wsModule ??= import('ws').then(({ default: WebSocket, WebSocketServer }) => ({
    WebSocket,
    server: new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      handleProtocols: (_offered, req) => chosenProtocol.get(req) ?? false,
    }),
  })));
}

// ws sets these itself for the upstream handshake. The subprotocol list goes through the
// credential swap first (clients that send a token as a subprotocol), then to ws.
const HANDSHAKE_HEADERS = new Set(['host', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions']);
const PROTOCOL_HEADER = 'sec-websocket-protocol';

function protocolList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

// Close codes that may not be sent on the wire (RFC 6455 7.4.1).
function sendableCode(code: number): number | undefined {
  return code === 1005 || code === 1006 || code === 1015 ? undefined : code;
}

/** An upgrade request, with the socket Node's server handed over and the bytes read past its head. */
export type UpgradeIn = Incoming & { readonly req: http.IncomingMessage; readonly socket: Duplex; readonly head: Buffer };

export function relayWebSocket(deps: ExchangeDeps, x: UpgradeIn): void {
  const { req, socket, session } = x;
  socket.on('error', () => socket.destroy());
  const ex = new Exchange(deps, session, 'websocket', req.method ?? 'GET', x.scheme, { socket });
  // The upgraded connection holds a connection slot, in a tunnel too.
  const admitted = enter(ex, x, { connection: true });
  if (!admitted) return;
  const { target } = admitted;
  // JSON-RPC over a WebSocket would carry tools/call past the mcp: rule's checks, which read
  // HTTP bodies and event streams: refused (in report mode, audited as would_deny).
  if (admitted.decision.mcp) {
    const message = `Airlock: WebSocket connections to ${target.host} are not allowed: ${admitted.decision.mcp.label} is an mcp: rule, and MCP is checked over HTTP only (streamable HTTP or HTTP+SSE)`;
    if (ex.policy.mode === 'enforce') {
      ex.refuse(403, 'mcp_not_allowed', `${message}. Connect with an HTTP transport.`, 'mcp: websocket upgrade');
      return;
    }
    ex.overrule('would_deny', 'mcp_not_allowed', 'mcp: websocket upgrade');
  }
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
    ex.refuse(400, 'bad_request', 'Airlock: only WebSocket upgrades (GET, Upgrade: websocket, a valid key, version 13) are relayed.');
    return;
  }
  const forwarded = forwardRequestHeaders(req.rawHeaders, req.headers.connection);
  const headers: string[] = [];
  for (let i = 0; i < forwarded.length; i += 2) {
    if (!HANDSHAKE_HEADERS.has(forwarded[i]!.toLowerCase())) headers.push(forwarded[i]!, forwarded[i + 1]!);
  }
  ex.swap({ scheme: x.scheme, host: target.host, port: target.port, pathWithQuery: target.forward, headers, contentType: undefined }, (swap) =>
    relay(deps, ex, x, target, swap).catch((err: Error & { code?: string }) => ex.fail(err)),
  );
}

/** Opens the upstream WebSocket with what the swap gave, then relays message by message. */
async function relay(deps: ExchangeDeps, ex: Exchange, x: UpgradeIn, target: CheckedTarget, swap: Forward): Promise<void> {
  const { req, socket, session } = x;
  const { WebSocket, server } = await loadWs();
  // Messages from a host that may hold a secret are scrubbed like response bodies; built after
  // the swap, so a value that rotated just now is among those scrubbed.
  const scrub = session.credentials.empty
    ? null
    : session.credentials.scrubResponse({
        host: target.host,
        status: 101,
        headers: {},
        hasBody: true,
        onScrub: () => ex.note('secret_scrubbed'),
        echoes: swap.echoes,
      });
  const endpoint = await deps.upstream.endpointFor(target.host, target.port);
  const secure = x.scheme === 'https';
  const hostInUrl = target.host.includes(':') ? `[${target.host}]` : target.host;
  // What the session offered, and the same list as sent upstream (a token swapped in).
  const offered = protocolList(req.headers[PROTOCOL_HEADER]);
  let sent: string[] = offered;
  const headerObject: Record<string, string> = {};
  const finalHeaders = swap.headers;
  for (let i = 0; i < finalHeaders.length; i += 2) {
    if (finalHeaders[i]!.toLowerCase() === PROTOCOL_HEADER) sent = protocolList(finalHeaders[i + 1]);
    else headerObject[finalHeaders[i]!] = finalHeaders[i + 1]!;
  }
  if (sent.length !== offered.length) sent = offered;
  // Recorded before the upstream is dialled; unrecordable, it never is.
  if (!ex.admit()) return;
  const upstream = new WebSocket(`${secure ? 'wss' : 'ws'}://${hostInUrl}:${target.port}${swap.pathWithQuery}`, sent, {
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
    // The standard phrase, not the upstream's: a bound host may put what it received there.
    ex.end(status, 'upstream refused the upgrade', `Airlock: upstream refused the WebSocket upgrade (${status}).\n`);
    upstream.terminate();
  });
  upstream.on('error', (err: Error & { code?: string }) => {
    if (upstream.readyState === WebSocket.CONNECTING || !chosenProtocol.has(req)) ex.fail(err);
  });
  // The client leaving during the upstream handshake ends that handshake too.
  socket.once('close', () => {
    if (upstream.readyState !== WebSocket.CONNECTING) return;
    ex.end(499, 'client_closed');
    upstream.terminate();
  });
  const usage = usageOf(session);
  upstream.on('open', () => {
    // The server echoes the protocol it chose: the session gets back what it offered.
    const chosen = sent.indexOf(upstream.protocol);
    chosenProtocol.set(req, chosen === -1 ? false : offered[chosen]!);
    if (socket.destroyed) {
      upstream.terminate();
      ex.end(499, 'client_closed');
      return;
    }
    server.handleUpgrade(req, socket, x.head, (client) => {
      client.on('message', (data: RawData, isBinary) => {
        up += byteLength(data);
        if (!usage.addUpload(byteLength(data))) {
          ex.note('upload_budget_exceeded');
          client.close(1008, 'upload budget exceeded');
          return;
        }
        forward(client, upstream, data, isBinary);
      });
      const held = scrub?.scrubAcross ? new HeldMessages(scrub.scrubAcross, (data, isBinary) => forward(upstream, client, data, isBinary)) : null;
      upstream.on('message', (data: RawData, isBinary) => {
        down += byteLength(data);
        if (held) held.message(toBuffer(data), isBinary);
        else forward(upstream, client, data, isBinary);
      });
      client.on('close', (code, reason) => upstream.close(sendableCode(code), reason));
      upstream.on('close', (code, reason) => {
        // A close reason can carry text too: scrubbed with whatever is still held.
        const scrubbed = held ? held.close(reason) : reason;
        client.close(sendableCode(code), scrubbed.length <= MAX_CLOSE_REASON ? scrubbed : undefined);
      });
      client.on('error', () => client.terminate());
      upstream.on('error', () => client.terminate());
      client.once('close', () => {
        upstream.terminate();
        ex.bytes(up, down);
        ex.end(101);
      });
    });
  });
}

// A message that ends in a character a secret (or its percent or base64 form) can hold waits up
// to this long for the next one, so a secret split between messages is caught whole.
const HOLD_MS = 50;
const TOKEN_END = /[A-Za-z0-9+/=_.~%:-]/;
// Bytes a close frame may carry as its reason (RFC 6455 5.5: 125 minus the code).
const MAX_CLOSE_REASON = 123;

/**
 * Scrubs messages from a host that may hold a secret, across message boundaries. While the last
 * message ends in a token character, the messages that hold the last HOLD_WINDOW bytes wait (at
 * most HOLD_MS) to be scrubbed together with what follows. Which messages wait depends only on
 * their lengths, their last character's class and time, never on the secret, so what is held
 * reveals nothing about it (holding a prefix of the secret would be a timing oracle).
 */
class HeldMessages {
  /** Messages waiting, as received (less what a needle from a sent message already took). */
  private held: { data: Buffer; isBinary: boolean }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly across: (parts: readonly Buffer[], found?: { part: number; end: number }[]) => Buffer[],
    private readonly send: (data: Buffer, isBinary: boolean) => void,
  ) {}

  message(data: Buffer, isBinary: boolean): void {
    const messages = [...this.held, { data, isBinary }];
    const found: { part: number; end: number }[] = [];
    const scrubbed = this.across(
      messages.map((m) => m.data),
      found,
    );
    // Keep the messages that reach into the last HOLD_WINDOW bytes, if the last one could end
    // inside a secret; they are scrubbed again, as received, with what follows.
    let keep = 0;
    if (data.length > 0 && TOKEN_END.test(String.fromCharCode(data[data.length - 1]!))) {
      for (let bytes = 0; keep < messages.length && bytes < HOLD_WINDOW; keep++) bytes += messages[messages.length - 1 - keep]!.data.length;
    }
    const release = messages.length - keep;
    for (let i = 0; i < release; i++) this.send(scrubbed[i]!, messages[i]!.isBinary);
    // What a needle from a sent message took of the held ones was replaced there: drop it.
    let taken = 0;
    for (const n of found) if (n.part < release) taken = Math.max(taken, n.end);
    let start = 0;
    for (let i = 0; i < release; i++) start += messages[i]!.data.length;
    this.held = messages.slice(release).map((m) => {
      const cut = Math.min(m.data.length, Math.max(0, taken - start));
      start += m.data.length;
      return { data: m.data.subarray(cut), isBinary: m.isBinary };
    });
    if (this.held.length === 0) this.stop();
    else this.timer ??= setTimeout(() => this.flush(), HOLD_MS);
  }

  /** Sends what is held, scrubbed. */
  flush(): void {
    this.close(Buffer.alloc(0));
  }

  /** The connection closes: what is held goes out, and the close reason is scrubbed with it. */
  close(reason: Buffer): Buffer {
    const parts = this.across([...this.held.map((m) => m.data), reason]);
    this.held.forEach((m, i) => this.send(parts[i]!, m.isBinary));
    this.held = [];
    this.stop();
    return parts.at(-1)!;
  }

  private stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
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
  if (to.readyState !== to.OPEN) return;
  to.send(data, { binary: isBinary }, () => {
    if (from.isPaused && to.bufferedAmount < LOW_WATER) from.resume();
  });
  if (to.bufferedAmount > HIGH_WATER) from.pause();
}
