// The in-session endpoint, http://airlock.internal/ (and https through CONNECT): answered by the
// proxy itself for the session whose proxy credential the request carries, never forwarded,
// resolved or dialled. It shows the session its own effective rules (names, never secret
// values), runs the same decide() a real request gets for a URL (`why`), and files an access
// request in the operator's inbox. Each request is one exchange with its audit line.
import type http from 'node:http';
import { decide } from '../policy/index.js';
import type { Decision, Policy } from '../policy/index.js';
import type { ProxySession, RequestAccess } from './context.js';
import { Exchange } from './exchange.js';
import type { ExchangeDeps } from './exchange.js';
import { INTERNAL_HOST } from './responses.js';
import { methodOverrides, normalisePath, parseAbsoluteUri } from './target.js';

/** Limits of POST /request-access: body size and a per-session rate. */
export const ACCESS_LIMITS = Object.freeze({ bodyBytes: 4096, perMinute: 10 });
const RULE = 'airlock.internal';

/** Whether a plain (absolute-form) request is for the endpoint. */
export function isInternalUrl(url: string | undefined): boolean {
  const target = parseAbsoluteUri(url ?? '');
  return target !== null && target.host === INTERNAL_HOST;
}

/** Access requests filed per session in the current minute (a fixed window, by session object). */
const filed = new WeakMap<ProxySession, { minute: number; count: number }>();

function takeAccessToken(session: ProxySession): boolean {
  const minute = Math.floor(Date.now() / 60_000);
  const entry = filed.get(session);
  if (!entry || entry.minute !== minute) {
    filed.set(session, { minute, count: 1 });
    return true;
  }
  return ++entry.count <= ACCESS_LIMITS.perMinute;
}

export interface InternalRequest {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly session: ProxySession;
  readonly scheme: 'http' | 'https';
  /** Inside a tunnel the tunnel holds the connection slot. */
  readonly inTunnel: boolean;
}

/** Serves one request to the endpoint, audited as answered by the proxy. */
export function serveInternal(deps: ExchangeDeps, x: InternalRequest): void {
  const access = deps.access;
  const { req, res, session } = x;
  const method = req.method ?? 'GET';
  const ex = new Exchange(deps, session, 'request', method, x.scheme, { res });
  const url = req.url ?? '/';
  const pathWithQuery = url.startsWith('/') ? url : (parseAbsoluteUri(url)?.pathWithQuery ?? '/');
  ex.target(INTERNAL_HOST, x.scheme === 'https' ? 443 : 80, pathWithQuery.slice(0, 2048));
  if (!ex.withinLimits({ connection: !x.inTunnel })) return;
  ex.answeredHere(RULE);
  const started = res.socket?.bytesWritten ?? 0;
  let bodyBytes = 0;
  req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
  ex.responding(
    () => [bodyBytes, (res.socket?.bytesWritten ?? started) - started],
    () => req.destroy(),
  );
  const q = pathWithQuery.indexOf('?');
  const path = q === -1 ? pathWithQuery : pathWithQuery.slice(0, q);
  const params = new URLSearchParams(q === -1 ? '' : pathWithQuery.slice(q + 1));
  const send = (status: number, body: unknown) => reply(res, status, body);
  if (path === '/request-access') {
    if (method !== 'POST') return send(405, { error: 'use POST with host, method, path and reason (form or JSON)' });
    if (!access) return send(503, { error: 'this proxy has no operator inbox' });
    return fileAccessRequest(req, res, session, access, send);
  }
  if (method !== 'GET' && method !== 'HEAD') return send(405, { error: 'only GET here; POST /request-access files a request' });
  drain(req);
  if (path === '/' || path === '') return send(200, help(session));
  if (path === '/rules') return send(200, rulesOf(session));
  if (path === '/why') return send(200, why(session.policy, params.get('url') ?? '', params.get('method') ?? 'GET'));
  return send(404, { error: `no such page; see http://${INTERNAL_HOST}/` });
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.destroyed || res.headersSent) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, {
    'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(text);
}

/** Reads (and drops) a request body the route has no use for, so keep-alive stays in step. */
function drain(req: http.IncomingMessage): void {
  req.resume();
}

function help(session: ProxySession): string {
  const p = session.policy;
  return [
    `Airlock: this session (${session.id}) reaches the network only through a proxy enforcing policy "${p.name}" (version ${p.digest}, ${p.mode} mode).`,
    'A request it refuses is a policy decision, not a network failure. From this session:',
    `  GET  http://${INTERNAL_HOST}/rules                         what this session may reach (JSON)`,
    `  GET  http://${INTERNAL_HOST}/why?method=GET&url=URL        what the policy says of a request, and why`,
    `  POST http://${INTERNAL_HOST}/request-access                ask the operator: host, method, path, reason`,
    `       e.g. curl -s http://${INTERNAL_HOST}/request-access -d host=api.example.com -d method=GET -d path=/v1/x -d reason='...'`,
    '',
  ].join('\n');
}

