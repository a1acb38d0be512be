// The daemon's admin endpoint: create, list and remove sessions. It listens on a unix socket in
// the state dir (owner-only) and also demands a bearer token, so neither a session container nor
// another local user can reach it. Never on a network address a session can route to.
import http from 'node:http';
import { chmodSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { parsePolicy, PolicyError } from '../policy/index.js';
import type { Policy } from '../policy/index.js';
import type { AddressInfo } from 'node:net';
import type { ProxyRuntime } from './runtime.js';
import { proxyUrl, relaySocketPath } from './registry.js';
import { tokenMatches } from './session.js';
import type { Session } from './session.js';

export interface AdminOptions {
  readonly socketPath: string;
  readonly token: string;
  readonly runtime: ProxyRuntime;
  readonly defaultPolicy: Policy;
  /** Address clients use to reach the proxy listener, for the URLs handed out. */
  readonly proxyHost: string;
  readonly proxyPort: number;
}

export interface SessionInfo {
  id: string;
  policy: string;
  proxy_url: string;
  proxy_port: number;
  /** Set for sessions with their own listener (Docker sessions on a network gateway). */
  listen_host?: string;
  /** Set for sessions listening on their own unix socket (relayed Docker sessions). */
  socket_path?: string;
  bundle_pem?: string;
  secret_source_env?: readonly string[];
  /** Names of the create request's check_env variables that hold a secret of the session. */
  withheld_env?: readonly string[];
  bundle: string;
  audit: string;
  created: string;
  env: Record<string, string>;
}

export function describeSession(session: Session, host: string, port: number): SessionInfo {
  return {
    id: session.id,
    policy: session.policy.name,
    proxy_url: proxyUrl(session, host, port),
    proxy_port: port,
    bundle: session.bundlePath,
    audit: session.audit.file,
    created: session.createdAt.toISOString(),
    env: { ...session.credentials.sessionEnv },
    secret_source_env: session.credentials.secretSourceEnv,
  };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function authorised(req: http.IncomingMessage, token: string): boolean {
  return tokenMatches(token, (req.headers.authorization ?? '').replace(/^Bearer\s+/i, ''));
}

/** The string-valued entries of a request's check_env object, or null when it sent none. */
function checkEnvOf(body: Record<string, unknown>): Record<string, string> | null {
  const given = body.check_env;
  if (given === undefined) return null;
  if (typeof given !== 'object' || given === null || Array.isArray(given)) throw new BadRequest('check_env must be an object of strings');
  return Object.fromEntries(Object.entries(given).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

class BadRequest extends Error {}

async function readJson(req: http.IncomingMessage, limit = 1 << 20): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
}

export async function startAdmin(options: AdminOptions): Promise<http.Server> {
  const { runtime } = options;
  // Listeners opened for sessions on their own address (Docker gateways) or unix socket (relayed
  // sessions), closed with the session.
  const ownListeners = new Map<string, AddressInfo | string>();
  const describe = (session: Session) => {
    const own = ownListeners.get(session.id);
    if (typeof own === 'string') return { ...describeSession(session, '127.0.0.1', 0), socket_path: own };
    return own ? describeSession(session, own.address, own.port) : describeSession(session, options.proxyHost, options.proxyPort);
  };
  const server = http.createServer((req, res) => {
    if (!authorised(req, options.token)) return send(res, 401, { error: 'admin token required' });
    handle(req, res).catch((err: Error) => {
      const status = err instanceof PolicyError || err instanceof BadRequest ? 400 : 500;
      send(res, status, { error: err.message });
    });
  });
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (req.method === 'GET' && url.pathname === '/sessions') {
      return send(res, 200, runtime.sessions.list().map(describe));
    }
    if (req.method === 'POST' && url.pathname === '/sessions') {
      const body = await readJson(req);
      const policy =
        typeof body.policy_text === 'string'
          ? parsePolicy(body.policy_text, typeof body.policy_source === 'string' ? body.policy_source : 'policy')
          : options.defaultPolicy;
      const id = typeof body.id === 'string' ? body.id : undefined;
      const checkEnv = checkEnvOf(body);
      const listenHost = typeof body.listen_host === 'string' ? body.listen_host : null;
      // On a unix socket in the session's own dir, which the daemon picks (never a caller's path).
      const listenSocket = body.listen_socket === true;
      // A session with its own listener, e.g. on a Docker session network's gateway.
      const listener = listenHost === null && !listenSocket ? undefined : `session:${id ?? 'x'}-${Date.now()}`;
      const session = await runtime.sessions.create(policy, { id, listener });
      let withheld: string[] | undefined;
      try {
        // The caller's variables are compared here, where the secrets are: the answer is names,
        // so neither the secrets nor anything derived from them leave the daemon.
        if (checkEnv) withheld = await session.credentials.variablesHoldingSecrets(checkEnv);
        if (listenSocket) ownListeners.set(session.id, await runtime.proxy.listenSocket(relaySocketPath(session.dir), listener!));
        else if (listenHost !== null) ownListeners.set(session.id, await runtime.proxy.listen(listenHost, 0, listener));
      } catch (err) {
        ownListeners.delete(session.id);
        await runtime.sessions.remove(session.id);
        throw err;
      }
      const info = { ...describe(session), withheld_env: withheld };
      if (listenHost === null && !listenSocket) return send(res, 201, info);
      return send(res, 201, { ...info, ...(listenHost === null ? {} : { listen_host: listenHost }), bundle_pem: session.bundlePem, secret_source_env: session.credentials.secretSourceEnv });
    }
    const match = /^\/sessions\/([a-z0-9-]+)$/.exec(url.pathname);
    if (req.method === 'DELETE' && match) {
      const own = ownListeners.get(match[1]!);
      if (own) {
        ownListeners.delete(match[1]!);
        await runtime.proxy.unlisten(own);
        if (typeof own === 'string') rmSync(dirname(own), { recursive: true, force: true });
      }
      const removed = await runtime.sessions.remove(match[1]!);
      return send(res, removed ? 200 : 404, removed ? { removed: match[1] } : { error: `no session ${match[1]}` });
    }
    send(res, 404, { error: 'unknown admin route' });
  };
  rmSync(options.socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.socketPath, () => resolve());
  });
  chmodSync(options.socketPath, 0o600);
  return server;
}
