// The short bodies the proxy answers with itself: denials, auth challenges, upstream failures.
// They say what happened and what to do, and never carry stack text or secrets.
import type { Duplex } from 'node:stream';
import type { Decision } from '../policy/index.js';

/** The reserved name of the in-session endpoint: answered by the proxy, never resolved or dialled. */
export const INTERNAL_HOST = 'airlock.internal';

export interface DenyInfo {
  readonly session: string | null;
  readonly policy: string | null;
  readonly host: string;
  readonly port: number;
  readonly decision: Pick<Decision, 'rule' | 'reason' | 'message'>;
}

export function denyBody(info: DenyInfo): string {
  const { decision } = info;
  return (
    JSON.stringify({
      error: 'airlock_denied',
      reason: decision.reason,
      rule: decision.rule ?? 'no rule',
      host: `${info.host}:${info.port}`,
      session: info.session,
      policy: info.policy,
      message: decision.message,
      logged: true,
      how_to_get_access:
        decision.reason === 'credential_misuse'
          ? 'Send this credential only to the hosts it is bound to, over https.'
          : `Ask the operator to add an allow rule for ${info.host} to policy "${info.policy ?? '?'}": from this session, POST http://${INTERNAL_HOST}/request-access with host, method, path and reason (see http://${INTERNAL_HOST}/).`,
    }) + '\n'
  );
}

/**
 * The same denial as plain text, for git, which prints a refused request's text body as
 * "remote: ..." lines (a JSON body it does not show).
 */
export function denyText(info: DenyInfo): string {
  return `Airlock: ${info.decision.message}\n(${info.decision.reason}; session ${info.session ?? '-'}, policy "${info.policy ?? '?'}")\n`;
}

/**
 * The same denial as GraphQL errors, which GraphQL clients (gh among them) print; the JSON
 * denial's fields go in the error's extensions.
 */
export function denyGraphql(info: DenyInfo): string {
  const full = JSON.parse(denyBody(info)) as Record<string, unknown>;
  return JSON.stringify({ errors: [{ type: 'FORBIDDEN', message: `Airlock: ${info.decision.message}`, extensions: full }] }) + '\n';
}

/** One JSON-RPC error to answer: the request's id (null when it had none to answer) and why. */
export interface JsonRpcError {
  readonly id: string | number | null;
  readonly code: number;
  readonly message: string;
}

/**
 * A denial as JSON-RPC errors, one per refused request (an array for a batch), which MCP clients
 * show: the message says why and where to ask; the JSON denial's fields go in error.data.
 */
export function denyJsonRpc(info: DenyInfo, errors: readonly JsonRpcError[], batch: boolean): string {
  const data = JSON.parse(denyBody(info)) as Record<string, unknown>;
  const ask = `To ask for access, POST http://${INTERNAL_HOST}/request-access from this session (see http://${INTERNAL_HOST}/); session ${info.session ?? '-'}, policy "${info.policy ?? '?'}".`;
  const out = errors.map((e) => ({ jsonrpc: '2.0', id: e.id, error: { code: e.code, message: `${e.message}${/[.!?]$/.test(e.message) ? '' : '.'} ${ask}`, data } }));
  return JSON.stringify(batch ? out : out[0]) + '\n';
}

/** git's smart-HTTP client, which shows only text/plain error bodies. */
export function isGitClient(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'user-agent') return rawHeaders[i + 1]!.startsWith('git/');
  }
  return false;
}

/** Printable ASCII only, at most `max` characters: safe in a status line and a terminal. */
export function asciiSafe(text: string, max: number): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? clean.slice(0, max - 3) + '...' : clean;
}

/**
 * The reason phrase of a 403 on a raw socket (CONNECT, upgrade): clients that print only the
 * status line (Python's "Tunnel connection failed: 403 ...") still learn host, policy and where
 * to ask. Printable ASCII, bounded.
 */
export function denialPhrase(info: DenyInfo): string {
  const policy = asciiSafe(info.policy ?? '?', 40);
  return asciiSafe(`Forbidden by Airlock policy "${policy}": ${info.host}:${info.port} ${info.decision.reason}; see http://${INTERNAL_HOST}/ to ask for access`, 200);
}

export const PROXY_AUTH_BODY =
  'Airlock: proxy authentication required. Use the session proxy URL http://<session-id>:<token>@<proxy>:<port> (from `airlock session create` or the HTTPS_PROXY variable of the session).\n';

/** A complete HTTP/1.1 response for a raw socket (CONNECT paths, before any HTTP server runs). */
export function rawResponse(status: number, reason: string, body: string, extraHeaders: string[] = []): string {
  return [
    `HTTP/1.1 ${status} ${reason}`,
    'Content-Type: ' + (body.startsWith('{') ? 'application/json' : 'text/plain; charset=utf-8'),
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...extraHeaders,
    '',
    body,
  ].join('\r\n');
}

/** How long a connection may linger after its final answer before it is destroyed. */
const LINGER_MS = 2_000;

/**
 * Sends a final answer on a raw socket (CONNECT, upgrade, parse error) and closes it. Whatever the
 * client still sends is read and dropped: these sockets are detached from the HTTP parser, paused
 * and half-open capable, so without reading them the client's hang-up is never seen and the socket
 * would be held forever. It is destroyed after LINGER_MS at the latest.
 */
export function endWith(socket: Duplex, response: string): void {
  if (socket.destroyed) return;
  socket.end(response);
  socket.resume();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}
