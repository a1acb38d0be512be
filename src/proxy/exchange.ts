// One exchange: a request, a tunnel or an upgrade, from admission to its audit line. It holds the
// session's policy as it was at admission, the audit record, and the channel the client is
// answered on; every refusal, failure and end of a request goes through it, so each is answered
// and audited in one way and the audit line is written by exactly one place.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type pino from 'pino';
import { decide } from '../policy/index.js';
import type { Decision, DenyReason, Policy, RequestFacts } from '../policy/index.js';
import type { HostAnswer, OutgoingRequest, SwapResult } from '../credentials/broker.js';
import { CredentialUnavailable } from '../credentials/broker.js';
import type { ProxySession, RequestAccess } from './context.js';
import { DestinationBlocked } from './upstream.js';
import type { Upstream } from './upstream.js';
import { TIMEOUT_CODES } from './http1/errors.js';
import type { ResponseOut } from './http1/types.js';
import { denialPhrase, denyBody, denyGraphql, denyText, endWith, rawResponse } from './responses.js';
import type { DenyInfo } from './responses.js';
import { RequestRecord } from './record.js';
import type { Outcome } from './record.js';
import { usageOf } from './usage.js';
import type { Authority } from './target.js';
import type { UsageRecord } from '../audit/entry.js';

/** What every exchange needs of the proxy. */
export interface ExchangeDeps {
  readonly upstream: Upstream;
  /** The proxy's own operational log (never the audit log). */
  readonly log: pino.Logger;
  /** The operator's inbox, for the in-session endpoint's access requests. */
  readonly access?: RequestAccess;
}

/**
 * Where the client is answered: an HTTP response (plain requests, requests inside a tunnel), or
 * the raw socket (CONNECT, upgrades, heads the parser refused).
 */
export type Channel = { readonly res: ResponseOut } | { readonly socket: Duplex };

export type Forward = Extract<SwapResult, { kind: 'forward' }>;
/** A request a credential answers itself (its token endpoint), see SwapResult. */
export type Answered = Extract<SwapResult, { kind: 'answer' }>;

/** The request body went over the session's upload budget (thrown from the body counter). */
export class UploadBudgetExceeded extends Error {
  constructor() {
    super('upload budget exceeded');
  }
}

/** What an error means for the client. */
export interface Failure {
  readonly status: number;
  readonly reason: DenyReason;
  /** A refusal (audited as deny) rather than an allowed request that failed. */
  readonly deny: boolean;
  readonly message: string;
  readonly detail: string | undefined;
  /** The connection closes after the answer (the request body was not read to its end). */
  readonly close?: boolean;
}

/**
 * The one mapping from an error to its answer: a blocked destination is a denial (403), an upload
 * over budget 429, a request head the parser refused 400 (431 when too large, 408 when too slow),
 * a client body that never came 408, timeouts 504, the client leaving 499, any other upstream
 * failure 502.
 */
export function failureOf(err: Error & { code?: string }, upstream: Authority): Failure {
  if (err instanceof DestinationBlocked) {
    return { status: 403, reason: 'destination_blocked', deny: true, message: err.message, detail: err.message };
  }
  if (err instanceof UploadBudgetExceeded) {
    const message = "Airlock: the session's upload budget (limits.max_upload_bytes) is used up; the request was cut off.";
    return { status: 429, reason: 'upload_budget_exceeded', deny: true, message, detail: undefined, close: true };
  }
  const code = err.code ?? err.name;
  // Node's parser (and the tunnel's own) report a head it will not serve with these codes.
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return { status: 408, reason: 'bad_request', deny: true, message: 'Airlock: the request head took too long.', detail: code, close: true };
  }
  if (code.startsWith('HPE_')) {
    const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    return { status, reason: 'bad_request', deny: true, message: `Airlock: malformed request (${code}).`, detail: code, close: true };
  }
  if (code === 'ABORTED') return { status: 499, reason: 'upstream_error', deny: false, message: '', detail: 'client_closed' };
  if (code === 'CLIENT_BODY_TIMEOUT') {
    return { status: 408, reason: 'upstream_error', deny: false, message: 'Airlock: the request body did not arrive in time.', detail: code };
  }
  const status = TIMEOUT_CODES.has(code) ? 504 : 502;
  return { status, reason: 'upstream_error', deny: false, message: `Airlock: upstream ${upstream.host}:${upstream.port} failed (${code}).`, detail: code };
}

