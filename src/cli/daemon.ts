// `airlock proxy` (the long-running daemon) and `airlock session create|ls|rm` (its admin client).
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import pino from 'pino';
import { describeSession, startAdmin } from '../sessions/admin.js';
import type { DockerNetwork, DockerNetworks, SessionInfo } from '../sessions/admin.js';
import { loadPolicy, parseListen, UsageError } from './config.js';
import { buildRuntime } from './runtime.js';
import type { ProxyFlags } from './runtime.js';
import { capsFor, raiseOpenFileLimit, UNKNOWN_LIMIT_CAPS } from './fd-limit.js';
import { withheldNotice } from './session-env.js';
import { startRuntimeUi } from './ui.js';
import type { AdminTarget } from './control.js';
import { dockerClient } from './docker.js';
import { clientEnv, HOST_NO_PROXY, SHADOWING_CA_VARS, SHADOWING_PROXY_VARS } from '../sessions/client-env.js';

/**
 * Docker sessions, with the launcher code and the Docker client loaded on first use: a daemon that
 * makes none keeps them out of its memory (see docker.ts).
 */
function lazyDockerNetworks(notice: (line: string) => void): DockerNetworks & { closeAll(): Promise<void> } {
  let made: Promise<DockerNetworks> | undefined;
  const make = async () => {
    const { dockerNetworks } = await import('../launcher/docker-sessions.js');
    const docker = dockerClient();
    return dockerNetworks({ docker: () => docker, notice });
  };
  const opened = new Set<DockerNetwork>();
  return {
    async open(...args) {
      const network = await (await (made ??= make())).open(...args);
      const tracked: DockerNetwork = {
        ...network,
        close: async () => {
          opened.delete(tracked);
          await network.close();
        },
      };
      opened.add(tracked);
      return tracked;
    },
    // A daemon that stops leaves no network, firewall chain or container of its sessions behind.
    async closeAll() {
      await Promise.all([...opened].map((n) => n.close().catch((err: Error) => notice(`closing ${n.network}: ${err.message}`))));
    },
  };
}

export interface DaemonOptions extends ProxyFlags {
  readonly policy: string;
  readonly listen: string;
  readonly firstSession: boolean;
  /** Client connections of all sessions together (default: fitted to the open-file limit). */
  readonly maxConnections?: string;
  /** Client connections per listener (default: a quarter of the total, at most 1024). */
  readonly listenerConnections?: string;
  /** Seconds a connection may take to send its first authenticated request head. */
  readonly authTimeout?: string;
  /** ADDRESS:PORT of the live view (loopback only). */
  readonly ui?: string;
}

function positiveInt(value: string | undefined, flag: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) throw new UsageError(`${flag} ${JSON.stringify(value)}: expected a whole number from 1 to ${max}`);
  return Number(value);
}

/**
 * The connection caps and auth deadline of the daemon: fitted under its open-file limit (raised
 * to the hard limit first), with a reserve so the admin socket, upstream connections and audit
 * logs never run out of descriptors because of client connections. Logs what it settled on.
 */
function connectionLimits(options: DaemonOptions, log: pino.Logger) {
  const total = positiveInt(options.maxConnections, '--max-connections', 10_000_000);
  const perListener = positiveInt(options.listenerConnections, '--listener-connections', 10_000_000);
  const authTimeout = positiveInt(options.authTimeout, '--auth-timeout', 3_600);
  const { limit, problem } = raiseOpenFileLimit();
  const fitted = limit ? capsFor(limit.soft) : UNKNOWN_LIMIT_CAPS;
  const caps = { total: total ?? fitted.total, perListener: perListener ?? Math.min(fitted.perListener, total ?? fitted.total) };
  if (problem && limit) {
    log.warn(
      { soft: limit.soft, hard: limit.hard, reason: problem },
      `the open-file soft limit ${limit.soft} is below the hard limit ${limit.hard} and could not be raised; raise it before starting (ulimit -n ${limit.hard})`,
    );
  }
  const fields = { max_connections: caps.total, listener_connections: caps.perListener, auth_timeout_s: authTimeout ?? 10 };
  if (!limit) {
    log.warn(fields, `open-file limit unknown here (no /proc/self/limits): client connections capped at ${caps.total}; set --max-connections to fit \`ulimit -n\``);
  } else {
    log.info(
      { ...fields, open_files_soft: limit.soft, open_files_hard: limit.hard },
      `open-file limit ${limit.soft}: client connections capped at ${caps.total} in all and ${caps.perListener} per listener, the rest kept for upstream connections, audit logs and the admin socket`,
    );
    if (total !== undefined && total > fitted.total) {
      log.warn({ max_connections: total, fits: fitted.total }, `--max-connections ${total} leaves too few of the ${limit.soft} open files for upstream connections and the admin socket; ${fitted.total} fits`);
    }
  }
  return { maxClientConnections: caps.total, maxListenerConnections: caps.perListener, ...(authTimeout ? { authTimeoutMs: authTimeout * 1000 } : {}) };
}

