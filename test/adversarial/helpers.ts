// Tools for the adversarial tests: a dial recorder that refuses (and records) any address that is
// not on this machine, a resolver the test controls (never real DNS), raw byte-level clients that
// take the proxy's host as a parameter, and a "well-behaved client" run alongside every attack.
//
// Hard rule of these tests: connections are only ever opened on this machine. Hostile addresses
// (169.254.169.254, 10.x, fd00::/8, ...) appear only as lookup answers; if a broken destination
// guard ever let one through, the dial recorder throws before any socket is created.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Endpoint } from '../../src/proxy/upstream.js';
import { parsePolicy } from '../../src/policy/index.js';
import { parseAuditLines } from '../../src/audit/report.js';
import type { Session } from '../../src/sessions/session.js';
import { createTestPki, rmTmp, startAirlock, startHttpUpstream, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, AirlockOptions, AuditLine, TestPki, TestUpstream, UpstreamOptions } from '../helpers/servers.js';
import { rawConnect } from '../helpers/clients.js';
import type { RawConnectResult } from '../helpers/clients.js';

/** mulberry32: a tiny seeded PRNG (uniform in [0, 1)), so a fuzz failure can be replayed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- dial recorder and resolver

/** True for addresses on this machine's loopback: 127.0.0.0/8, ::1, ::ffff:127.x.x.x. */
export function isLoopback(address: string): boolean {
  const a = address.toLowerCase();
  if (a === '::1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

export interface Dial {
  readonly host: string;
  readonly address: string;
  readonly port: number;
}

export interface DialRecorder {
  /** Pass as startAirlock's `beforeDial`. */
  readonly beforeDial: (endpoint: Endpoint, host: string) => void;
  /** Every endpoint the proxy was about to dial. */
  readonly dials: Dial[];
  /** Dials the recorder refused (non-loopback addresses): any entry here means the guard failed. */
  readonly refused: Dial[];
  /** Dials for one host name. */
  forHost(host: string): Dial[];
}

/**
 * A beforeDial hook: records every dial, lets loopback dials (to the test's own local servers)
 * through, and THROWS for anything else so a broken guard cannot send a packet off this machine.
 */
export function dialRecorder(): DialRecorder {
  const dials: Dial[] = [];
  const refused: Dial[] = [];
  return {
    dials,
    refused,
    beforeDial(endpoint, host) {
      const dial = { host, address: endpoint.address, port: endpoint.port };
      dials.push(dial);
      if (!isLoopback(endpoint.address)) {
        refused.push(dial);
        throw Object.assign(new Error(`test dial recorder: refusing to dial off-machine address ${endpoint.address}`), { code: 'ETESTREFUSED' });
      }
    },
    forHost: (host) => dials.filter((d) => d.host === host),
  };
}

export interface FakeDns {
  /** Pass as startAirlock's `lookup`. */
  readonly lookup: (host: string) => Promise<string[]>;
  /** Names asked for, in order. */
  readonly queries: string[];
  readonly answers: Map<string, string[]>;
}

/** A resolver the test controls: names in `answers` resolve to those addresses, others ENOTFOUND. */
export function fakeDns(answers: Record<string, string[]> = {}): FakeDns {
  const map = new Map(Object.entries(answers));
  const queries: string[] = [];
  return {
    answers: map,
    queries,
    async lookup(host) {
      queries.push(host);
      const found = map.get(host);
      if (!found) throw Object.assign(new Error(`fake dns: ${host} not found`), { code: 'ENOTFOUND' });
      return [...found];
    },
  };
}

// ---------------------------------------------------------------- local target servers

export interface CountingServer {
  readonly host: string;
  readonly port: number;
  /** TCP connections accepted. */
  readonly connections: number;
  /** Request URLs received (HTTP servers only). */
  readonly urls: string[];
  close(): Promise<void>;
}

/** A plain HTTP server on host:port (port 0 = any) that counts connections and answers 200 "reached". */
export function startCountingHttp(host: string, port = 0): Promise<CountingServer> {
  let connections = 0;
  const urls: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    urls.push(req.url ?? '');
    req.resume();
    req.on('end', () => res.end('reached\n'));
  });
  server.on('connection', (s: net.Socket) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    urls.push(req.url ?? '');
    socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      resolve({
        host,
        port: (server.address() as net.AddressInfo).port,
        get connections() {
          return connections;
        },
        urls,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

// ---------------------------------------------------------------- raw clients

export interface ProxyAddress {
  readonly host: string;
  readonly port: number;
  /** "Basic ..." for the session the client speaks for. */
  readonly auth: string;
}

export function basic(user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

export function connectTcp(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** A complete HTTP/1.x response at the start of `text` (head + Content-Length body), or null. */
export function parseResponse(text: string): { status: number; head: string; body: string } | null {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return null;
  const head = text.slice(0, end);
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const body = text.slice(end + 4);
  if (length && Buffer.byteLength(body) < Number(length[1])) return null;
  return { status, head, body: length ? body.slice(0, Number(length[1])) : body };
}

export interface Exchange {
  /** Everything received (latin1). */
  readonly text: string;
  /** Status of the first response, 0 if none arrived. */
  readonly status: number;
  /** The peer closed (or reset) the connection. */
  readonly closed: boolean;
  /** ms until the exchange ended. */
  readonly ms: number;
}

/**
 * Writes `data` (a string, a buffer, or a list of pieces written one after another) and reads
 * until the peer closes, or — with `untilResponse` — until one complete response has arrived.
 */
export function exchange(
  socket: net.Socket | tls.TLSSocket,
  data: string | Buffer | readonly (string | Buffer)[],
  opts: { untilResponse?: boolean; timeoutMs?: number } = {},
): Promise<Exchange> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      resolve({ text, status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0), closed, ms: performance.now() - started });
    };
    const timer = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(new Error(`no answer within ${opts.timeoutMs ?? 10_000} ms; got ${JSON.stringify(text.slice(0, 500))}`));
    }, opts.timeoutMs ?? 10_000);
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (opts.untilResponse && parseResponse(text)) finish(false);
    };
    socket.on('data', onData);
    socket.once('close', () => finish(true));
    socket.on('error', () => {});
    socket.resume();
    const pieces = typeof data === 'string' || Buffer.isBuffer(data) ? [data] : data;
    for (const piece of pieces) if (!socket.destroyed) socket.write(piece);
  });
}

