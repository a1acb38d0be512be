// A session: one agent run. It owns a policy, a CA, a proxy credential and an audit log.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { ProxySession } from '../proxy/context.js';

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
