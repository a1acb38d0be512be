// A session: one agent run. It owns a policy, a CA, a proxy credential and an audit log.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { ProxySession } from '../proxy/context.js';

/** Which policy a session runs and how its last reload went, for `policy reload` and a view. */
export interface PolicyStatus {
  /** Digest of the policy in force (Policy.digest). */
  readonly version: string;
  /** Where it was read from. */
  readonly source: string;
  /** ISO time it came into force. */
  readonly loadedAt: string;
  /** The policy file the session follows (watched or reloaded on request), if any. */
  readonly file?: string;
  readonly watching: boolean;
  /** The last reload failed: the policy in force is still `version`. */
  readonly error?: PolicyStatusError;
  /** What the policy in force cannot do in this session (see checkReplacement). */
  readonly warnings: readonly string[];
}

export interface PolicyStatusError {
  readonly message: string;
  /** ISO time of the failed reload. */
  readonly at: string;
  readonly file: string;
  readonly line: number | null;
  readonly field: string | null;
}

export interface Session extends ProxySession {
  /** Path of the trust bundle (session CA + the roots the proxy trusts). */
  readonly bundlePath: string;
  /** The bundle's content (for copying into containers). */
  readonly bundlePem: string;
  /** The bundle as a Java trust store (JKS, password changeit), beside it. */
  readonly javaTrustStorePath: string;
  readonly dir: string;
  readonly createdAt: Date;
  /** Proxy-Authorization password; compared in constant time. */
  readonly token: string;
  readonly policyStatus: PolicyStatus;
  /**
   * The DNS subtrees the session's CA may issue for (its name constraints), or null when it is
   * unconstrained: a policy loaded later can only inspect hosts inside them.
   */
  readonly caScope: readonly string[] | null;
}

const SESSION_ID = /^[a-z0-9][a-z0-9-]{2,62}$/;

export function isSessionId(id: string): boolean {
  return SESSION_ID.test(id);
}

export function newSessionId(): string {
  return `s-${randomBytes(6).toString('hex')}`;
}

export function newToken(): string {
  return randomBytes(24).toString('base64url');
}

export function tokenMatches(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
