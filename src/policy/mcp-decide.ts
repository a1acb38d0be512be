// Decisions of mcp: rules, pure: whether a JSON-RPC body a client sends to an MCP server may go
// through (tools/call only for the rule's tools), and what a server's message becomes on its way
// back (a tools/list result keeps only the rule's tools).
//
// The body is read as the server will read it: strict JSON (strict-json.ts: no duplicate keys,
// not even ones that differ only in case), a single message or a batch. Anything this module
// cannot read with certainty is refused rather than guessed at: a method spelled like tools/call
// but not exactly (case, whitespace, invisible characters), a key spelled like "method" or
// "name" but not exactly (Go's encoding/json matches keys without regard to case), a tools/call
// whose params or name is missing or not what the spec says, a message that is neither a
// request, a notification nor a response. A batch is decided as a whole: one refused message
// refuses all of it, so nothing of it reaches the server.
import { matchesAnyGlob } from './glob.js';
import { foldKey, parseStrictJson, StrictJsonError, type JsonValue } from './strict-json.js';
import type { McpRule } from './types.js';

/** JSON-RPC error codes the proxy answers with. */
export const MCP_ERROR = {
  parse: -32700,
  invalidRequest: -32600,
  /** In the range JSON-RPC leaves to servers: refused by the proxy's policy. */
  forbidden: -32001,
} as const;

/** One message of a body, as decided. */
export interface McpMessageVerdict {
  /** The id to answer with: the message's own when it is a request, else undefined (nothing to answer). */
  readonly id: string | number | null | undefined;
  /** For the audit line: `tools/call "read_file"`, `tools/list`, `response`. */
  readonly what: string;
  /** Why this message is refused, when it is. */
  readonly refused?: { readonly code: number; readonly reason: 'mcp_not_allowed' | 'bad_request'; readonly message: string };
}

export type McpBodyVerdict =
  | { readonly ok: true; readonly detail: string; readonly batch: boolean; readonly messages: readonly McpMessageVerdict[] }
  | {
      readonly ok: false;
      /** The first refusal's kind: a policy denial, or a body that cannot be read with certainty. */
      readonly reason: 'mcp_not_allowed' | 'bad_request';
      readonly detail: string;
      /** The first refusal's sentence. */
      readonly message: string;
      readonly batch: boolean;
      /** Every message, refused or not (requests of a refused batch are answered too). */
      readonly messages: readonly McpMessageVerdict[];
    };

/** Messages in one batch at most: clients send a few; thousands only cost the proxy time. */
export const MAX_BATCH = 1000;

const MESSAGE_KEYS = ['jsonrpc', 'id', 'method', 'params', 'result', 'error'];
const CALL_KEYS = ['name', 'arguments', '_meta'];
// What an MCP method name is made of; anything else could be read differently by some server.
const METHOD_NAME = /^[A-Za-z0-9_$./:-]{1,128}$/;
const TOOLS_CALL = 'tools/call';
/** Characters a lenient server might drop from a method name: whitespace, controls, format characters. */
const INVISIBLE = /[\p{White_Space}\p{Cc}\p{Cf}]/gu;

/**
 * Whether a method name would read as tools/call to a lenient server but is not spelled so
 * (case; whitespace, invisible and compatibility characters for names METHOD_NAME lets by).
 */
function disguisedToolsCall(method: string): boolean {
  if (method === TOOLS_CALL) return false;
  const plain = METHOD_NAME.test(method) ? method : method.normalize('NFKC').replace(INVISIBLE, '');
  return plain.toLowerCase() === TOOLS_CALL;
}

/** Folded spellings of the keys checked, computed once. */
const FOLDED = new Map<readonly string[], Set<string>>();

/** A key of `obj` that reads as one of `names` to some server but is not spelled exactly so. */
function variantKey(obj: { [key: string]: JsonValue }, names: readonly string[]): string | null {
  let folded = FOLDED.get(names);
  if (!folded) FOLDED.set(names, (folded = new Set(names.map(foldKey))));
  for (const key of Object.keys(obj)) {
    if (names.includes(key)) continue;
    if (folded.has(foldKey(key))) return key;
    // Spaces, invisible and compatibility characters (full-width letters) some reader may drop.
    if (!PLAIN_KEY.test(key) && folded.has(foldKey(key.normalize('NFKC').replace(INVISIBLE, '')))) return key;
  }
  return null;
}

const PLAIN_KEY = /^[A-Za-z0-9_$.-]*$/;

function isObject(v: JsonValue | undefined): v is { [key: string]: JsonValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}

function answerableId(v: JsonValue | undefined): string | number | null | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'string' || typeof v === 'number' || v === null ? v : null;
}

