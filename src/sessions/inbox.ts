// The denial inbox of one proxy process: the requests its sessions were refused, grouped by
// session, target, method and path with counts, and the access requests agents file themselves.
// Everything in it came from a session, which may be hostile: hosts, paths and reasons are checked
// or cut to size and stripped of control and bidi characters before they are kept, and each
// session holds a bounded number of items, so a flood from one costs the others nothing.
import { normalizeHost } from '../policy/index.js';
import type { AuditEntry } from '../audit/entry.js';
import type { AuditLog } from '../audit/log.js';

export interface InboxItem {
  /** Short, unique in this process: what `airlock approve ID` takes. */
  readonly id: string;
  /** denied: the proxy refused it; requested: the agent asked for access. */
  readonly kind: 'denied' | 'requested';
  readonly session: string;
  readonly scheme: 'http' | 'https';
  readonly host: string;
  readonly port: number;
  /** null for a refused CONNECT: only host and port were known. */
  readonly method: string | null;
  /** Without the query; null for a refused CONNECT. */
  readonly path: string | null;
  /** The deny reason (no_rule, path_not_allowed, ...) or "access_request". */
  readonly reason: string;
  /** The rule that came closest, as the audit line names it. */
  readonly rule: string | null;
  /** The agent's own words (requests only), as plain text. */
  readonly note?: string;
  readonly count: number;
  readonly firstSeen: string;
  readonly lastSeen: string;
  /** The policy version of the last refusal. */
  readonly policyVersion?: string;
  readonly state: 'open' | 'approved' | 'dismissed';
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Refusals an allow rule could lift; others (a misused credential, a rate limit) are not the policy's to approve. */
const APPROVABLE = new Set(['no_rule', 'port_not_allowed', 'method_not_allowed', 'path_not_allowed']);

export const INBOX_LIMITS = {
  /** Items kept per session; beyond it the one seen longest ago goes. */
  itemsPerSession: 200,
  pathChars: 2048,
  noteChars: 1000,
} as const;

// C0 and C1 controls, DEL, bidi embeddings, overrides and isolates, zero-width characters and
// the Unicode line and paragraph separators: none belongs in a host, a path or a one-line reason,
// and each can make a terminal or a page show something other than what is stored.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** `text` as one line of plain text: unsafe characters become spaces, at most `max` characters. */
export function plainText(text: string, max: number): string {
  // Bounded work on a huge input: at most two code units per character kept, and a few spare.
  const window = max * 2 + 4;
  const cleaned = text.slice(0, window).replace(LONE_SURROGATE, '\ufffd').replace(UNSAFE, ' ').replace(/ {2,}/g, ' ').trim();
  const chars = [...cleaned];
  return chars.length > max || text.length > window ? `${chars.slice(0, max - 1).join('')}…` : cleaned;
}

/** What an agent sends to ask for access; every field is checked (see requestAccess). */
export interface AccessRequestInput {
  readonly host?: unknown;
  readonly port?: unknown;
  readonly method?: unknown;
  readonly path?: unknown;
  readonly reason?: unknown;
}

/** An access request that cannot be filed; the message is for the agent. */
export class AccessRequestError extends Error {}

const METHOD = /^[A-Za-z]{1,20}$/;
// RFC 3986 path characters and percent escapes, nothing else.
const PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;

export interface InboxOptions {
  /** Whether `id` names a live session (access requests from anything else are refused). */
  readonly sessionExists: (id: string) => boolean;
}

export class Inbox {
  private readonly items = new Map<string, Mutable<InboxItem>>();
  private readonly byKey = new Map<string, Mutable<InboxItem>>();
  private readonly keyOf = new WeakMap<InboxItem, string>();
  private readonly perSession = new Map<string, Set<string>>();
  private readonly unsubscribe = new Map<string, () => void>();
  private readonly listeners = new Set<(item: InboxItem) => void>();
  private next = 0;

  constructor(private readonly options: InboxOptions) {}

  /** Collects the refusals of `session` from its audit log as they are written. */
  watch(session: { readonly id: string; readonly audit: AuditLog }): void {
    this.unsubscribe.get(session.id)?.();
    this.unsubscribe.set(session.id, session.audit.subscribe((entry, time) => this.noteAudit(entry, time)));
  }

  /** Stops collecting for a removed session; its items stay (what it was refused is still worth reading). */
  unwatch(id: string): void {
    this.unsubscribe.get(id)?.();
    this.unsubscribe.delete(id);
  }

  /** Takes one audit line; keeps it when it is a refusal a rule could lift. */
  noteAudit(entry: Readonly<AuditEntry>, time = new Date().toISOString()): void {
    if ((entry.action !== 'deny' && entry.action !== 'would_deny') || !APPROVABLE.has(entry.reason)) return;
    const host = normalizeHost(entry.host);
    if (!host) return;
    const tunnel = entry.kind === 'tunnel';
    const path = tunnel ? null : plainText(entry.path.split('?')[0] ?? '/', INBOX_LIMITS.pathChars);
    this.upsert(
      { kind: 'denied', session: entry.session, scheme: entry.scheme, host, port: entry.port, method: tunnel ? null : plainText(entry.method, 20), path, reason: entry.reason, rule: entry.rule },
      time,
      (item) => {
        item.policyVersion = entry.policy_version;
        // Refused again after it was approved: the approval did not cover it.
        if (item.state === 'approved') item.state = 'open';
      },
    );
  }

