// One HTTP request through the proxy: admitted at the entrance, credentials swapped, streamed to
// the upstream and back with backpressure, the upstream aborted if the client leaves; its
// exchange answers every refusal and failure and writes its audit line.
import type http from 'node:http';
import { Readable } from 'node:stream';
import type { Decision } from '../policy/index.js';
import { enter } from './entrance.js';
import type { CheckedTarget, Incoming } from './entrance.js';
import { Exchange, UploadBudgetExceeded } from './exchange.js';
import type { Answered, ExchangeDeps, Forward } from './exchange.js';
import type { BodySink, ResponseOut } from './http1/types.js';
import { bodyCoding, forwardRequestHeaders, forwardResponseHeaders } from './headers.js';
import { discard, responseHasBody, scrubbedSink } from './response-scrub.js';
import { usageOf } from './usage.js';
import { gitPushInspector } from './git/inspector.js';
import { checkGraphql } from './github-graphql.js';
import { BodyTooLarge } from '../credentials/broker.js';
import { checkMcp } from './mcp/request.js';
import { readBounded } from './body.js';
import { mcpResponseSink, uncheckableResponse } from './mcp/response.js';
import { tappedResponse, usageApiFor, UsageTap } from './llm/tap.js';

/** A request to forward: its head, its body (null when none) and where the answer goes. */
export interface HttpRequestIn extends Incoming {
  readonly res: ResponseOut;
  readonly body: Readable | null;
}

/** The body of a request parsed by Node's server: the request itself, when it has one. */
export function bodyOf(req: http.IncomingMessage): Readable | null {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0' ? req : null;
  return req.headers['transfer-encoding'] !== undefined ? req : null;
}

export function forwardHttp(deps: ExchangeDeps, x: HttpRequestIn): void {
  const ex = new Exchange(deps, x.session, 'request', x.req.method ?? 'GET', x.scheme, { res: x.res });
  // A plain request holds a connection slot while it runs; one in a tunnel uses the tunnel's.
  const admitted = enter(ex, x, { connection: !x.tunnel, upload: Number(x.req.headers['content-length'] ?? 0) });
  if (!admitted) return;
  const { target, decision } = admitted;
  const { req } = x;
  const go = (body: Readable | null, mcpDetail?: string) => {
    let headers = forwardRequestHeaders(req.rawHeaders, req.headers.connection);
    // An MCP server's answer is read on its way back: it is asked for uncompressed.
    if (decision.mcp) headers = withoutHeader(headers, 'accept-encoding');
    ex.swap(
      {
        scheme: x.scheme,
        host: target.host,
        port: target.port,
        pathWithQuery: target.forward,
        headers,
        contentType: req.headers['content-type'],
        method: req.method,
        readBody: (max) => (body ? readWhole(body, max) : Promise.resolve(Buffer.alloc(0))),
      },
      // A swap that read the body (to sign it) sends it as read.
      (swap) => send(deps, ex, { ...x, body: swap.body === undefined ? body : swap.body.length > 0 ? Readable.from([swap.body]) : null }, target, decision, swap, mcpDetail),
      (answered) => answerHere(ex, answered, body, req.rawHeaders),
    );
  };
  // A GraphQL request: its document is read and decided before anything is sent; so is the
  // JSON-RPC body of a request to an MCP server.
  if (decision.graphql) checkGraphql(ex, decision.graphql, x.body, req.rawHeaders, go);
  else if (decision.mcp) checkMcp(ex, decision.mcp, x.body, req.rawHeaders, go);
  else go(x.body);
}

/** A request body read whole, refused past `max` bytes (the client's upload is paused there). */
function readWhole(body: Readable, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    readBounded(body, max, {
      done: resolve,
      tooLarge: () => {
        body.pause();
        reject(new BodyTooLarge(`request body over ${max} bytes`));
      },
      failed: reject,
    });
  });
}

/** A request a credential answers itself (a token endpoint): its body read whole (bounded), nothing forwarded. */
function answerHere(ex: Exchange, a: Answered, body: Readable | null, rawHeaders: readonly string[]): void {
  if (bodyCoding(rawHeaders) !== undefined) {
    ex.refuse(415, 'bad_request', 'Airlock: a request to this token endpoint must be sent uncompressed.', `${a.credential}: compressed body`);
    return;
  }
  const done = (bytes: Buffer) => {
    // A refresh the host side makes for this answer is recorded before it goes, like any request.
    const admit = () => {
      ex.usedCredentials([a.credential]);
      return ex.admit();
    };
    a.answer(bytes, admit).then(
      (answer) => ex.answerForCredential(a.credential, answer),
      (err: Error) => ex.fail(err),
    );
  };
  if (!body) return done(Buffer.alloc(0));
  readBounded(body, a.maxBytes, {
    done,
    tooLarge: () =>
      ex.refuse(413, 'bad_request', `Airlock: a request to this token endpoint may be at most ${a.maxBytes} bytes.`, `${a.credential}: body too large`),
    failed: (err) => ex.fail(err),
  });
}

function withoutHeader(headers: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() !== name) out.push(headers[i]!, headers[i + 1]!);
  return out;
}

