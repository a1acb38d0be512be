// The daemon's admin endpoint: create, list and remove sessions. It listens on a unix socket in
// the state dir (owner-only) and also demands a bearer token, so neither a session container nor
// another local user can reach it. Never on a network address a session can route to.
import http from 'node:http';
import { chmodSync, rmSync } from 'node:fs';
import { dirname, isAbsolute } from 'node:path';
import type pino from 'pino';
import { parsePolicy, PolicyError } from '../policy/index.js';
import type { Policy } from '../policy/index.js';
import type { AddressInfo } from 'node:net';
import type { ProxyRuntime } from './runtime.js';
import { proxyUrl, relaySocketPath } from './registry.js';
import { tokenMatches } from './session.js';
import type { Session } from './session.js';
import { operatorRoute } from './operator-api.js';
import type { SessionFile } from '../credentials/broker.js';

export interface AdminOptions {
  readonly socketPath: string;
  readonly token: string;
  readonly runtime: ProxyRuntime;
  readonly defaultPolicy: Policy;
  /** The file defaultPolicy was read from (absolute): new sessions read it as it is then, and follow it. */
  readonly defaultPolicyFile?: string;
  /** Address clients use to reach the proxy listener, for the URLs handed out. */
  readonly proxyHost: string;
  readonly proxyPort: number;
  readonly log: pino.Logger;
  /** Makes Docker sessions' networks (wired in by the CLI, which knows the engine); none: refused. */
  readonly dockerNetworks?: DockerNetworks;
}

/** A Docker session's own network, with the session's listener on its gateway. */
export interface DockerNetwork {
  readonly network: string;
  readonly gateway: string;
  /** Stops what is still on the network, removes the firewall rules and the network. */
  close(): Promise<void>;
}

export interface DockerNetworks {
  /**
   * Makes the network of session `sessionId`; `listen` opens the session's listener on the
   * gateway (returns its port); `idle` is called once the last container on it has gone.
   */
  open(sessionId: string, listen: (gateway: string) => Promise<number>, idle: () => void): Promise<DockerNetwork>;
}

export interface SessionInfo {
  id: string;
  policy: string;
  /** Digest of the policy in force (Policy.digest). */
  policy_version: string;
  /** The policy file the session follows, if any. */
  policy_file?: string;
  proxy_url: string;
  proxy_port: number;
  /** Set for sessions with their own listener (Docker sessions on a network gateway). */
  listen_host?: string;
  /** Set for sessions made for another launcher's containers: the network to start them on. */
  docker_network?: string;
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
  /** Files for the session's home (placeholder login stores), when its credentials give any. */
  session_files?: readonly SessionFile[];
  /** The process that asked for the session (`airlock run --daemon`), for `airlock gc`. */
  launcher_pid?: number;
  /** True while the session is tied to an open admin connection of its launcher (its lease). */
  leased?: boolean;
}

