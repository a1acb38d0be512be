// The body of a request an mcp: rule let through (decision.mcp), read whole before anything is
// forwarded: at most MAX_MCP_REQUEST_BYTES, whatever its Content-Type says, then decided by
// decideMcpBody(). What is forwarded is byte for byte what was read. A refusal is answered as
// JSON-RPC errors with the ids of the refused body's requests, which MCP clients show: with 200
// to a streamable-HTTP client (it reads JSON-RPC from the answer to its POST), with 403 to the
// older HTTP+SSE transport's client (which only shows a failed POST's body).
import { Readable } from 'node:stream';
import { readBounded } from '../body.js';
import { decideMcpBody, MCP_ERROR, utf8Text, type McpMessageVerdict, type McpTarget } from '../../policy/index.js';
import type { Exchange } from '../exchange.js';
import { denyJsonRpc, type JsonRpcError } from '../responses.js';
import { bodyCoding, rawHeader } from '../headers.js';

/** Far above any real MCP request; the body is held in memory while it is decided. */
export const MAX_MCP_REQUEST_BYTES = 4 * 1024 * 1024;

/**
 * Reads and decides an MCP request body; `then` runs with the body to forward, unless the
 * request was refused (answered and audited by the exchange).
 */
export function checkMcp(ex: Exchange, target: McpTarget, body: Readable | null, rawHeaders: readonly string[], then: (body: Readable | null, detail: string | undefined) => void): void {
  let over = false;
  body?.on('error', (err: Error) => {
    if (!over) ex.fail(err);
    over = true;
  });
  // A streamable-HTTP client accepts an event stream for its POST, and reads JSON-RPC errors
  // from a 200 answer; the older transport's client does not.
  const streamable = (rawHeader(rawHeaders, 'accept') ?? '').toLowerCase().includes('text/event-stream');
  const refuse = (status: number, reason: 'mcp_not_allowed' | 'bad_request', message: string, detail: string, errors: readonly JsonRpcError[], batch: boolean) => {
    over = true;
    ex.refuseIn(status, reason, message, detail, (info) => denyJsonRpc(info, errors, batch));
  };
  const unreadable = (status: number, message: string, detail: string) =>
    refuse(status, 'bad_request', message, detail, [{ id: null, code: MCP_ERROR.invalidRequest, message }], false);
  if (bodyCoding(rawHeaders) !== undefined) {
    return unreadable(415, 'Airlock: an MCP request body must be sent uncompressed to be checked.', 'mcp: compressed body');
  }
  const length = rawHeader(rawHeaders, 'content-length');
  if (length !== undefined && Number(length) > MAX_MCP_REQUEST_BYTES) {
    return unreadable(413, `Airlock: an MCP request body may be at most ${MAX_MCP_REQUEST_BYTES} bytes.`, 'mcp: body too large');
  }
  if (!body) return then(null, undefined);
  const decide = (bytes: Buffer) => {
    const verdict = decideMcpBody(utf8Text(bytes), target.rule, target.label, ex.authority.host);
    if (!verdict.ok) {
      if (ex.policy.mode === 'enforce') {
        const errors = errorsFor(verdict.messages, verdict.message);
        const status = verdict.reason === 'bad_request' ? 400 : streamable && errors.some((e) => e.id !== null) ? 200 : 403;
        const sentence = verdict.reason === 'mcp_not_allowed' ? `${verdict.message}. Ask the operator to add it to the rule's mcp.tools.` : verdict.message;
        return refuse(status, verdict.reason, sentence, verdict.detail, errors.length > 0 ? errors : [{ id: null, code: MCP_ERROR.forbidden, message: sentence }], verdict.batch);
      }
      ex.overrule('would_deny', verdict.reason, verdict.detail);
      then(Readable.from([bytes]), undefined);
      return;
    }
    ex.note(verdict.detail);
    then(Readable.from([bytes]), verdict.detail);
  };
  readBounded(body, MAX_MCP_REQUEST_BYTES, {
    done: (bytes) => {
      if (!over) decide(bytes);
    },
    tooLarge: () => unreadable(413, `Airlock: an MCP request body may be at most ${MAX_MCP_REQUEST_BYTES} bytes.`, 'mcp: body too large'),
    failed: () => {}, // answered by the error handler above
  });
}

/** The answers to a refused body: each request's own refusal, or that another message was refused. */
function errorsFor(messages: readonly McpMessageVerdict[], first: string): JsonRpcError[] {
  const out: JsonRpcError[] = [];
  for (const m of messages) {
    if (m.id === undefined) continue;
    if (m.refused) out.push({ id: m.id, code: m.refused.code, message: m.refused.message });
    else out.push({ id: m.id, code: MCP_ERROR.forbidden, message: `Airlock: not sent: another message of this batch was refused (${first})` });
  }
  return out;
}