/** The effective rules: hosts, methods, paths, credential names and their hosts; no secrets, no sources. */
export function rulesOf(session: ProxySession): unknown {
  const p = session.policy;
  return {
    session: session.id,
    policy: { name: p.name, version: p.digest, mode: p.mode },
    allow: p.allow.map((r) => ({ rule: r.label, host: r.host, ports: r.ports, methods: r.methods ?? 'any', paths: r.paths ?? 'any', inspect: r.inspect })),
    credentials: p.credentials.map((c) => ({ name: c.name, env: c.env, hosts: c.hosts, in: c.in })),
    limits: p.limits,
    anything_else: `refused (403). Ask with POST http://${INTERNAL_HOST}/request-access`,
  };
}

function verdict(d: Decision): { decision: string; rule: string | null; reason: string; message: string } {
  return { decision: d.action, rule: d.rule, reason: d.reason, message: d.message };
}

/**
 * What the policy says of `url`: the decisions a real request to it would get, from the same
 * decide() (for https the CONNECT first, then the request inside the tunnel).
 */
export function why(policy: Policy, url: string, methodIn: string): unknown {
  const method = /^[A-Za-z]{1,20}$/.test(methodIn) ? methodIn.toUpperCase() : null;
  const target = parseAbsoluteUri(url);
  if (!method) return { error: 'method: expected an HTTP method such as GET' };
  if (!target || (target.scheme !== 'http' && target.scheme !== 'https')) return { error: 'url: expected an absolute http:// or https:// URL, e.g. url=https://api.example.com/v1/x' };
  const path = normalisePath(target.pathWithQuery);
  if (!path) return { error: 'url: malformed path' };
  const scheme = target.scheme;
  const base = { url: `${scheme}://${target.host}:${target.port}${path.forward}`, method, policy: policy.name, version: policy.digest };
  const ask = `POST http://${INTERNAL_HOST}/request-access with host=${target.host}, port=${target.port}, method=${method}, path=${path.path} and a reason`;
  if (scheme === 'https') {
    const connect = decide(policy, { phase: 'connect', scheme, host: target.host, port: target.port });
    if (connect.action === 'deny') return { ...base, phase: 'connect', ...verdict(connect), how_to_ask: ask };
    if (!connect.inspect) return { ...base, phase: 'connect', ...verdict(connect), note: 'tunnelled without inspection: requests inside are not decided one by one' };
  }
  const request = decide(policy, {
    phase: 'request',
    scheme,
    host: target.host,
    port: target.port,
    method,
    path: path.path,
    rawPath: path.raw,
    methodOverrides: methodOverrides([], path.forward),
    pathOverrides: [],
  });
  return { ...base, phase: 'request', ...verdict(request), ...(request.action === 'allow' ? {} : { how_to_ask: ask }) };
}

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

function fileAccessRequest(req: http.IncomingMessage, res: http.ServerResponse, session: ProxySession, access: RequestAccess, send: (status: number, body: unknown) => void): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== FORM && type !== JSON_TYPE) {
    req.resume();
    return send(415, { error: `send ${FORM} (curl -d host=...) or ${JSON_TYPE}` });
  }
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > ACCESS_LIMITS.bodyBytes) {
    res.shouldKeepAlive = false;
    req.resume();
    return send(413, { error: `at most ${ACCESS_LIMITS.bodyBytes} bytes` });
  }
  if (!takeAccessToken(session)) {
    req.resume();
    return send(429, { error: `at most ${ACCESS_LIMITS.perMinute} access requests a minute; the operator already has yours` });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > ACCESS_LIMITS.bodyBytes) over = true;
    else chunks.push(chunk);
  });
  req.on('error', () => {});
  req.on('end', () => {
    if (over) return send(413, { error: `at most ${ACCESS_LIMITS.bodyBytes} bytes` });
    const text = Buffer.concat(chunks).toString('utf8');
    let input: Record<string, unknown>;
    if (type === FORM) {
      const form = new URLSearchParams(text);
      input = {};
      for (const key of ['host', 'method', 'path', 'reason'] as const) if (form.has(key)) input[key] = form.get(key);
      if (form.has('port')) input.port = /^\d{1,5}$/.test(form.get('port')!) ? Number(form.get('port')) : form.get('port');
    } else {
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return send(400, { error: 'expected a JSON object with host, method, path and reason' });
        input = parsed as Record<string, unknown>;
      } catch {
        return send(400, { error: 'the body is not valid JSON' });
      }
    }
    const result = access(session.id, { host: input.host, port: input.port, method: input.method, path: input.path, reason: input.reason });
    if (!result.ok) return send(400, { error: result.message });
    send(201, { id: result.id, state: 'open', message: 'The operator has been asked (airlock inbox). Once approved, retry the same request: this session picks up the new policy without a restart.' });
  });
}
