// Where a Docker session's proxy side comes from: a proxy embedded in the launcher, or a running
// daemon reached through its admin endpoint. Either way the session gets its own listener on the
// session network's gateway, and its credential works only there.
import type { Policy } from '../policy/index.js';
import type { ProxyRuntime } from '../sessions/runtime.js';

export interface SessionLease {
  readonly id: string;
  readonly token: string;
  readonly proxyPort: number;
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
  open(policy: Policy, listenHost: string, sessionId: string, checkEnv: Readonly<Record<string, string>>): Promise<SessionLease>;
}

/** Sessions served by a proxy running inside this process. */
export class EmbeddedProvider implements SessionProvider {
  constructor(private readonly runtime: ProxyRuntime) {}

  async open(policy: Policy, listenHost: string, sessionId: string, checkEnv: Readonly<Record<string, string>>): Promise<SessionLease> {
    const listener = `session:${sessionId}`;
    const session = await this.runtime.sessions.create(policy, { id: sessionId, listener });
    let address;
    let withheldEnv;
    try {
      withheldEnv = await session.credentials.variablesHoldingSecrets(checkEnv);
      address = await this.runtime.proxy.listen(listenHost, 0, listener);
    } catch (err) {
      await this.runtime.sessions.remove(sessionId);
      throw err;
    }
    return {
      id: session.id,
      token: session.token,
      proxyPort: address.port,
      bundlePem: session.bundlePem,
      auditFile: session.audit.file,
      placeholders: session.credentials.sessionEnv,
      secretSourceEnv: session.credentials.secretSourceEnv,
      withheldEnv,
      release: async () => {
        await this.runtime.proxy.unlisten(address);
        await this.runtime.sessions.remove(sessionId);
      },
      summary: () => {
        const parts: string[] = [];
        for (const [host, t] of session.audit.tally) {
          parts.push(`${host} allowed ${t.allowed} denied ${t.denied}${t.wouldDeny ? ` would-deny ${t.wouldDeny}` : ''}`);
        }
        return parts.join('; ') || 'no requests';
      },
    };
  }
}
