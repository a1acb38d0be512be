// One audit line: what a request or tunnel was, what was decided and why, when it ended.

export interface AuditEntry {
  /** ISO time the request ended. */
  time?: string;
  session: string;
  /** Request id, unique within the proxy process. */
  id: string;
  /** 'request' for HTTP requests (plain or inside a tunnel), 'tunnel' for a CONNECT, 'websocket'. */
  kind: 'request' | 'tunnel' | 'websocket';
  method: string;
  scheme: 'http' | 'https';
  host: string;
  port: number;
  /** Path with query values redacted. */
  path: string;
  status: number;
  action: 'allow' | 'deny' | 'would_deny';
  /** Digest of the policy the request was decided under (Policy.digest). */
  policy_version?: string;
  rule: string | null;
  reason: string;
  /** Names of credentials swapped in (never values). */
  credentials: string[];
  bytes_up: number;
  bytes_down: number;
  duration_ms: number;
  /** Extra detail, e.g. an upstream error code or where a misused placeholder was found. */
  detail?: string;
  /** Tokens an LLM API reported in its answer (requests on usage-read routes only). */
  usage?: UsageRecord;
}

/**
 * What an LLM API's answer said it used. Counts are as the API reported them, except that
 * `input_tokens` never includes cache reads (OpenAI's prompt_tokens does: its cached_tokens are
 * taken off), so cost = input + output + cache_read + cache_write, each at its own price.
 */
export interface UsageRecord {
  api: 'anthropic' | 'openai';
  model?: string;
  input_tokens?: number;
  output_tokens?: number;
  cache_read_tokens?: number;
  cache_write_tokens?: number;
  /** Estimated US dollars, when the session's policy prices the model (usage.pricing). */
  cost_usd?: number;
  /** Why the answer was not read (e.g. "content-encoding gzip"); no counts then. */
  unread?: string;
}

/** Replaces every query value with "redacted" so tokens in URLs never reach the log. */
export function redactQuery(pathWithQuery: string): string {
  const q = pathWithQuery.indexOf('?');
  if (q === -1) return pathWithQuery;
  const query = pathWithQuery
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      return eq === -1 ? pair : `${pair.slice(0, eq)}=redacted`;
    })
    .join('&');
  return `${pathWithQuery.slice(0, q)}?${query}`;
}