const NOT_DECIDED: Outcome = { action: 'deny', rule: null, reason: 'bad_request' };

export class Exchange {
  /** The session's policy when the exchange was admitted: it decides the whole exchange. */
  readonly policy: Policy;
  private readonly record: RequestRecord;
  private decision: Decision | null = null;
  /** Set by a refusal or failure; otherwise the decision's outcome is audited. */
  private outcome: Outcome | null = null;
  private detail: string | undefined;
  /** Bytes up and down, read when an HTTP exchange closes. */
  private counter: (() => readonly [number, number]) | null = null;
  /** Called when the client leaves an HTTP exchange before its response was sent whole. */
  private onClientGone: (() => void) | null = null;
  private watching = false;
  /** The audit line is written: nothing more is answered or recorded. */
  private ended = false;
  /** Refused after admission by what the request body said, and answered by the caller. */
  private refusedInBody = false;
  /** Denials are answered as JSON, in plain text (see denyInText) or as GraphQL errors. */
  private denials: 'json' | 'text' | 'graphql' = 'json';

  constructor(
    readonly deps: ExchangeDeps,
    readonly session: ProxySession,
    kind: 'request' | 'tunnel' | 'websocket',
    method: string,
    readonly scheme: 'http' | 'https',
    private readonly channel: Channel,
  ) {
    this.policy = session.policy;
    this.record = new RequestRecord(session, this.policy.digest, kind, method, scheme);
  }

  // ---- what is audited

  target(host: string, port: number, pathWithQuery: string): void {
    this.record.target(host, port, pathWithQuery);
  }

  get authority(): Authority {
    return this.record.authority;
  }

  /** The rule that decided, once decided. */
  get rule(): string | null {
    return this.decision?.rule ?? null;
  }

  usedCredentials(names: readonly string[]): void {
    this.record.usedCredentials(names);
  }

  bytes(up: number, down: number): void {
    this.record.bytes(up, down);
  }

  /** Where the line's LLM token usage comes from, asked when the line is written. */
  usageFrom(source: () => UsageRecord | undefined): void {
    this.record.usageFrom(source);
  }

  /** A detail for the audit line (e.g. that a secret was scrubbed), unless a failure sets one. */
  note(detail: string): void {
    this.detail = detail;
  }

  /**
   * Denials are answered in plain text: git prints a refused request's text body as "remote: ..."
   * lines, and shows nothing of a JSON one.
   */
  denyInText(): void {
    this.denials = 'text';
  }

  /** Denials are answered as GraphQL errors ({"errors": [{"message": ...}]}), which clients print. */
  denyInGraphql(): void {
    this.denials = 'graphql';
  }

  /** Whether the client has gone (its connection closed). */
  get gone(): boolean {
    return 'res' in this.channel ? this.channel.res.destroyed : this.channel.socket.destroyed;
  }

  // ---- admission: limits, decision, credential swap

  /**
   * The session's limits: a request token, a connection slot (given back when the channel
   * closes) and the upload budget for a declared body. Over any of them: refused with 429.
   */
  withinLimits(need: { readonly connection: boolean; readonly upload?: number }): boolean {
    const usage = usageOf(this.session);
    if (!usage.takeRequest()) {
      this.refuse(429, 'rate_limited', 'Airlock: this session is over its request-rate limit; retry later.', 'session request rate');
      return false;
    }
    if (need.connection) {
      if (!usage.openConnection()) {
        this.refuse(429, 'rate_limited', 'Airlock: this session is over its connection limit; retry later.', 'session connection limit');
        return false;
      }
      this.onClose(() => usage.closeConnection());
    }
    if (need.upload !== undefined && need.upload > 0 && need.upload > usage.uploadLeft()) {
      this.refuse(429, 'upload_budget_exceeded', "Airlock: this request would exceed the session's upload budget (limits.max_upload_bytes).");
      return false;
    }
    return true;
  }

  /** The policy's answer for these facts, without acting on it (a tunnel's other SNI names). */
  judge(facts: RequestFacts): Decision {
    return decide(this.policy, facts);
  }

  /** Decides the exchange without acting on the decision (what is audited, which rule). */
  consider(facts: RequestFacts): Decision {
    return (this.decision = this.judge(facts));
  }