export function adminPaths(stateDir: string): { socket: string; token: string } {
  return { socket: join(stateDir, 'admin.sock'), token: join(stateDir, 'admin.token') };
}

export async function runDaemon(options: DaemonOptions): Promise<void> {
  const policy = loadPolicy(options.policy);
  const { host, port } = parseListen(options.listen);
  const { runtime, log } = buildRuntime({
    ...options,
    log: pino({ base: null, name: 'airlock' }, pino.destination(2)),
    limits: (logger) => connectionLimits(options, logger),
  });
  const address = await runtime.proxy.listen(host, port);
  const paths = adminPaths(options.stateDir);
  const token = randomBytes(24).toString('base64url');
  writeFileSync(paths.token, token + '\n', { mode: 0o600 });
  const dockerNetworks = lazyDockerNetworks((line) => log.warn(line));
  const admin = await startAdmin({
    socketPath: paths.socket,
    token,
    runtime,
    defaultPolicy: policy,
    defaultPolicyFile: resolvePath(options.policy),
    proxyHost: address.address,
    proxyPort: address.port,
    log,
    dockerNetworks,
  });
  // Before "ready": a bad --ui stops the daemon at start, not later.
  const view = options.ui === undefined ? undefined : await startRuntimeUi(runtime, options.ui);
  log.info({ listen: `${address.address}:${address.port}`, admin: paths.socket, policy: policy.name }, 'airlock proxy ready');
  if (options.firstSession) {
    const session = await runtime.sessions.create(policy);
    runtime.policies.follow(session, resolvePath(options.policy), true);
    const info = { ...describeSession(session, address.address, address.port), withheld_env: await session.credentials.variablesHoldingSecrets(process.env) };
    process.stderr.write(withheldNotice(withheldByExports(info), 'the shell that evals these exports'));
    process.stdout.write(exportsFor(info));
  }
  const stop = async () => {
    admin.close();
    await view?.close();
    await dockerNetworks.closeAll();
    await runtime.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/** The variables a session's exports set, with their values. */
function exported(info: SessionInfo): [string, string][] {
  return clientEnv({ proxyUrl: info.proxy_url, noProxy: HOST_NO_PROXY, bundlePath: info.bundle, placeholders: info.env });
}

/**
 * The caller's variables the exports unset only because their values hold a secret (not a
 * source variable, not one the exports set anyway): the ones to tell the user about.
 */
export function withheldByExports(info: SessionInfo): string[] {
  const set = new Set(exported(info).map(([name]) => name));
  return (info.withheld_env ?? []).filter((name) => !set.has(name) && !(info.secret_source_env ?? []).includes(name));
}

/** Shell exports for a session: eval "$(airlock session create)". */
export function exportsFor(info: SessionInfo): string {
  const lines = [`# airlock session ${info.id} (policy ${info.policy}); audit: ${info.audit.replace(/[\r\n]/g, ' ')}`];
  const exports = exported(info);
  const set = new Set(exports.map(([name]) => name));
  // The shell that evals this must keep no secret: not the sources' variables, nor copies of a
  // secret under other names. A variable the session sets gets the session's value instead. Proxy
  // variables the session does not set go too, as in exec: a client could read them instead.
  const unset = new Set([...(info.secret_source_env ?? []), ...(info.withheld_env ?? []), ...SHADOWING_PROXY_VARS, ...SHADOWING_CA_VARS]);
  for (const name of unset) if (!set.has(name)) lines.push(`unset ${name}`);
  for (const [name, value] of exports) lines.push(`export ${name}=${shellQuote(value)}`);
  return lines.join('\n') + '\n';
}

/** Single-quotes a value for POSIX shells (a ' inside becomes '\''). */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** An admin call that failed: `status` when the daemon answered, `code` when the connection failed. */
export class AdminError extends UsageError {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
    /** The daemon's whole answer, when it gave one. */
    readonly body?: unknown,
  ) {
    super(message);
  }
}

function adminAccess(stateDir: string, paths: AdminTarget = adminPaths(stateDir)): { socket: string; token: string } {
  try {
    return { socket: paths.socket, token: readFileSync(paths.token, 'utf8').trim() };
  } catch {
    throw new AdminError(`no airlock proxy is running for state dir ${stateDir} (start one with \`airlock proxy\`)`, undefined, 'NO_DAEMON');
  }
}

function unreachable(socket: string, err: NodeJS.ErrnoException): AdminError {
  if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') {
    return new AdminError(`cannot reach the airlock proxy at ${socket} (${err.code}); is \`airlock proxy\` running?`, undefined, err.code);
  }
  return new AdminError(`the admin connection to the airlock proxy at ${socket} failed (${err.code ?? err.message})`, undefined, err.code);
}