  /**
   * Files an agent's access request. Every field comes from the session: host and path must be
   * what a rule could name, method an HTTP token, the reason is cut to INBOX_LIMITS.noteChars of
   * plain text. The same request again counts up instead of adding an item.
   */
  requestAccess(sessionId: string, input: AccessRequestInput): InboxItem {
    if (!this.options.sessionExists(sessionId)) throw new AccessRequestError('no such session');
    if (typeof input !== 'object' || input === null) throw new AccessRequestError('expected an object with host, method, path and reason');
    if (typeof input.host !== 'string' || input.host.length > 260) throw new AccessRequestError('host: expected a host name, e.g. "api.example.com"');
    const host = normalizeHost(input.host);
    if (!host) throw new AccessRequestError('host: expected a host name or IP address, e.g. "api.example.com"');
    const port = input.port ?? 443;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new AccessRequestError('port: expected a whole number from 1 to 65535');
    const method = input.method ?? 'GET';
    if (typeof method !== 'string' || !METHOD.test(method)) throw new AccessRequestError('method: expected an HTTP method such as GET or POST');
    const rawPath = input.path ?? '/';
    if (typeof rawPath !== 'string' || rawPath.length > INBOX_LIMITS.pathChars) throw new AccessRequestError(`path: expected a path of at most ${INBOX_LIMITS.pathChars} characters`);
    const path = rawPath.split('?')[0]!;
    if (!PATH.test(path)) throw new AccessRequestError('path: expected a path starting with "/" in URL characters (percent-encode anything else)');
    if (input.reason !== undefined && typeof input.reason !== 'string') throw new AccessRequestError('reason: expected text');
    const note = plainText(input.reason ?? '', INBOX_LIMITS.noteChars);
    const now = new Date().toISOString();
    return this.upsert(
      { kind: 'requested', session: sessionId, scheme: port === 80 ? 'http' : 'https', host, port, method: method.toUpperCase(), path, reason: 'access_request', rule: null },
      now,
      (item) => {
        item.note = note;
      },
    );
  }

  private upsert(fields: Omit<InboxItem, 'id' | 'count' | 'firstSeen' | 'lastSeen' | 'state'>, time: string, update: (item: Mutable<InboxItem>) => void): InboxItem {
    const key = [fields.session, fields.kind, fields.scheme, fields.host, fields.port, fields.method ?? '', fields.path ?? ''].join('\u0000');
    let item = this.byKey.get(key);
    if (item) {
      item.count++;
      item.lastSeen = time;
      // Recently seen items go last, so eviction takes the one seen longest ago.
      const own = this.perSession.get(item.session)!;
      own.delete(item.id);
      own.add(item.id);
    } else {
      item = { ...fields, id: String(++this.next), count: 1, firstSeen: time, lastSeen: time, state: 'open' };
      this.items.set(item.id, item);
      this.byKey.set(key, item);
      this.keyOf.set(item, key);
      let own = this.perSession.get(item.session);
      if (!own) this.perSession.set(item.session, (own = new Set()));
      own.add(item.id);
      if (own.size > INBOX_LIMITS.itemsPerSession) this.drop(own.values().next().value!);
    }
    update(item);
    this.tell(item);
    return { ...item };
  }

  private drop(id: string): void {
    const item = this.items.get(id);
    if (!item) return;
    this.items.delete(id);
    this.perSession.get(item.session)?.delete(id);
    this.byKey.delete(this.keyOf.get(item)!);
  }

  /** Items, most recently seen first; by default the open ones only. */
  list(filter: { readonly session?: string; readonly all?: boolean } = {}): InboxItem[] {
    return [...this.items.values()]
      .filter((item) => (filter.all || item.state === 'open') && (filter.session === undefined || item.session === filter.session))
      .sort((a, b) => (a.lastSeen < b.lastSeen ? 1 : a.lastSeen > b.lastSeen ? -1 : Number(b.id) - Number(a.id)))
      .map((item) => ({ ...item }));
  }

  get(id: string): InboxItem | undefined {
    const item = this.items.get(id);
    return item && { ...item };
  }

  /** Marks an item approved or dismissed; false when there is no such item. */
  settle(id: string, state: 'approved' | 'dismissed'): boolean {
    const item = this.items.get(id);
    if (!item) return false;
    item.state = state;
    this.tell(item);
    return true;
  }

  private tell(item: InboxItem): void {
    for (const listener of this.listeners) listener({ ...item });
  }

  /** Told about every new or changed item. */
  subscribe(listener: (item: InboxItem) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