  /**
   * Decides the exchange and acts on it: the decision (allow, or would_deny in report mode), or
   * null when it was denied (answered with 403 and
   * audited, with `deniedPath` as the path when given).
   */
  decide(facts: RequestFacts, deniedPath?: string): Decision | null {
    const decision = this.consider(facts);
    if (decision.detail) this.note(decision.detail);
    if (decision.action !== 'deny') return decision;
    if (deniedPath !== undefined) this.target(this.authority.host, this.authority.port, deniedPath);
    this.refuse(403, decision.reason, decision.message, decision.detail);
    return null;
  }

  /**
   * The credential swap: placeholders become secrets in what is sent, or the exchange is refused
   * (a placeholder bound elsewhere: 403; a secret source that failed: 502, which the session
   * learns nothing more about). `then` runs with what to send, unless refused or the client left.
   */
  swap(request: OutgoingRequest, then: (forward: Forward) => void, answered?: (answer: Answered) => void): void {
    if (this.session.credentials.empty) {
      then({ kind: 'forward', pathWithQuery: request.pathWithQuery, headers: request.headers, used: [], bodyTransform: null, echoes: [] });
      return;
    }
    // A secret refreshed on the host for this request: the exchange is admitted before that goes
    // upstream, and its line says so.
    const refreshed: string[] = [];
    const beforeUpstream = (credential: string) => {
      refreshed.push(credential);
      this.usedCredentials([credential]);
      return this.admit();
    };
    this.session.credentials.swapRequest(request, beforeUpstream).then(
      (swap) => {
        if (refreshed.length > 0) this.note(`${[...new Set(refreshed)].join(', ')}: refreshed upstream on the host for this request`);
        if (swap.kind === 'misuse') {
          const message = `credential "${swap.credential}" placeholder found in ${swap.where}: ${swap.why}`;
          this.refuse(403, 'credential_misuse', message, `${swap.credential} in ${swap.where}`);
          return;
        }
        if (swap.kind === 'answer') {
          // Only plain requests are answered here; anything else (an upgrade) to such an endpoint is refused.
          if (!answered) this.refuse(403, 'credential_misuse', `credential "${swap.credential}": this endpoint is answered by the proxy, and only to plain requests`, swap.credential);
          else answered(swap);
          return;
        }
        this.usedCredentials(swap.used);
        if (this.gone) {
          // The client left while the secret was being resolved: send nothing, say so.
          this.finish(499, 'client_closed');
          return;
        }
        then(swap);
      },
      (err: Error) => {
        // Refused already (its refresh could not be admitted): nothing more to say.
        if (this.answered) return;
        // The details (paths, commands) stay in the proxy log; the session learns only that.
        this.deps.log.error({ session: this.session.id, err: err.message }, 'credential swap failed');
        if (err instanceof CredentialUnavailable) {
          // A host-side login or token source that failed: the session is told which and what fixes it.
          this.refuse(err.status, 'upstream_error', err.sessionMessage, 'credential unavailable');
          return;
        }
        this.refuse(502, 'upstream_error', 'Airlock: a credential this request needs is unavailable right now (the operator can see why in the proxy log).');
      },
    );
  }

  /**
   * Records the exchange's admission (decision, rule, credentials, target) in the audit log before
   * its first byte goes upstream. False when that cannot be written (a full disk): the exchange is
   * refused with 503 and nothing may be sent.
   */
  admit(): boolean {
    if (this.ended) return false;
    if (this.record.admit(this.outcome ?? this.decided())) return true;
    this.auditUnavailable();
    return false;
  }

  /**
   * admit(), batched with this event-loop turn's other admissions into one write: `go` runs once
   * the line is written, unless the exchange ended meanwhile (or the client left: then it ends).
   */
  admitThen(go: () => void): void {
    if (this.ended) return;
    this.record.admitSoon(this.outcome ?? this.decided(), (written) => {
      if (this.ended) return;
      if (!written) return this.auditUnavailable();
      if (this.gone) return this.finish(499, 'client_closed');
      go();
    });
  }

  private auditUnavailable(): void {
    const why = this.session.audit.failure ?? 'log closed';
    this.refuse(503, 'audit_unavailable', 'Airlock: the audit log cannot be written right now (the operator can see why in the proxy log); nothing was sent. Retry later.', why);
  }

  // ---- the end