export function describeSession(session: Session, host: string, port: number): SessionInfo {
  return {
    id: session.id,
    policy: session.policy.name,
    policy_version: session.policy.digest,
    policy_file: session.policyStatus.file,
    proxy_url: proxyUrl(session, host, port),
    proxy_port: port,
    bundle: session.bundlePath,
    audit: session.audit.file,
    created: session.createdAt.toISOString(),
    env: { ...session.credentials.sessionEnv },
    secret_source_env: session.credentials.secretSourceEnv,
    ...(session.credentials.sessionFiles?.length ? { session_files: session.credentials.sessionFiles } : {}),
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

/** What the admin endpoint keeps about a session besides the registry's record. */
interface Held {
  /**
   * The session's own listener, closed with it: an address (Docker sessions on a network gateway)
   * or a unix socket path (relayed sessions).
   */
  listener?: AddressInfo | string;
  launcherPid?: number;
  leased: boolean;
  /** The session's own Docker network (session create --docker), closed with it. */
  docker?: DockerNetwork;
}

export async function startAdmin(options: AdminOptions): Promise<http.Server> {
  const { runtime, log } = options;
  const held = new Map<string, Held>();
  const describe = (session: Session): SessionInfo => {
    const h = held.get(session.id);
    const own = h?.listener;
    const info =
      typeof own === 'string'
        ? { ...describeSession(session, '127.0.0.1', 0), socket_path: own }
        : own
          ? describeSession(session, own.address, own.port)
          : describeSession(session, options.proxyHost, options.proxyPort);
    return { ...info, launcher_pid: h?.launcherPid, leased: h?.leased ?? false, ...(h?.docker ? { docker_network: h.docker.network } : {}) };
  };
  /**
   * Removes a session and closes its own listener. With `only`, removes it only if the id still
   * names that very session (a lease ending late must not take a later session of the same id).
   */
  const removing = new Map<string, Promise<boolean>>();
  const remove = (id: string, only?: Session): Promise<boolean> => {
    // A DELETE and a closing lease may meet: the second waits for the first, and both say removed.
    const pending = removing.get(id);
    if (pending) return pending;
    const session = runtime.sessions.get(id);
    if (!session || (only && session !== only)) return Promise.resolve(false);
    const h = held.get(id);
    held.delete(id);
    const done = (async () => {
      try {
        if (h?.listener) await runtime.proxy.unlisten(h.listener);
        if (typeof h?.listener === 'string') rmSync(dirname(h.listener), { recursive: true, force: true });
        await h?.docker?.close().catch((err: Error) => log.warn({ session: id, err: err.message }, 'could not close the session network'));
        return await runtime.sessions.remove(id);
      } finally {
        removing.delete(id);
      }
    })();
    removing.set(id, done);
    return done;
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
      // A leased session lives as long as this request's connection: known from the start, so a
      // launcher that dies while the session is being made does not leave it behind.
      const lease = req.headers['x-airlock-lease'] === 'hold';
      let callerGone = false;
      if (lease) res.once('close', () => (callerGone = true));
      const body = await readJson(req);
      const policy =
        typeof body.policy_text === 'string'
          ? parsePolicy(body.policy_text, typeof body.policy_source === 'string' ? body.policy_source : 'policy')
          : options.defaultPolicyFile
            ? // As the file is now (reloads and approvals included); an invalid file refuses the session.
              parsePolicy(await runtime.policies.files.read(options.defaultPolicyFile), options.defaultPolicyFile)
            : options.defaultPolicy;
      const id = typeof body.id === 'string' ? body.id : undefined;
      const checkEnv = checkEnvOf(body);
      const listenHost = typeof body.listen_host === 'string' ? body.listen_host : null;
      // On a unix socket in the session's own dir, which the daemon picks (never a caller's path).
      const listenSocket = body.listen_socket === true;
      // Its own Docker network for another launcher's containers, made here so it lives as long as the session.
      const dockerNetwork = body.docker === true;
      if (dockerNetwork && !options.dockerNetworks) throw new BadRequest('this airlock proxy makes no Docker sessions');
      if (dockerNetwork && (listenHost !== null || listenSocket)) throw new BadRequest('docker cannot go with listen_host or listen_socket');
      const launcherPid = Number.isSafeInteger(body.launcher_pid) && (body.launcher_pid as number) > 0 ? (body.launcher_pid as number) : undefined;
      // A session with its own listener, e.g. on a Docker session network's gateway.
      const listener = listenHost === null && !listenSocket && !dockerNetwork ? undefined : `session:${id ?? 'x'}-${Date.now()}`;
      // The file the policy came from, to follow: the launcher's (absolute) or the daemon's own.
      const policyFile = typeof body.policy_text === 'string' ? (typeof body.policy_file === 'string' && isAbsolute(body.policy_file) ? body.policy_file : undefined) : options.defaultPolicyFile;
      const session = await runtime.sessions.create(policy, { id, listener });
      held.set(session.id, { launcherPid, leased: lease });
      let withheld: string[] | undefined;
      try {
        if (policyFile) runtime.policies.follow(session, policyFile, body.watch_policy !== false);
        // The caller's variables are compared here, where the secrets are: the answer is names,
        // so neither the secrets nor anything derived from them leave the daemon.
        if (checkEnv) withheld = await session.credentials.variablesHoldingSecrets(checkEnv);
        if (listenSocket) held.get(session.id)!.listener = await runtime.proxy.listenSocket(relaySocketPath(session.dir), listener!);
        else if (listenHost !== null) held.get(session.id)!.listener = await runtime.proxy.listen(listenHost, 0, listener);
        else if (dockerNetwork) {
          const h = held.get(session.id)!;
          const listen = async (gateway: string) => (h.listener = await runtime.proxy.listen(gateway, 0, listener)).port;
          const idle = () =>
            void remove(session.id, session).then((removed) => {
              if (removed) log.info({ session: session.id }, 'session removed: the last container on its network has gone');
            });
          h.docker = await options.dockerNetworks!.open(session.id, listen, idle);
        }
      } catch (err) {
        await remove(session.id, session);
        throw err;
      }
      let info: SessionInfo = { ...describe(session), withheld_env: withheld };
      if (listenHost !== null || listenSocket || dockerNetwork) {
        info = { ...info, ...(listenHost === null ? {} : { listen_host: listenHost }), bundle_pem: session.bundlePem, secret_source_env: session.credentials.secretSourceEnv };
      }
      if (!lease) return send(res, 201, info);
      const end = () => {
        void remove(session.id, session).then((removed) => {
          if (removed) log.info({ session: session.id, launcher_pid: launcherPid }, 'session removed: its launcher closed its lease (it exited or was killed)');
        });
      };
      if (callerGone) return end();
      // The answer is one JSON line; the response then stays open until the launcher goes. Its
      // closing (exit, crash, kill -9: the kernel closes the socket) ends the session.
      res.writeHead(201, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store', 'X-Airlock-Lease': 'held' });
      res.write(JSON.stringify(info) + '\n');
      res.once('close', end);
      return;
    }
    const answer = await operatorRoute(runtime, req.method ?? 'GET', url, () => readJson(req));
    if (answer) return send(res, answer.status, answer.body);
    const match = /^\/sessions\/([a-z0-9-]+)$/.exec(url.pathname);
    if (req.method === 'DELETE' && match) {
      const removed = await remove(match[1]!);
      return send(res, removed ? 200 : 404, removed ? { removed: match[1] } : { error: `no session ${match[1]}` });
    }
    send(res, 404, { error: 'unknown admin route' });
  };
  return await listenOwnerOnly(server, options.socketPath);
}

export interface ControlOptions {
  readonly socketPath: string;
  readonly token: string;
  readonly runtime: ProxyRuntime;
}

/**
 * The operator routes alone (policy reload, inbox, approve, deny) for a proxy that is not the
 * daemon: an embedded `airlock run` or `airlock exec`. Same guards as the admin endpoint: a unix
 * socket (owner-only) in the session's own directory, never in the relay directory a container
 * sees, and a bearer token.
 */
export async function startControl(options: ControlOptions): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (!authorised(req, options.token)) return send(res, 401, { error: 'control token required' });
    const url = new URL(req.url ?? '/', 'http://control');
    operatorRoute(options.runtime, req.method ?? 'GET', url, () => readJson(req))
      .then((answer) => (answer ? send(res, answer.status, answer.body) : send(res, 404, { error: 'unknown control route' })))
      .catch((err: Error) => send(res, 500, { error: err.message }));
  });
  return await listenOwnerOnly(server, options.socketPath);
}

/** Listens on a unix socket only its owner may connect to. */
async function listenOwnerOnly(server: http.Server, socketPath: string): Promise<http.Server> {
  rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return server;
}
