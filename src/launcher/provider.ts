// Where a Docker session's proxy side comes from: a proxy embedded in the launcher, or a running
// daemon reached through its admin endpoint (the CLI's admin client, passed in). Either way the session gets its own listener (on the
// session network's gateway, or on a unix socket in its state dir), and its credential works only there.
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Policy } from '../policy/index.js';
import { formatTally } from '../audit/report.js';
import type { ProxyRuntime } from '../sessions/runtime.js';
import type { SessionInfo } from '../sessions/admin.js';
import { relaySocketPath } from '../sessions/registry.js';
import { LaunchError } from './errors.js';
import type { SessionFile } from '../credentials/broker.js';

/** Where a session's listener goes: a host address (bridge mode), or a unix socket (relay mode). */
export type ListenOn = string | typeof UNIX_SOCKET;
/** A unix socket in the session's state dir: `<session dir>/relay/proxy.sock`, the dir owner-only. */
export const UNIX_SOCKET = Symbol('unix socket');


export interface SessionLease {
  readonly id: string;
  readonly token: string;
  /** The TCP port of the session's listener (bridge mode); 0 when it listens on a unix socket. */
  readonly proxyPort: number;
  /** The unix socket of the session's listener (relay mode). */
  readonly socketPath?: string;
  /** Session CA + roots, PEM: copied into the container. */
  readonly bundlePem: string;
  readonly auditFile: string;
  /** Placeholder values by variable name. */
  readonly placeholders: Readonly<Record<string, string>>;
  /** Host variables holding real secrets: never forwarded into the container. */
  readonly secretSourceEnv: readonly string[];
  /** Names of the `checkEnv` variables given to open() whose values hold a real secret. */
  readonly withheldEnv: readonly string[];
  /** Files for the session's home (placeholder login stores); absent: none. */
  readonly sessionFiles?: readonly SessionFile[];
  release(): Promise<void>;
  /** One line per host for the end-of-run summary. */
  summary(): string;
}

export interface SessionProvider {
  /**
   * @param checkEnv variables meant for the session (-e): the lease says which hold a secret, found
   *   where the secrets are (in this process, or in the daemon).
   */
  open(policy: Policy, listenOn: ListenOn, sessionId: string, checkEnv: Readonly<Record<string, string>>): Promise<SessionLease>;
}

/** Sessions served by a proxy running inside this process. */
export class EmbeddedProvider implements SessionProvider {
  constructor(private readonly runtime: ProxyRuntime) {}

  async open(policy: Policy, listenOn: ListenOn, sessionId: string, checkEnv: Readonly<Record<string, string>>): Promise<SessionLease> {
    const listener = `session:${sessionId}`;
    const session = await this.runtime.sessions.create(policy, { id: sessionId, listener });
    let address;
    let withheldEnv;
    try {
      withheldEnv = await session.credentials.variablesHoldingSecrets(checkEnv);
      address =
        listenOn === UNIX_SOCKET
          ? await this.runtime.proxy.listenSocket(relaySocketPath(session.dir), listener)
          : await this.runtime.proxy.listen(listenOn, 0, listener);
    } catch (err) {
      await this.runtime.sessions.remove(sessionId);
      throw err;
    }
    // The upstream roots' TLS context and the leaf certificate machinery (the ASN.1 library) are
    // made while Docker starts the containers, which takes seconds: not at the command's first
    // request, which would wait ~150 ms for them (as `airlock exec` does once its command runs).
    setTimeout(() => {
      this.runtime.upstream.prepare();
      session.ca.prepare();
    }, 20).unref();
    return {
      id: session.id,
      token: session.token,
      proxyPort: typeof address === 'string' ? 0 : address.port,
      socketPath: typeof address === 'string' ? address : undefined,
      bundlePem: session.bundlePem,
      auditFile: session.audit.file,
      placeholders: session.credentials.sessionEnv,
      secretSourceEnv: session.credentials.secretSourceEnv,
      withheldEnv,
      sessionFiles: session.credentials.sessionFiles ?? [],
      release: async () => {
        await this.runtime.proxy.unlisten(address);
        // The socket's directory goes with it; the session dir keeps the audit log.
        if (typeof address === 'string') rmSync(dirname(address), { recursive: true, force: true });
        await this.runtime.sessions.remove(sessionId);
      },
      summary: () => formatTally(session.audit.tally, 'host'),
    };
  }
}