  /**
   * Refuses the exchange: answered (a 403 with the JSON denial, anything else with the message)
   * and audited as a denial. The connection closes after the answer.
   */
  refuse(status: number, reason: DenyReason, message: string, detail?: string): void {
    if (this.ended) return;
    this.outcome = { action: 'deny', rule: this.rule, reason };
    this.detail = detail;
    const info = this.denyInfo(reason, message);
    const body = status === 403 || this.denials === 'graphql' ? this.denial(info) : message + '\n';
    this.answer(status, body, [`X-Airlock-Decision: deny; reason=${reason}`, ...(reason === 'rate_limited' ? ['Retry-After: 1'] : [])], true, status === 403 ? denialPhrase(info) : undefined);
  }

  /**
   * Refuses the exchange with an answer in the request's own protocol (JSON-RPC errors), which
   * `render` writes from the denial's facts; audited as a denial. The connection closes after it.
   */
  refuseIn(status: number, reason: DenyReason, message: string, detail: string, render: (info: DenyInfo) => string): void {
    if (this.ended) return;
    this.outcome = { action: 'deny', rule: this.rule, reason };
    this.detail = detail;
    const body = render(this.denyInfo(reason, message));
    this.answer(status, body, [`X-Airlock-Decision: deny; reason=${reason}`], true, undefined, 'application/json');
  }

  /**
   * The proxy answers this exchange itself (the in-session endpoint): nothing is forwarded, and
   * it is audited as allowed by `rule`.
   */
  answeredHere(rule: string): void {
    this.decision = { action: 'allow', reason: 'allowed', rule, message: 'answered by the proxy', inspect: true };
  }

  /**
   * The proxy's own JSON answer for a credential that stands in for a token endpoint: audited as
   * allowed, or as refused for the answer's reason; a host-side failure goes to the proxy log.
   */
  answerForCredential(credential: string, a: HostAnswer): void {
    // Refused already (its refresh could not be admitted).
    if (this.answered) return;
    if (a.error) this.deps.log.error({ session: this.session.id, credential, err: a.error }, 'credential refresh failed');
    if (a.refused) {
      this.outcome = { action: 'deny', rule: this.rule, reason: a.refused.reason };
      this.detail = a.refused.detail;
    } else {
      this.usedCredentials([credential]);
      this.note(a.detail);
    }
    const headers = ['Cache-Control: no-store', ...(a.refused ? [`X-Airlock-Decision: deny; reason=${a.refused.reason}`] : [])];
    this.answer(a.status, JSON.stringify(a.body), headers, false);
  }

  /** What a denial of this exchange says (host, policy, decision), for answers written elsewhere. */
  refusal(): { readonly session: string; readonly policy: string; readonly version: string; readonly host: string; readonly port: number; readonly rule: string | null; readonly reason: DenyReason; readonly message: string } | null {
    const d = this.decision;
    if (!d || d.action !== 'deny') return null;
    return { session: this.session.id, policy: this.policy.name, version: this.policy.digest, ...this.authority, rule: d.rule, reason: d.reason, message: d.message };
  }

  /** Audits a refusal the channel can no longer carry an answer for (a tunnel already under TLS). */
  refused(status: number, reason: DenyReason, detail: string): void {
    if (this.ended) return;
    this.outcome = { action: 'deny', rule: this.rule, reason };
    this.finish(status, detail);
  }

  /** An error ends the exchange: answered as failureOf() maps it (or cut off, once a response is under way). */
  fail(err: Error & { code?: string }): void {
    this.failed(failureOf(err, this.authority));
  }

  /** A failure of the proxy's own (a response it cannot scrub): answered like an error. */
  failed(failure: Failure): void {
    // After a refusal in the body, the upstream request was stopped on purpose: its end is no failure.
    if (this.ended || this.refusedInBody) return;
    const action = failure.deny ? 'deny' : this.decided().action;
    this.outcome = { action, rule: this.rule, reason: failure.reason };
    this.detail = failure.detail;
    if (failure.status === 499) {
      this.finish(499, failure.detail);
      return;
    }
    if ('res' in this.channel && this.channel.res.headersSent) {
      this.channel.res.destroy(); // audited when it closes, with the status already sent
      return;
    }
    const body = failure.status === 403 ? this.denial(this.denyInfo(failure.reason, failure.message)) : failure.message + '\n';
    this.answer(failure.status, body, failure.deny ? [`X-Airlock-Decision: deny; reason=${failure.reason}`] : [], failure.close === true);
  }