function send(deps: ExchangeDeps, ex: Exchange, x: HttpRequestIn, target: CheckedTarget, decision: Decision, swap: Forward, mcpDetail?: string): void {
  // Recorded before the upstream sees a byte (written with the turn's other admissions in one
  // write); unrecordable, it never goes.
  ex.admitThen(() => sendAdmitted(deps, ex, x, target, decision, swap, mcpDetail));
}

function sendAdmitted(deps: ExchangeDeps, ex: Exchange, x: HttpRequestIn, target: CheckedTarget, decision: Decision, swap: Forward, mcpDetail?: string): void {
  const { req, session } = x;
  // An LLM API's answer is read for token usage on its way out (proxy/llm/); nothing else is.
  const api = usageApiFor(ex.policy, target.host, req.method, target.path);
  const tap = api && new UsageTap(api, ex.policy.usage?.pricing ?? []);
  const res = tap ? tappedResponse(x.res, tap) : x.res;
  if (tap) ex.usageFrom(() => tap.result());
  const socket = req.socket;
  const startWritten = socket.bytesWritten;
  let bodyBytes = 0;
  ex.responding(
    () => [bodyBytes, socket.bytesWritten - startWritten],
    () => call.abort(),
  );
  const headers = swap.headers;
  if (swap.body !== undefined) {
    // A body read to be signed goes with its exact length (signed, when the client sent one).
    let hadLength = false;
    for (let i = headers.length - 2; i >= 0; i -= 2) {
      const name = headers[i]!.toLowerCase();
      if (name === 'content-length') hadLength = true;
      if (name === 'content-length' || name === 'transfer-encoding') headers.splice(i, 2);
    }
    if (hadLength || swap.body.length > 0) headers.push('Content-Length', String(swap.body.length));
  }
  let source = x.body;
  const bodyTransform = swap.bodyTransform;
  if (source && bodyTransform) {
    // The body's length may change: drop Content-Length and let it go chunked.
    for (let i = headers.length - 2; i >= 0; i -= 2) {
      if (headers[i]!.toLowerCase() === 'content-length') headers.splice(i, 2);
    }
    source.on('error', (err) => bodyTransform.destroy(err));
    source = source.pipe(bodyTransform);
  }
  // A git push: its ref updates are checked as the body streams (src/proxy/git/).
  const git = source && gitPushInspector(decision, ex.policy.mode, req.rawHeaders);
  if (git) source = source!.pipe(git);
  const usage = usageOf(session);
  const call = deps.upstream.http.request(
    {
      secure: x.scheme === 'https',
      host: target.host,
      port: target.port,
      path: swap.pathWithQuery,
      method: req.method ?? 'GET',
      headers,
      body: source,
      // Counted as the client sends it upstream; over budget stops the request.
      onBodyChunk: (n) => {
        bodyBytes += n;
        if (!usage.addUpload(n)) throw new UploadBudgetExceeded();
      },
      onFail: (err: Error & { code?: string }) => ex.fail(err),
    },
    ({ statusCode, headers: upstreamHeaders }): BodySink => {
      const responseHeaders = forwardResponseHeaders(upstreamHeaders);
      const problem = swap.onResponse?.(statusCode, upstreamHeaders);
      if (problem) {
        ex.note(problem);
        deps.log.error({ session: session.id, problem }, 'signed request refused upstream');
      }
      // Under an mcp: rule (enforced), every message the server sends back is read: tools/list
      // results lose the tools the rule does not list.
      const mcp = decision.mcp && ex.policy.mode === 'enforce' && responseHasBody(req.method, statusCode) ? decision.mcp : null;
      if (mcp) {
        const why = uncheckableResponse(responseHeaders);
        if (why) {
          ex.failed({ status: 502, reason: 'upstream_error', deny: false, message: `Airlock: ${why}.`, detail: 'mcp: compressed response' });
          return discard();
        }
      }
      // The body may change length: it goes chunked.
      if (mcp) delete responseHeaders['content-length'];
      let sink: BodySink;
      if (session.credentials.empty) {
        res.writeHead(statusCode, responseHeaders);
        sink = res;
      } else {
        sink = scrubbedSink(session.credentials, res, {
          host: target.host,
          method: req.method,
          statusCode,
          headers: responseHeaders,
          echoes: swap.echoes,
          onScrub: () => ex.note('secret_scrubbed'),
          unreadable: (why) => ex.failed({ status: 502, reason: 'upstream_error', deny: false, message: `Airlock: ${why}.`, detail: why }),
        });
      }
      if (!mcp) return sink;
      return mcpResponseSink(sink, {
        tools: mcp.rule.tools,
        headers: responseHeaders,
        note: (what) => ex.note(mcpDetail ? `${mcpDetail}; ${what}` : `mcp ${what}`),
        abort: (why) => {
          ex.note(`mcp: response cut off: ${why}`);
          res.destroy();
        },
      });
    },
  );
  git?.onVerdict((v) => {
    if (v.reason) ex.overrule(v.answer ? 'deny' : 'would_deny', v.reason, v.detail);
    else ex.note(v.detail);
    if (v.answer) {
      // The push stops here: the upstream request is dropped and the client gets git's answer.
      call.abort();
      v.answer(res);
    }
  });
}
