// One HTTP request through the proxy: work out the target, decide, swap credentials, stream to the
// upstream and back with backpressure, abort upstream if the client leaves, audit once.
import type http from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type pino from 'pino';
import type { Decision, RequestFacts } from '../policy/index.js';
import type { ProxySession } from './context.js';
import { DestinationBlocked } from './upstream.js';
import { TIMEOUT_CODES } from './http1-client.js';
import type { BodySink } from './http1-client.js';
import type { ChunkScrubber, Replacement } from '../credentials/replace-stream.js';
import type { Upstream } from './upstream.js';
import type { TunnelContext } from './tunnel-context.js';
import { methodOverrides, normalisePath, pathOverrides, parseAbsoluteUri, parseAuthority } from './target.js';
import type { Authority } from './target.js';
import { denyBody, denyText, isGitClient } from './responses.js';
import type { DenyInfo } from './responses.js';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.js';
import type { HeadFields } from './request-head.js';
import { outcomeOf, RequestRecord } from './record.js';
import { usageOf } from './usage.js';
import { gitPushInspector } from './git/inspector.js';
import type { Outcome } from './record.js';

export interface ForwardDeps {
  readonly upstream: Upstream;
  readonly log: pino.Logger;
  decide(session: ProxySession, facts: RequestFacts): Decision;
  denyInfo(session: ProxySession, target: Authority, decision: Pick<Decision, 'rule' | 'reason' | 'message'>): DenyInfo;
}

/**
 * What forwarding reads of a request head. Node's IncomingMessage has it; so does the tunnel's
 * fast path (TunnelRequest), which skips Node's HTTP server.
 */
export interface RequestHead {
  readonly method?: string;
  readonly url?: string;
  readonly rawHeaders: string[];
  readonly headers: HeadFields;
  readonly socket: { readonly bytesWritten: number };
}

