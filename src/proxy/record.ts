// Collects what happens to one request or tunnel and writes its single audit line when it ends.
import { randomBytes } from 'node:crypto';
import { redactQuery } from '../audit/entry.js';
import type { AuditEntry, UsageRecord } from '../audit/entry.js';
import type { AdmitRecord } from '../audit/log.js';
import type { Decision } from '../policy/index.js';
import type { ProxySession } from './context.js';
import type { Authority } from './target.js';

const BOOT = randomBytes(3).toString('hex');
let sequence = 0;

export type Outcome = Pick<Decision, 'rule' | 'reason'> & { action: AuditEntry['action'] };

export class RequestRecord {
  readonly id = `${BOOT}-${(++sequence).toString(36)}`;
  readonly started = performance.now();
  authority: Authority = { host: '-', port: 0 };
  private path = '';
  private credentials: readonly string[] = [];
  private up = 0;
  private down = 0;
  private done = false;
  /** Its admit line is written: it may go upstream, and its end line completes that one. */
  private admitted = false;
  private usage: (() => UsageRecord | undefined) | null = null;
  /** An admission waiting for this turn's write (cancelled if the exchange ends first). */
  private queued: { cancel(): void } | null = null;
  constructor(
    readonly session: ProxySession | null,
    /** The version of the policy the exchange decides under (taken once, at admission). */
    private readonly policyVersion: string | undefined,
    readonly kind: AuditEntry['kind'],
    readonly method: string,
    readonly scheme: 'http' | 'https',
  ) {}

  target(host: string, port: number, pathWithQuery: string): void {
    this.authority = { host, port };
    this.path = pathWithQuery;
  }

  usedCredentials(names: readonly string[]): void {
    this.credentials = names;
  }

  bytes(up: number, down: number): void {
    this.up = up;
    this.down = down;
  }

  /**
   * Writes the admit line (decision, rule, credentials, target) before anything is sent upstream.
   * False: the log cannot be written, and nothing may be sent.
   */
  admit(outcome: Outcome): boolean {
    if (this.admitted) return true;
    if (this.done || !this.session) return false;
    this.queued?.cancel();
    this.queued = null;
    this.admitted = this.session.audit.admit(this.admitRecord(outcome));
    return this.admitted;
  }

  /**
   * admit(), batched with the other admissions of this event-loop turn (one write for all):
   * `done(true)` once the line is written. If the exchange ends first, nothing is written and
   * `done` is not called.
   */
  admitSoon(outcome: Outcome, done: (written: boolean) => void): void {
    if (this.admitted) return done(true);
    if (this.done || !this.session) return done(false);
    this.queued = this.session.audit.admitSoon(this.admitRecord(outcome), (written) => {
      this.queued = null;
      this.admitted = written;
      done(written);
    });
  }

  private admitRecord(outcome: Outcome): AdmitRecord {
    // Written out here and again in finish(): building both from shared spread helpers measured
    // slower at c=64 (two more objects per request on the hottest path).
    return {
      session: this.session!.id,
      id: this.id,
      kind: this.kind,
      method: this.method,
      scheme: this.scheme,
      host: this.authority.host,
      port: this.authority.port,
      path: redactQuery(this.path),
      action: outcome.action,
      policy_version: this.policyVersion,
      rule: outcome.rule,
      reason: outcome.reason,
      credentials: [...this.credentials],
    };
  }

  usageFrom(source: () => UsageRecord | undefined): void {
    this.usage = source;
  }

  /** Writes the audit line. Later calls are ignored: a request is logged exactly once. */
  finish(status: number, outcome: Outcome, detail?: string): void {
    if (this.done || !this.session) return;
    this.done = true;
    // Ended before its admission was written: it never went upstream, and says so.
    this.queued?.cancel();
    this.queued = null;
    const entry: AuditEntry = {
      session: this.session.id,
      id: this.id,
      kind: this.kind,
      method: this.method,
      scheme: this.scheme,
      host: this.authority.host,
      port: this.authority.port,
      path: redactQuery(this.path),
      status,
      action: outcome.action,
      policy_version: this.policyVersion,
      rule: outcome.rule,
      reason: outcome.reason,
      credentials: [...this.credentials],
      bytes_up: this.up,
      bytes_down: this.down,
      duration_ms: Math.round((performance.now() - this.started) * 100) / 100,
    };
    if (detail) entry.detail = detail;
    let usage;
    try {
      usage = this.usage?.();
    } catch {
      // The usage reader's bug must not cost the request its line.
    }
    if (usage) entry.usage = usage;
    this.session.audit.record(entry, this.admitted);
  }
}
