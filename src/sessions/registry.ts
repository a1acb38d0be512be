// The live sessions of one proxy process: created with a fresh CA and credential, found by the
// Proxy-Authorization header, removed with their listener binding. Each session's files live in
// <state dir>/sessions/<id>/: the trust bundle, the audit log and (only if asked) the CA key.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SessionCa } from '../ca/session-ca.js';
import { jksTrustStore } from '../ca/jks.js';
import type { CaKeyType } from '../ca/session-ca.js';
import { AuditLog } from '../audit/log.js';
import type { AuditLogOptions } from '../audit/log.js';
import { loadAuditKey } from '../audit/chain.js';
import { inspectedHostPatterns, reachableHostPatterns } from '../policy/index.js';
import type { Policy } from '../policy/index.js';
import type { CredentialBroker } from '../credentials/broker.js';
import { NO_CREDENTIALS } from '../credentials/broker.js';
import type { ProxySession, SessionDirectory } from '../proxy/context.js';
import { isSessionId, newSessionId, newToken, tokenMatches } from './session.js';
import type { PolicyStatus, Session } from './session.js';

export interface SessionRegistryOptions {
  readonly stateDir: string;
  /** PEM roots the proxy trusts upstream; clients get them too, for hosts tunnelled uninspected. */
  readonly trustRoots: readonly string[];
  readonly caKeyType?: CaKeyType;
  /** Write the CA key to the session dir (mode 0600). Off by default: it lives in memory only. */
  readonly persistCaKey?: boolean;
  /**
   * Called when a session is removed, before its audit log closes: ends its open connections
   * (the runtime wires this to the proxy), so nothing outlives the session.
   */
  readonly onRemove?: (id: string) => Promise<void> | void;
  /** Called with each new session before create() returns it. */
  readonly onCreate?: (session: Session) => void;
  /** Audit log rotation and retention, and where its trouble (a full disk) is reported. */
  readonly audit?: Pick<AuditLogOptions, 'rotateBytes' | 'retainFiles' | 'syncMs' | 'notify'>;
  /** Builds the session's credential broker (resolves secrets; throws a clear error if one is missing). */
  readonly credentials?: (policy: Policy, sessionId: string) => Promise<CredentialBroker>;
}

export interface CreateSessionOptions {
  readonly id?: string;
  /** The listener this session may be used from. */
  readonly listener?: string;
}

interface LiveSession extends Session {
  readonly listener: string;
  /** Replaced by replacePolicy() only; everything else reads these. */
  policy: Policy;
  policyStatus: PolicyStatus;
}

export function sessionDir(stateDir: string, id: string): string {
  if (!isSessionId(id)) throw new Error(`invalid session id ${JSON.stringify(id)}`);
  return join(stateDir, 'sessions', id);
}

/** The socket's file name inside its directory (the directory is what gets bound into the relay). */
export const SOCKET_NAME = 'proxy.sock';
/** sun_path holds 108 bytes, the terminating NUL included. */
const MAX_SOCKET_PATH = 107;

/** Creates `<session dir>/relay` (owner-only) and returns the socket path in it. */
export function relaySocketPath(sessionDir: string): string {
  const dir = join(sessionDir, 'relay');
  const path = join(dir, SOCKET_NAME);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new Error(`the session socket path ${path} is longer than the ${MAX_SOCKET_PATH} bytes a unix socket allows: use a shorter --state-dir`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700); // mkdir leaves an existing directory's mode as it was
  return path;
}

/**
 * The session's notice CA: it speaks only for hosts the session can never reach, so that a denied
 * HTTPS host can be answered with a readable refusal (see proxy/notice.ts). Its key is made
 * non-extractable and never written; its name constraints exclude every host any rule or
 * credential of the policy names, and every IP address; it lives no longer than the session CA.
 */
function noticeCa(id: string, policy: Policy, keyType: CaKeyType | undefined): Promise<SessionCa> {
  return SessionCa.create({
    sessionId: `${id} notices`,
    keyType,
    excludedDns: reachableHostPatterns(policy).dns,
    extractable: false,
    cacheSize: NOTICE_LEAVES,
  });
}

/** Notice leaves kept ready per session: a session naming ever new hosts re-mints, never grows. */
const NOTICE_LEAVES = 64;

export class SessionRegistry implements SessionDirectory {
  private readonly sessions = new Map<string, LiveSession>();
  /** Sessions with a listener of their own, by listener name (looked up at every accept). */
  private readonly owners = new Map<string, LiveSession>();
  private key: Buffer | undefined;