/** What forwarding does with a response: the part of Node's ServerResponse it uses. */
export interface ResponseOut extends BodySink {
  readonly headersSent: boolean;
  readonly statusCode: number;
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  readonly writableLength: number;
  /** False: the connection closes after this response. */
  shouldKeepAlive: boolean;
  writeHead(status: number, headers: Record<string, string | string[] | number>): unknown;
  end(chunk?: Buffer | string): unknown;
  destroy(): unknown;
  on(event: 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  once(event: 'close' | 'drain', listener: () => void): unknown;
}

export interface Exchange {
  readonly req: RequestHead;
  readonly session: ProxySession;
  readonly scheme: 'http' | 'https';
  /** Set for requests inside an inspected tunnel. */
  readonly tunnel?: TunnelContext;
}

export interface Refusal {
  readonly status: number;
  readonly reason: Decision['reason'];
  readonly message: string;
}

export interface CheckedTarget extends Authority {
  /** Path (no query, dot segments resolved) that rules saw. */
  readonly path: string;
  /** The path (no query) as the client sent it. */
  readonly rawPath: string;
  /** Path and query sent upstream: the one that was checked. */
  readonly forward: string;
}

function refusal(status: number, reason: Decision['reason'], message: string): Refusal {
  return { status, reason, message };
}

function sameAuthority(a: Authority, b: Authority): boolean {
  return a.host === b.host && a.port === b.port;
}

/**
 * Where a request is going, with the Host header and (inside a tunnel) the CONNECT host and SNI
 * all required to agree. Shared by HTTP requests and WebSocket upgrades.
 */
export function checkTarget(x: Exchange): CheckedTarget | Refusal {
  const { req, tunnel } = x;
  const url = req.url ?? '';
  let authority: Authority;
  let pathWithQuery: string;
  if (tunnel) {
    authority = tunnel.connect;
    pathWithQuery = url;
    if (!url.startsWith('/')) {
      const absolute = parseAbsoluteUri(url);
      if (!absolute || (absolute.scheme !== 'https' && absolute.scheme !== 'wss')) {
        return refusal(400, 'bad_request', 'Airlock: malformed request target inside the tunnel.');
      }
      if (!sameAuthority(absolute, authority)) {
        return refusal(403, 'host_mismatch', `request for ${absolute.host}:${absolute.port} inside a tunnel to ${authority.host}:${authority.port}`);
      }
      pathWithQuery = absolute.pathWithQuery;
    }
    if (tunnel.sni !== null && tunnel.sni !== authority.host) {
      return refusal(403, 'host_mismatch', `TLS server name ${tunnel.sni} differs from the CONNECT host ${authority.host}`);
    }
  } else {
    const absolute = parseAbsoluteUri(url);
    if (!absolute || (absolute.scheme !== 'http' && absolute.scheme !== 'ws')) {
      const why =
        absolute?.scheme === 'https' || absolute?.scheme === 'wss'
          ? 'https:// URLs must be requested through CONNECT'
          : 'the request target is not an absolute http:// URI (is this client configured to use the proxy?)';
      return refusal(400, 'bad_request', `Airlock: bad proxy request: ${why}.`);
    }
    authority = absolute;
    pathWithQuery = absolute.pathWithQuery;
  }
  let hostHeaders = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') hostHeaders++;
  if (hostHeaders > 1) return refusal(400, 'bad_request', 'Airlock: more than one Host header.');
  const hostHeader = req.headers.host;
  if (hostHeader === undefined) {
    if (tunnel) return refusal(400, 'bad_request', 'Airlock: request without a Host header.');
  } else if (hostHeader !== tunnel?.matchedHostHeader) {
    const host = parseAuthority(hostHeader, x.scheme === 'https' ? 443 : 80);
    if (!host || !sameAuthority(host, authority)) {
      return refusal(403, 'host_mismatch', `Host header ${JSON.stringify(hostHeader)} does not match the target ${authority.host}:${authority.port}`);
    }
    // Keep-alive requests in a tunnel repeat the same Host: check each spelling once.
    if (tunnel) tunnel.matchedHostHeader = hostHeader;
  }
  const path = normalisePath(pathWithQuery);
  if (!path) return refusal(400, 'bad_request', 'Airlock: malformed request path.');
  return { host: authority.host, port: authority.port, path: path.path, rawPath: path.raw, forward: path.forward };
}

/** Decides a request; returns the target and decision, or a refusal to send. */
export function admit(
  deps: ForwardDeps,
  x: Exchange,
  record: RequestRecord,
): { target: CheckedTarget; decision: Decision } | { refusal: Refusal; decision: Pick<Decision, 'rule'> } {
  const target = checkTarget(x);
  if ('status' in target) {
    // Audit what was asked for, even though it was refused.
    const url = x.req.url ?? '';
    const asked = x.tunnel ? null : parseAbsoluteUri(url);
    if (x.tunnel) record.target(x.tunnel.connect.host, x.tunnel.connect.port, url);
    else if (asked) record.target(asked.host, asked.port, asked.pathWithQuery);
    else record.target('-', 0, url.slice(0, 2048));
    return { refusal: target, decision: { rule: null } };
  }
  record.target(target.host, target.port, target.forward);
  const decision = deps.decide(x.session, {
    phase: 'request',
    scheme: x.scheme,
    host: target.host,
    port: target.port,
    method: x.req.method ?? 'GET',
    path: target.path,
    rawPath: target.rawPath,
    methodOverrides: methodOverrides(x.req.rawHeaders, target.forward),
    pathOverrides: pathOverrides(x.req.rawHeaders),
    query: target.forward.slice(target.path.length),
  });
  if (decision.action === 'deny') {
    // Audit a refused path as it was asked for (the query is the same either way): "/v1/a/%2e%2e/b"
    // says more about the attempt than the "/v1/b" it resolves to.
    record.target(target.host, target.port, target.rawPath + target.forward.slice(target.path.length));
    return { refusal: refusal(403, decision.reason, decision.message), decision };
  }
  return { target, decision };
}

/** Answers a request the proxy refused, and audits it when the answer is sent. */
export function refuse(
  deps: ForwardDeps,
  x: Exchange & { res: ResponseOut; record: RequestRecord },
  refusalValue: Refusal,
  rule: string | null,
  detail?: string,
): void {
  const { res, record } = x;
  if (res.destroyed) {
    // The client left (during a credential swap, say): nothing to answer, but the refusal is
    // still audited.
    record.finish(499, { action: 'deny', rule, reason: refusalValue.reason }, detail ?? 'client_closed');
    return;
  }
  const decision = { rule, reason: refusalValue.reason, message: refusalValue.message };
  const info = refusalValue.status === 403 ? deps.denyInfo(x.session, record.authority, decision) : null;
  const body = !info ? refusalValue.message + '\n' : isGitClient(x.req.rawHeaders) ? denyText(info) : denyBody(info);
  res.on('close', () => {
    record.bytes(0, Buffer.byteLength(body));
    record.finish(refusalValue.status, { action: 'deny', rule, reason: refusalValue.reason }, detail);
  });
  // Whatever the client still sends is discarded; the connection closes after the answer.
  res.shouldKeepAlive = false;
  res.writeHead(refusalValue.status, {
    'Content-Type': body.startsWith('{') ? 'application/json' : 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Airlock-Decision': `deny; reason=${refusalValue.reason}`,
  });
  res.end(body);
}

/** The body of a request parsed by Node's server: the request itself, when it has one. */
export function bodyOf(req: http.IncomingMessage): Readable | null {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0' ? req : null;
  return req.headers['transfer-encoding'] !== undefined ? req : null;
}

/** A request to forward: its head, its body (null when none) and where the answer goes. */
export interface HttpExchange extends Exchange {
  readonly res: ResponseOut;
  readonly body: Readable | null;
}

function responseHasBody(method: string | undefined, status: number): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}

