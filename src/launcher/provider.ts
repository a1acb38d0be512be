// Where a Docker session's proxy side comes from: a proxy embedded in the launcher, or a running
// daemon reached through its admin endpoint. Either way the session gets its own listener (on the
// session network's gateway, or on a unix socket in its state dir), and its credential works only there.
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Policy } from '../policy/index.js';
import { formatTally } from '../audit/report.js';
import type { ProxyRuntime } from '../sessions/runtime.js';
import { relaySocketPath } from '../sessions/registry.js';

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