  constructor(private readonly options: SessionRegistryOptions) {}

  async create(policy: Policy, opts: CreateSessionOptions = {}): Promise<Session> {
    const id = opts.id ?? newSessionId();
    if (this.sessions.has(id)) throw new Error(`session ${id} already exists`);
    const dir = sessionDir(this.options.stateDir, id);
    const credentials = this.options.credentials ? await this.options.credentials(policy, id) : NO_CREDENTIALS;
    const constraints = inspectedHostPatterns(policy);
    // IP rules cannot be expressed in a DNS-only constraint; leave such CAs unconstrained.
    const permittedDns = constraints.ips.length > 0 || policy.mode === 'report' ? null : constraints.dns;
    const ca = await SessionCa.create({ sessionId: id, keyType: this.options.caKeyType, permittedDns });
    const notice = await noticeCa(id, policy, this.options.caKeyType);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // In a directory of its own: SSL_CERT_DIR names it, and must find no other file there.
    mkdirSync(join(dir, 'trust'), { mode: 0o755 });
    const bundlePath = join(dir, 'trust', 'bundle.pem');
    const bundlePem = [ca.certPem, notice.certPem, ...this.options.trustRoots].join('\n');
    writeFileSync(bundlePath, bundlePem, { mode: 0o644 });
    // The same for Java, which reads no PEM file (a JVM on the host is pointed at it by exec).
    const javaTrustStorePath = join(dir, 'trust', 'bundle.jks');
    writeFileSync(javaTrustStorePath, jksTrustStore(bundlePem), { mode: 0o644 });
    writeFileSync(join(dir, 'ca.pem'), ca.certPem, { mode: 0o644 });
    if (this.options.persistCaKey) {
      writeFileSync(join(dir, 'ca-key.pem'), await ca.exportKeyPem(), { mode: 0o600 });
    }
    const session: LiveSession = {
      id,
      policy,
      ca,
      notice,
      credentials,
      audit: new AuditLog(join(dir, 'audit.jsonl'), { ...this.options.audit, key: this.auditKey(), session: id }),
      bundlePath,
      bundlePem,
      javaTrustStorePath,
      dir,
      createdAt: new Date(),
      token: newToken(),
      listener: opts.listener ?? 'default',
      caScope: permittedDns,
      policyStatus: { version: policy.digest, source: policy.source, loadedAt: new Date().toISOString(), watching: false, warnings: [] },
    };
    await session.audit.ready();
    this.sessions.set(id, session);
    if (session.listener !== 'default') this.owners.set(session.listener, session);
    this.options.onCreate?.(session);
    return session;
  }

  /** The state dir's audit key (chain.ts), read or created once. */
  private auditKey(): Buffer {
    return (this.key ??= loadAuditKey(this.options.stateDir));
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  list(): Session[] {
    return [...this.sessions.values()];
  }

  /**
   * Puts `policy` in force for the session's new requests (requests and tunnels already decided
   * keep their decision) and records `status`; the caller has checked the policy
   * (checkReplacement). With no policy, records only the status (a failed reload).
   */
  setPolicy(id: string, policy: Policy | null, status: PolicyStatus): boolean {
    const session = this.sessions.get(id);
    if (!session) return false;
    if (policy) session.policy = policy;
    session.policyStatus = status;
    return true;
  }

  async remove(id: string): Promise<boolean> {
    const session = this.sessions.get(id);
    if (!session) return false;
    this.sessions.delete(id);
    if (this.owners.get(session.listener) === session) this.owners.delete(session.listener);
    await this.options.onRemove?.(id);
    await session.credentials.close?.();
    await session.audit.close();
    return true;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.sessions.keys()].map((id) => this.remove(id)));
  }

  ownerOf(listener: string): ProxySession | null {
    return this.owners.get(listener) ?? null;
  }

  authenticate(header: string | undefined, listener: string): ProxySession | null {
    const credentials = parseBasic(header);
    if (!credentials) return null;
    const session = this.sessions.get(credentials.user);
    if (!session || session.listener !== listener) return null;
    return tokenMatches(session.token, credentials.password) ? session : null;
  }
}

function parseBasic(header: string | undefined): { user: string; password: string } | null {
  if (!header || header.length > 512) return null;
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!match) return null;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** The proxy URL a session's clients use. */
export function proxyUrl(session: Session, host: string, port: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  // Ids and tokens are URL-safe by construction, so the URL needs no escaping.
  return `http://${session.id}:${session.token}@${h}:${port}`;
}