export function forwardHttp(deps: ForwardDeps, x: HttpExchange): void {
  const record = new RequestRecord(x.session, 'request', x.req.method ?? 'GET', x.scheme);
  const admitted = admit(deps, x, record);
  if ('refusal' in admitted) {
    refuse(deps, { ...x, record }, admitted.refusal, admitted.decision.rule);
    return;
  }
  const usage = usageOf(x.session);
  if (!usage.takeRequest()) {
    refuse(deps, { ...x, record }, refusal(429, 'rate_limited', 'Airlock: this session is over its request-rate limit; retry later.'), admitted.decision.rule);
    return;
  }
  const declared = Number(x.req.headers['content-length'] ?? 0);
  if (declared > 0 && declared > usage.uploadLeft()) {
    refuse(deps, { ...x, record }, refusal(429, 'upload_budget_exceeded', 'Airlock: this request would exceed the session\'s upload budget (limits.max_upload_bytes).'), admitted.decision.rule);
    return;
  }
  const { target, decision } = admitted;
  const { req, res, session } = x;
  const headers = forwardRequestHeaders(req.rawHeaders, req.headers.connection);
  if (session.credentials.empty) {
    send(deps, x, record, target, decision, headers, target.forward, null, []);
    return;
  }
  session.credentials
    .swapRequest({
      scheme: x.scheme,
      host: target.host,
      port: target.port,
      pathWithQuery: target.forward,
      headers,
      contentType: req.headers['content-type'],
    })
    .then(
      (swap) => {
        if (swap.kind === 'misuse') {
          refuse(
            deps,
            { ...x, record },
            refusal(403, 'credential_misuse', `credential "${swap.credential}" placeholder found in ${swap.where}: ${swap.why}`),
            decision.rule,
            `${swap.credential} in ${swap.where}`,
          );
          return;
        }
        record.usedCredentials(swap.used);
        if (res.destroyed) {
          // The client left while the secret was being resolved: send nothing, say so.
          record.finish(499, outcomeOf(decision), 'client_closed');
          return;
        }
        send(deps, x, record, target, decision, swap.headers, swap.pathWithQuery, swap.bodyTransform, swap.echoes);
      },
      (err: Error) => {
        // A secret source failed (file gone, command failed): say which, never what.
        deps.log.error({ session: session.id, err: err.message }, 'credential swap failed');
        // The details (paths, commands) stay in the proxy log; the session learns only that.
        refuse(
          deps,
          { ...x, record },
          refusal(502, 'upstream_error', 'Airlock: a credential this request needs is unavailable right now (the operator can see why in the proxy log).'),
          decision.rule,
        );
      },
    );
}