/** Decides one message of a client's body. */
export function decideMcpMessage(msg: JsonValue, rule: McpRule, label: string, host: string): McpMessageVerdict {
  const bad = (id: string | number | null | undefined, what: string, why: string, code: number = MCP_ERROR.invalidRequest): McpMessageVerdict => ({
    id: id === undefined ? null : id,
    what,
    refused: { code, reason: 'bad_request', message: `Airlock cannot check this MCP message: ${why}` },
  });
  if (!isObject(msg)) return bad(null, 'not an object', 'a JSON-RPC message must be an object');
  const id = answerableId(msg.id);
  const variant = variantKey(msg, MESSAGE_KEYS);
  if (variant !== null) return bad(id, 'odd key', `key ${quote(variant)} is spelled like a JSON-RPC key but not exactly, and servers read it differently`);
  if (msg.jsonrpc !== '2.0') return bad(id, 'not JSON-RPC 2.0', 'jsonrpc must be "2.0"');
  if (msg.id !== undefined && id === null && msg.id !== null) return bad(null, 'odd id', 'id must be a string or a number');
  const hasMethod = msg.method !== undefined;
  const isResponse = msg.result !== undefined || msg.error !== undefined;
  if (!hasMethod) {
    if (!isResponse) return bad(id, 'no method', 'a message without a method must be a response (result or error)');
    if (msg.result !== undefined && msg.error !== undefined) return bad(id, 'result and error', 'a response has either result or error');
    return { id: undefined, what: 'response' };
  }
  if (isResponse) return bad(id, 'method and result', 'a message with a method cannot also carry a result or an error');
  const method = msg.method;
  if (typeof method !== 'string') return bad(id, 'odd method', 'method must be a string');
  if (disguisedToolsCall(method) || !METHOD_NAME.test(method)) {
    return bad(id, `method ${quote(method)}`, `method ${quote(method)} is not a plain MCP method name (letters, digits and _$./:-, case as the spec spells it)`);
  }
  const params = msg.params;
  if (params !== undefined && !isObject(params) && !Array.isArray(params)) return bad(id, method, 'params must be an object');
  if (method !== TOOLS_CALL) return { id, what: method };
  // tools/call: the one method this rule decides on.
  if (!isObject(params)) return bad(id, TOOLS_CALL, 'tools/call needs params as an object with the tool name');
  const paramVariant = variantKey(params, CALL_KEYS);
  if (paramVariant !== null) return bad(id, TOOLS_CALL, `params key ${quote(paramVariant)} is spelled like "name" or "arguments" but not exactly`);
  const name = params.name;
  if (typeof name !== 'string') return bad(id, TOOLS_CALL, 'tools/call needs params.name, the tool name, as a string');
  const what = `${TOOLS_CALL} ${JSON.stringify(name)}`;
  if (!matchesAnyGlob(rule.tools, name)) {
    const listed = rule.tools.length > 0 ? `allows tools ${rule.tools.join(', ')}` : 'allows no tools';
    return {
      id,
      what: `${what} (not listed)`,
      refused: {
        code: MCP_ERROR.forbidden,
        reason: 'mcp_not_allowed',
        message: `Airlock: MCP tool ${quote(name)} on ${host} is not allowed: ${label} ${listed} (mcp.tools)`,
      },
    };
  }
  return { id, what };
}

/** Decides a client's body: one message or a batch. `text` is the body as UTF-8 (null: it is not). */
export function decideMcpBody(text: string | null, rule: McpRule, label: string, host: string): McpBodyVerdict {
  const unreadable = (message: string, detail: string): McpBodyVerdict => ({
    ok: false,
    reason: 'bad_request',
    detail: `mcp: ${detail}`,
    message: `Airlock cannot check this MCP request body: ${message}`,
    batch: false,
    messages: [{ id: null, what: detail, refused: { code: MCP_ERROR.parse, reason: 'bad_request', message: `Airlock cannot check this MCP request body: ${message}` } }],
  });
  if (text === null) return unreadable('it is not UTF-8 text', 'body not UTF-8');
  let parsed: JsonValue;
  try {
    parsed = parseStrictJson(text);
  } catch (err) {
    const why = err instanceof StrictJsonError ? err.message : 'it is not JSON';
    return unreadable(`it is not one strict JSON value (${why}); duplicate keys are refused`, 'body not strict JSON');
  }
  const batch = Array.isArray(parsed);
  const items = batch ? (parsed as JsonValue[]) : [parsed];
  if (batch && items.length === 0) return unreadable('an empty batch', 'empty batch');
  if (items.length > MAX_BATCH) return unreadable(`a batch of more than ${MAX_BATCH} messages`, 'batch too large');
  const messages = items.map((m) => decideMcpMessage(m, rule, label, host));
  // Bounded: a batch of thousands of messages still makes one audit line of reasonable size.
  const detail = `mcp ${batch ? 'batch: ' : ''}${messages.map((m) => m.what).join('; ')}`.slice(0, 4000);
  const first = messages.find((m) => m.refused);
  if (!first) return { ok: true, detail, batch, messages };
  return { ok: false, reason: first.refused!.reason, detail, message: first.refused!.message, batch, messages };
}

/** A server's message with a tools/list result cut down to the rule's tools; null when nothing changes. */
export function filterToolsResult(msg: JsonValue, tools: readonly string[]): { message: JsonValue; hidden: number; total: number } | null {
  if (Array.isArray(msg)) {
    let changed = false;
    let hidden = 0;
    let total = 0;
    const out = msg.map((m) => {
      const f = filterToolsResult(m, tools);
      if (!f) return m;
      changed = true;
      hidden += f.hidden;
      total += f.total;
      return f.message;
    });
    return changed ? { message: out, hidden, total } : null;
  }
  if (!isObject(msg) || msg.method !== undefined || !isObject(msg.result)) return null;
  const result = msg.result;
  const list = result.tools;
  if (list === undefined) return null;
  // Only the tools listed, and of the result's other keys only the page cursor: anything else
  // the server put there could name the hidden tools.
  const kept = Array.isArray(list) ? list.filter((t) => isObject(t) && typeof t.name === 'string' && matchesAnyGlob(tools, t.name)) : [];
  const total = Array.isArray(list) ? list.length : 0;
  const cleanResult: { [key: string]: JsonValue } = { tools: kept };
  if (typeof result.nextCursor === 'string') cleanResult.nextCursor = result.nextCursor;
  if (kept.length === total && Object.keys(result).every((k) => k === 'tools' || (k === 'nextCursor' && typeof result.nextCursor === 'string'))) return null;
  return { message: { ...msg, result: cleanResult }, hidden: total - kept.length, total };
}

/** Why a tools/call would be refused by this rule, for a tool name (tests and suggest). */
export function mcpToolAllowed(rule: McpRule, name: string): boolean {
  return matchesAnyGlob(rule.tools, name);
}