/** Opens a connection to the proxy, sends `data`, reads to close (or first response). */
export async function send(proxy: Pick<ProxyAddress, 'host' | 'port'>, data: string | Buffer | readonly (string | Buffer)[], opts: { untilResponse?: boolean; timeoutMs?: number } = {}): Promise<Exchange> {
  const socket = await connectTcp(proxy.host, proxy.port);
  try {
    return await exchange(socket, data, opts);
  } finally {
    socket.destroy();
  }
}

export type ConnectResult = RawConnectResult;

/** `CONNECT target` to the proxy; for a 200 the socket is handed back paused, tunnel open. */
export function proxyConnect(proxy: ProxyAddress, target: string, extraHeaders: string[] = [], auth: string | null = proxy.auth): Promise<ConnectResult> {
  return rawConnect({ proxyHost: proxy.host, proxyPort: proxy.port, target, proxyAuthorization: auth ?? undefined, extraHeaders });
}

/** CONNECT (expects 200), then TLS inside the tunnel. */
export async function tunnelTls(
  proxy: ProxyAddress,
  target: string,
  opts: { servername?: string; ca: string | string[]; checkServerIdentity?: tls.ConnectionOptions['checkServerIdentity'] },
): Promise<tls.TLSSocket> {
  const connect = await proxyConnect(proxy, target);
  if (connect.status !== 200) throw new Error(`CONNECT ${target} answered ${connect.status}: ${connect.body}`);
  return await new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: connect.socket,
      servername: opts.servername ?? target.replace(/:\d+$/, ''),
      ca: opts.ca,
      ALPNProtocols: ['http/1.1'],
      ...(opts.checkServerIdentity ? { checkServerIdentity: opts.checkServerIdentity } : {}),
    });
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** One plain-HTTP proxy request (absolute URI) via node:http; resolves with status and body. */
export function proxyGet(proxy: ProxyAddress, url: string, opts: { auth?: string; method?: string; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: proxy.host,
      port: proxy.port,
      method: opts.method ?? 'GET',
      path: url,
      agent: false,
      headers: { Host: u.host, 'Proxy-Authorization': opts.auth ?? proxy.auth, ...opts.headers },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.end(opts.body);
  });
}

/**
 * Runs `attack` with a well-behaved request to an allowed local upstream started alongside it,
 * and checks that request was served (200 from the upstream) while the attack was in progress.
 */