function send(
  deps: ForwardDeps,
  x: HttpExchange,
  record: RequestRecord,
  target: CheckedTarget,
  decision: Decision,
  headers: string[],
  path: string,
  bodyTransform: Duplex | null,
  echoes: readonly Replacement[],
): void {
  const { req, res, session } = x;
  const socket = req.socket;
  const startWritten = socket.bytesWritten;
  let bodyBytes = 0;
  let aborted = false;
  let outcome: Outcome = outcomeOf(decision);
  let detail: string | undefined;
  res.on('close', () => {
    const unfinished = !res.writableFinished;
    if (unfinished) {
      aborted = true;
      call.abort();
    }
    record.bytes(bodyBytes, socket.bytesWritten - startWritten);
    // A client that left before any answer gets 499 (as nginx logs it), not res.statusCode's
    // default 200; one that left mid-response keeps the status it was sent.
    record.finish(res.headersSent ? res.statusCode : 499, outcome, detail ?? (unfinished ? 'client_closed' : undefined));
  });

  let source = x.body;
  if (source && bodyTransform) {
    // The body's length may change: drop Content-Length and let it go chunked.
    for (let i = headers.length - 2; i >= 0; i -= 2) {
      if (headers[i]!.toLowerCase() === 'content-length') headers.splice(i, 2);
    }
    source.on('error', (err) => bodyTransform.destroy(err));
    source = source.pipe(bodyTransform);
  }
  // A git push: its ref updates are checked as the body streams (src/proxy/git/).
  const git = source && gitPushInspector(decision, session.policy.mode, req.rawHeaders);
  if (git) source = source!.pipe(git);
  const usage = usageOf(session);
  const call = deps.upstream.http.request(
    {
      secure: x.scheme === 'https',
      host: target.host,
      port: target.port,
      path,
      method: req.method ?? 'GET',
      headers,
      body: source,
      // Counted as the client sends it upstream; over budget stops the request.
      onBodyChunk: (n) => {
        bodyBytes += n;
        if (!usage.addUpload(n)) throw new UploadBudgetExceeded();
      },
    },
    ({ statusCode, headers: upstreamHeaders }): BodySink => {
      let responseHeaders = forwardResponseHeaders(upstreamHeaders);
      if (!session.credentials.empty) {
        // Headers are scrubbed on every response (HEAD, 204 and 304 included); bodies when present.
        const withBody = responseHasBody(req.method, statusCode);
        const scrub = session.credentials.scrubResponse({
          host: target.host,
          status: statusCode,
          headers: responseHeaders,
          hasBody: withBody,
          onScrub: () => {
            detail = 'secret_scrubbed';
          },
          echoes,
        });
        // A body the scrubber cannot read could carry an echoed secret: fail closed, with a 502
        // when nothing was sent yet.
        const unreadable = (why: string) => {
          outcome = { action: outcome.action, rule: decision.rule, reason: 'upstream_error' };
          detail = why;
          if (res.headersSent) res.destroy();
          else answerText(res, 502, `Airlock: ${why}.\n`);
        };
        if (scrub?.refuse) {
          unreadable(scrub.refuse);
          return discard();
        }
        if (scrub) {
          responseHeaders = scrub.headers;
          const declared = Number(responseHeaders['content-length']);
          if (withBody && scrub.scrubWhole && declared <= WHOLE_BODY_LIMIT) {
            // Small body: scrub it whole and send it with its exact length in one write, not
            // chunked (which would cost an extra TLS record and syscall per response).
            return wholeBody((body) => {
              const clean = scrub.scrubWhole!(body);
              res.writeHead(statusCode, { ...responseHeaders, 'content-length': String(clean.length) });
              res.end(clean);
            });
          }
          if (withBody && scrub.scrubChunks) {
            // The length may change: it goes chunked.
            delete responseHeaders['content-length'];
            res.writeHead(statusCode, responseHeaders);
            return scrubbingSink(res, scrub.scrubChunks);
          }
          const scrubber = scrub.bodyTransform;
          if (scrubber) {
            delete responseHeaders['content-length'];
            const head = responseHeaders;
            scrubber.on('error', (err) => unreadable(err.message));
            // The head goes out with the first decoded bytes, so a body refused early is a 502.
            pipeInto(scrubber, res, () => res.writeHead(statusCode, head));
            return scrubber;
          }
        }
      }
      res.writeHead(statusCode, responseHeaders);
      return res;
    },
  );
  git?.onVerdict((v) => {
    detail = v.detail;
    if (v.reason) outcome = { action: v.answer ? 'deny' : 'would_deny', rule: decision.rule, reason: v.reason };
    if (v.answer) {
      aborted = true; // the push stops here: the client gets the answer, not the server's
      call.abort();
      v.answer(res);
    }
  });
  call.done.catch((err: Error & { code?: string }) => {
    if (aborted) return; // the client left; nothing to answer
    if (err instanceof UploadBudgetExceeded) {
      outcome = { action: 'deny', rule: decision.rule, reason: 'upload_budget_exceeded' };
      if (res.headersSent) return void res.destroy();
      res.shouldKeepAlive = false;
      answerText(res, 429, "Airlock: the session's upload budget (limits.max_upload_bytes) is used up; the request was cut off.\n");
      return;
    }
    if (err instanceof DestinationBlocked) {
      // Decided after resolution, before any packet: a denial like any other.
      outcome = { action: 'deny', rule: decision.rule, reason: 'destination_blocked' };
      detail = err.message;
      if (res.headersSent) return void res.destroy();
      const body = denyBody(deps.denyInfo(session, target, { rule: decision.rule, reason: 'destination_blocked', message: err.message }));
      res.writeHead(403, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'X-Airlock-Decision': 'deny; reason=destination_blocked' });
      res.end(body);
      return;
    }
    const code = err.code ?? err.name;
    outcome = { action: outcome.action, rule: decision.rule, reason: 'upstream_error' };
    detail = code;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const status = code === 'CLIENT_BODY_TIMEOUT' ? 408 : TIMEOUT_CODES.has(code) ? 504 : 502;
    const message =
      status === 408
        ? 'Airlock: the request body did not arrive in time.\n'
        : `Airlock: upstream ${target.host}:${target.port} failed (${code}).\n`;
    answerText(res, status, message);
  });
}