/** Parses a complete admin answer; rejects with the daemon's error for a 4xx/5xx. */
function adminAnswer(socket: string, status: number, text: string): unknown {
  let parsed: { error?: string };
  try {
    parsed = JSON.parse(text || '{}') as { error?: string };
  } catch {
    throw new AdminError(`the airlock proxy at ${socket} answered something other than JSON (status ${status})`, status);
  }
  if (status >= 400) throw new AdminError(parsed.error ?? `admin endpoint answered ${status}`, status, undefined, parsed);
  return parsed;
}

/** Calls the daemon's admin endpoint. */
export async function adminRequest(stateDir: string, method: string, path: string, body?: unknown, target?: AdminTarget): Promise<unknown> {
  const access = adminAccess(stateDir, target);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return await new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: access.socket,
        method,
        path,
        headers: { Authorization: `Bearer ${access.token}`, ...(payload ? { 'Content-Type': 'application/json' } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new AdminError(`the airlock proxy's admin reply broke off (${err.message})`, undefined, 'ECONNRESET')));
        res.on('end', () => {
          try {
            resolve(adminAnswer(access.socket, res.statusCode ?? 500, Buffer.concat(chunks).toString('utf8')));
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => reject(unreachable(access.socket, err)));
    req.end(payload);
  });
}

/**
 * Failures worth another try: the admin connection was reset or refused while the daemon was
 * short of descriptors or busy. Nothing a retry could change (a 4xx, no daemon) is retried.
 */
const TRANSIENT = new Set(['EPIPE', 'ECONNRESET', 'ECONNREFUSED', 'EAGAIN', 'EMFILE', 'ENFILE', 'ETIMEDOUT']);

export interface RemoveOptions {
  readonly notice?: (line: string) => void;
  /** Tries in all (default 10: about 25 s of backoff from 0.2 s up to 5 s). */
  readonly attempts?: number;
  readonly firstDelayMs?: number;
}

/**
 * Removes a daemon session, retrying with backoff when the admin connection fails. A 404 after a
 * failed try means an earlier try got through: that is success too.
 */
export async function removeDaemonSession(stateDir: string, id: string, options: RemoveOptions = {}): Promise<void> {
  const attempts = options.attempts ?? 10;
  let delay = options.firstDelayMs ?? 200;
  for (let attempt = 1; ; attempt++) {
    try {
      await adminRequest(stateDir, 'DELETE', `/sessions/${encodeURIComponent(id)}`);
      return;
    } catch (err) {
      if (attempt > 1 && err instanceof AdminError && err.status === 404) return;
      const transient = err instanceof AdminError && ((err.code !== undefined && TRANSIENT.has(err.code)) || (err.status ?? 0) >= 500);
      if (!transient || attempt >= attempts) throw err;
      options.notice?.(`removing session ${id}: ${(err as Error).message}; retrying in ${(delay / 1000).toFixed(1)} s (try ${attempt + 1} of ${attempts})`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}

export interface AdminLease {
  /** The daemon's answer (the session's description). */
  readonly info: unknown;
  /** False when the daemon does not hold sessions to a lease (an older version). */
  readonly held: boolean;
  /** Closes the lease: the daemon then removes the session (if it is still there). */
  end(): void;
}

/**
 * POSTs to the admin endpoint asking the daemon to tie what it creates to this connection: the
 * answer is one JSON line, and the connection stays open until end() or until this process exits
 * in any way (kill -9 included: the kernel closes the socket), which ends the session.
 */
export async function openLease(stateDir: string, path: string, body: unknown): Promise<AdminLease> {
  const access = adminAccess(stateDir);
  const payload = JSON.stringify(body);
  return await new Promise((resolve, reject) => {
    const req = http.request({
      socketPath: access.socket,
      method: 'POST',
      path,
      // Its own connection, never pooled: closing it is what ends the session.
      agent: false,
      headers: { Authorization: `Bearer ${access.token}`, 'Content-Type': 'application/json', 'X-Airlock-Lease': 'hold' },
    });
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(err);
    };
    req.on('error', (err: NodeJS.ErrnoException) => fail(unreachable(access.socket, err)));
    req.on('response', (res) => {
      const status = res.statusCode ?? 500;
      const held = status < 400 && res.headers['x-airlock-lease'] === 'held';
      let text = '';
      res.setEncoding('utf8');
      res.on('error', () => fail(new AdminError(`the airlock proxy's admin reply broke off`, undefined, 'ECONNRESET')));
      const answer = (complete: string) => {
        if (settled) return;
        try {
          const info = adminAnswer(access.socket, status, complete);
          settled = true;
          // Nothing more comes on a lease; its socket must not keep this process running.
          req.socket?.unref();
          resolve({ info, held, end: () => req.destroy() });
        } catch (err) {
          fail(err as Error);
        }
      };
      res.on('data', (chunk: string) => {
        if (settled) return;
        text += chunk;
        const line = text.indexOf('\n');
        if (held && line !== -1) answer(text.slice(0, line));
      });
      res.on('end', () => answer(text));
      res.on('close', () => fail(new AdminError(`the airlock proxy closed the admin connection before answering`, undefined, 'ECONNRESET')));
    });
    req.end(payload);
  });
}