export async function alongside<T>(proxy: ProxyAddress, goodUrl: string, attack: () => Promise<T>, expectBody = ''): Promise<T> {
  const attacking = attack();
  const good = (async () => {
    await new Promise((r) => setImmediate(r));
    return await proxyGet(proxy, goodUrl);
  })();
  const [result, served] = await Promise.all([attacking, good]);
  if (served.status !== 200 || !served.body.includes(expectBody)) {
    throw new Error(`the well-behaved request ${goodUrl} was not served during the attack: ${served.status} ${served.body.slice(0, 300)}`);
  }
  return result;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------- sessions and their audit logs

export interface SessionAudit {
  lines(): Promise<AuditLine[]>;
  waitFor(pred: (line: AuditLine) => boolean, timeoutMs?: number): Promise<AuditLine>;
}

/** Reads any session's audit log (startAirlock's handle only reads its own session's). */
export function sessionAudit(session: Session): SessionAudit {
  const file = join(session.dir, 'audit.jsonl');
  const lines = async () => {
    session.audit.flush();
    for (let i = 0; i < 20 && !existsSync(file); i++) await sleep(25);
    return existsSync(file) ? parseAuditLines(readFileSync(file, 'utf8')) : [];
  };
  return {
    lines,
    async waitFor(pred, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = (await lines()).find(pred);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching audit line within ${timeoutMs} ms; have:\n${JSON.stringify(await lines(), null, 1)}`);
        await sleep(25);
      }
    },
  };
}

/** A second session on the same runtime, with its own credential (and, if given, its own policy). */
export async function extraSession(airlock: AirlockHandle, policyText?: string): Promise<{ session: Session; proxy: ProxyAddress; audit: SessionAudit }> {
  const policy = policyText === undefined ? airlock.session.policy : parsePolicy(policyText, 'extra-session.yaml');
  const session = await airlock.runtime.sessions.create(policy);
  const host = new URL(airlock.proxyUrl).hostname.replace(/^\[|\]$/g, '');
  return { session, proxy: { host, port: airlock.port, auth: basic(session.id, session.token) }, audit: sessionAudit(session) };
}

/**
 * An in-process Airlock for attack tests: name resolution only through a fake resolver (never
 * real DNS) and every dial recorded, so a broken guard can never send a packet off this machine.
 */
export async function startGuardedAirlock(
  opts: Omit<AirlockOptions, 'lookup' | 'beforeDial'>,
): Promise<{ airlock: AirlockHandle; dials: DialRecorder; proxy: ProxyAddress; bundle: string }> {
  const dials = dialRecorder();
  const airlock = await startAirlock({ ...opts, lookup: fakeDns().lookup, beforeDial: dials.beforeDial });
  return { airlock, dials, proxy: proxyOf(airlock), bundle: readFileSync(airlock.bundlePath, 'utf8') };
}

export interface GuardedRig {
  readonly pki: TestPki;
  /** good.test on port 80. */
  readonly plainUp: TestUpstream;
  /** Every name in `tlsNames` on port 443. */
  readonly tlsUp: TestUpstream;
  readonly airlock: AirlockHandle;
  readonly dials: DialRecorder;
  readonly proxy: ProxyAddress;
  readonly bundle: string;
  close(): Promise<void>;
}

/**
 * The set-up most attack tests share: good.test served over plain HTTP and one TLS upstream for
 * `tlsNames` (default good.test), both behind a guarded Airlock; close() undoes all of it.
 */
export async function startGuardedRig(opts: {
  policy: string;
  tlsNames?: readonly string[];
  plain?: UpstreamOptions;
  tls?: UpstreamOptions;
  limits?: AirlockOptions['limits'];
}): Promise<GuardedRig> {
  const tlsNames = opts.tlsNames ?? ['good.test'];
  const pki = await createTestPki();
  const opened: { close(): Promise<void> }[] = [];
  try {
    const plainUp = await startHttpUpstream(opts.plain);
    opened.push(plainUp);
    const tlsUp = await startHttpsUpstream({ ...opts.tls, pki, names: tlsNames });
    opened.push(tlsUp);
    const guarded = await startGuardedAirlock({
      policy: opts.policy,
      resolve: { 'good.test:80': plainUp.port, ...Object.fromEntries(tlsNames.map((n) => [`${n}:443`, tlsUp.port])) },
      upstreamCa: [pki.caPem],
      ...(opts.limits ? { limits: opts.limits } : {}),
    });
    return {
      pki,
      plainUp,
      tlsUp,
      ...guarded,
      close: async () => {
        await guarded.airlock.close();
        await Promise.all(opened.map((o) => o.close()));
        rmTmp(pki.dir);
      },
    };
  } catch (err) {
    await Promise.all(opened.map((o) => o.close()));
    rmTmp(pki.dir);
    throw err;
  }
}

/** The handle's own session as a ProxyAddress. */
export function proxyOf(airlock: AirlockHandle): ProxyAddress {
  const host = new URL(airlock.proxyUrl).hostname.replace(/^\[|\]$/g, '');
  return { host, port: airlock.port, auth: airlock.proxyAuthorization };
}

/** A raw WebSocket upgrade request head (absolute-form for the plain proxy, origin-form in a tunnel). */
export function upgradeHead(target: string, host: string, auth?: string): string {
  return [
    `GET ${target} HTTP/1.1`,
    `Host: ${host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    ...(auth ? [`Proxy-Authorization: ${auth}`] : []),
    '',
    '',
  ].join('\r\n');
}