/** A short plain-text answer of the proxy's own. */
function answerText(res: ResponseOut, status: number, message: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(message) });
  res.end(message);
}

class UploadBudgetExceeded extends Error {
  constructor() {
    super('upload budget exceeded');
  }
}

/** Responses up to this size are scrubbed whole (see wholeBody). */
const WHOLE_BODY_LIMIT = 64 * 1024;

/** A sink that gathers a body of known length and hands it over once complete. */
function wholeBody(onComplete: (body: Buffer) => void): BodySink {
  const chunks: Buffer[] = [];
  return {
    write(chunk) {
      chunks.push(chunk);
      return true;
    },
    end(chunk) {
      if (chunk) chunks.push(chunk);
      onComplete(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    },
    cork() {},
    uncork() {},
    once() {},
    on() {},
  };
}

/** Passes a body on to the client with echoed secrets replaced, chunk by chunk. */
function scrubbingSink(res: ResponseOut, scrubber: ChunkScrubber): BodySink {
  return {
    write: (chunk) => {
      let more = true;
      for (const piece of scrubber.push(chunk)) more = res.write(piece);
      return more;
    },
    end: (chunk) => {
      const pieces = chunk ? scrubber.push(chunk) : [];
      pieces.push(scrubber.flush());
      res.end(pieces.length === 1 ? pieces[0] : Buffer.concat(pieces));
    },
    cork: () => res.cork(),
    uncork: () => res.uncork(),
    get writableLength() {
      return res.writableLength;
    },
    once: (event, listener) => res.once(event, listener),
    on: (event, listener) => res.on(event, listener),
  };
}

/** A response body that is not passed on: the upstream connection is closed, not read. */
function discard(): BodySink {
  return { ...wholeBody(() => {}), discard: true };
}

/**
 * Streams a scrubbed body into the response with backpressure (the response need not be a
 * Writable); `writeHead` runs before the first byte (or the end).
 */
function pipeInto(source: Readable, res: ResponseOut, writeHead: () => void): void {
  source.on('data', (chunk: Buffer) => {
    if (!res.headersSent) writeHead();
    if (res.write(chunk)) return;
    source.pause();
    res.once('drain', () => source.resume());
  });
  source.once('end', () => {
    if (!res.headersSent) writeHead();
    res.end();
  });
  res.once('close', () => source.destroy());
}