/** What DaemonProvider needs of the daemon's admin endpoint (the CLI's admin client). */
export interface DaemonAdmin {
  /** POST /sessions on a lease: the connection stays open, and closing it ends the session. */
  openLease(body: unknown): Promise<{ readonly info: unknown; readonly held: boolean; end(): void }>;
  removeSession(id: string, options?: { readonly notice?: (line: string) => void }): Promise<void>;
  /** Whether `err` says the session is not there (any more). */
  isGone(err: unknown): boolean;
}

export interface DaemonProviderOptions {
  /** For messages (`airlock audit ID --state-dir DIR`). */
  readonly stateDir: string;
  /** The policy file's text, sent to the daemon, and its name. */
  readonly policyText: string;
  readonly policySource: string;
  /** The policy file (absolute) for the daemon to follow, and whether to watch it for changes. */
  readonly policyFile?: string;
  readonly watchPolicy?: boolean;
  readonly notice: (line: string) => void;
}

/**
 * Sessions created through a running `airlock proxy` (several sessions share its process). Each
 * is tied to this launcher by a lease, an admin connection held open for the session's life: when
 * the launcher exits in any way, kill -9 included, the daemon sees it close and ends the session.
 */
export class DaemonProvider implements SessionProvider {
  constructor(
    private readonly admin: DaemonAdmin,
    private readonly o: DaemonProviderOptions,
  ) {}

  async open(_policy: Policy, listenOn: ListenOn, sessionId: string, checkEnv: Readonly<Record<string, string>>): Promise<SessionLease> {
    const lease = await this.admin.openLease({
      id: sessionId,
      ...(listenOn === UNIX_SOCKET ? { listen_socket: true } : { listen_host: listenOn }),
      policy_text: this.o.policyText,
      policy_source: this.o.policySource,
      ...(this.o.policyFile ? { policy_file: this.o.policyFile, watch_policy: this.o.watchPolicy ?? true } : {}),
      check_env: checkEnv,
      launcher_pid: process.pid,
    });
    const info = lease.info as Required<SessionInfo>;
    const refuse = async (message: string): Promise<never> => {
      await this.admin.removeSession(sessionId).catch(() => {});
      lease.end();
      throw new LaunchError(message);
    };
    // A daemon that does not tie the session to this process would keep it, its credentials and
    // its listener after a crash of this launcher.
    if (!lease.held) await refuse('the running airlock proxy does not end sessions whose launcher is gone; restart it with this version of airlock');
    // A daemon that did not check the values cannot vouch for them.
    if (!Array.isArray(info.withheld_env)) {
      await refuse('the running airlock proxy does not check -e values for secrets; restart it with this version of airlock');
    }
    if (listenOn === UNIX_SOCKET && typeof info.socket_path !== 'string') {
      await refuse('the running airlock proxy cannot serve a session on a unix socket; restart it with this version of airlock, or use --network-mode bridge');
    }
    const token = decodeURIComponent(new URL(info.proxy_url).password);
    return {
      id: info.id,
      token,
      proxyPort: info.proxy_port,
      socketPath: info.socket_path,
      bundlePem: info.bundle_pem,
      auditFile: info.audit,
      placeholders: info.env,
      secretSourceEnv: info.secret_source_env,
      withheldEnv: info.withheld_env,
      sessionFiles: info.session_files ?? [],
      release: async () => {
        try {
          await this.admin.removeSession(sessionId, { notice: this.o.notice });
        } catch (err) {
          // Already gone (removed by hand) is what release wants.
          if (this.admin.isGone(err)) return;
          throw new LaunchError(`${(err as Error).message}; closing the session's lease instead, which makes the airlock proxy end it`);
        } finally {
          lease.end();
        }
      },
      summary: () => `see \`airlock audit ${info.id} --state-dir ${this.o.stateDir}\``,
    };
  }
}