  /**
   * Decides the exchange again from its request body (a git push's ref updates) while the
   * response is under way (after responding()): audited as `action` for `reason` when it closes.
   * A denial is answered by the caller, in the body's own protocol, once it has stopped the
   * upstream request.
   */
  overrule(action: 'deny' | 'would_deny', reason: DenyReason, detail: string): void {
    if (this.ended) return;
    this.outcome = { action, rule: this.rule, reason };
    this.detail = detail;
    if (action === 'deny') this.refusedInBody = true;
  }

  /**
   * The response goes out on the HTTP channel: the exchange is audited when it closes, with the
   * status sent (499 when none was), and `onClientGone` runs if the client left before its end.
   */
  responding(counter: () => readonly [number, number], onClientGone: () => void): void {
    this.counter = counter;
    this.onClientGone = onClientGone;
    this.watchClose();
  }

  /**
   * Ends a tunnel or upgrade: its audit line, with the decision's outcome; `answer`, when given,
   * is sent on the raw socket with that status (an upstream that refused an upgrade, say).
   */
  end(status: number, detail?: string, answer?: string): void {
    if (this.ended) return;
    this.finish(status, detail);
    if (answer !== undefined && 'socket' in this.channel) answerRaw(this.channel.socket, status, answer);
  }

  /** Runs when the client's channel closes (a slot given back, say). */
  onClose(listener: () => void): void {
    if ('res' in this.channel) this.channel.res.once('close', listener);
    else this.channel.socket.once('close', listener);
  }

  /** Answered or ended: an HTTP answer is audited only when its response closes. */
  private get answered(): boolean {
    return this.ended || ('res' in this.channel && this.channel.res.headersSent);
  }

  private decided(): Outcome {
    const d = this.decision;
    return d ? { action: d.action, rule: d.rule, reason: d.reason } : NOT_DECIDED;
  }

  /** The only call of record.finish(): the record writes its line once. */
  private finish(status: number, detail?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.record.finish(status, this.outcome ?? this.decided(), detail ?? this.detail);
  }

  /** The body of a 403: the JSON denial, or the same in plain text for git. */
  private denial(info: DenyInfo): string {
    if (this.denials === 'text') return denyText(info);
    return this.denials === 'graphql' ? denyGraphql(info) : denyBody(info);
  }

  private denyInfo(reason: DenyReason, message: string): DenyInfo {
    const { host, port } = this.authority;
    return { session: this.session.id, policy: this.policy.name, host, port, decision: { rule: this.rule, reason, message } };
  }

  private answer(status: number, body: string, headers: string[], close: boolean, phrase?: string, contentType?: string): void {
    if ('socket' in this.channel) {
      this.finish(status);
      answerRaw(this.channel.socket, status, body, headers, phrase);
      return;
    }
    const res = this.channel.res;
    if (res.destroyed) {
      // The client left (during a credential swap, say): nothing to answer, but it is audited.
      this.finish(499, this.detail ?? 'client_closed');
      return;
    }
    this.counter ??= () => [0, Buffer.byteLength(body)];
    this.watchClose();
    // Whatever the client still sends is discarded.
    if (close) res.shouldKeepAlive = false;
    const head: Record<string, string | number> = {
      'Content-Type': contentType ?? (body.startsWith('{') ? 'application/json' : 'text/plain; charset=utf-8'),
      'Content-Length': Buffer.byteLength(body),
    };
    for (const line of headers) {
      const colon = line.indexOf(':');
      head[line.slice(0, colon)] = line.slice(colon + 1).trim();
    }
    res.writeHead(status, head);
    res.end(body);
  }

  private watchClose(): void {
    if (this.watching || !('res' in this.channel)) return;
    this.watching = true;
    const res = this.channel.res;
    res.on('close', () => {
      const unfinished = !res.writableFinished;
      if (unfinished) this.onClientGone?.();
      if (this.counter) {
        const [up, down] = this.counter();
        this.record.bytes(up, down);
      }
      // A client that left before any answer gets 499 (as nginx logs it), not res.statusCode's
      // default 200; one that left mid-response keeps the status it was sent.
      this.finish(res.headersSent ? res.statusCode : 499, this.detail ?? (unfinished ? 'client_closed' : undefined));
    });
  }
}

/** A final answer on a raw socket, which then closes (CONNECT, upgrades, refused heads, 407). */
export function answerRaw(socket: Duplex, status: number, body: string, headers: string[] = [], phrase?: string): void {
  endWith(socket, rawResponse(status, phrase ?? STATUS_CODES[status] ?? 'Error', body, headers));
}
