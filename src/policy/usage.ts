// The `usage:` section: which hosts' responses are read for LLM token usage besides the two APIs
// known by name, and an optional price table for an estimated cost.
//
//   usage:
//     apis:                          # a gateway or stand-in that speaks one of the two APIs
//       - host: llm.internal.example
//         api: anthropic             # or openai
//         paths: ["/v1/messages"]    # exact paths; default: the API's own
//     pricing:                       # USD per million tokens; first matching model wins
//       - model: "claude-sonnet-4*"
//         input: 3
//         output: 15
//         cache_read: 0.3            # default: the input price
//         cache_write: 3.75          # default: the input price
//
// api.anthropic.com (POST /v1/messages) and api.openai.com (POST /v1/chat/completions and
// /v1/responses) are read without being listed. Another host is read only when listed: a host
// that merely looks like an LLM API is not guessed at, and the operator decides which gateway's
// answers are trusted to say what a session spent.

import { compileGlob } from './glob.js';
import { parseHostPattern } from './host-pattern.js';
import type { Reader, Value } from './reader.js';
import type { ModelPrice, UsageApi, UsageApiRoute, UsageSettings } from './types.js';

/** The paths each API reports usage on. */
export const USAGE_API_PATHS: Readonly<Record<UsageApi, readonly string[]>> = Object.freeze({
  anthropic: Object.freeze(['/v1/messages']),
  openai: Object.freeze(['/v1/chat/completions', '/v1/responses']),
});

/** The public endpoints, read without a `usage.apis` entry. */
export const BUILTIN_USAGE_ROUTES: readonly UsageApiRoute[] = Object.freeze([
  Object.freeze({ line: 0, host: 'api.anthropic.com', api: 'anthropic' as const, paths: USAGE_API_PATHS.anthropic }),
  Object.freeze({ line: 0, host: 'api.openai.com', api: 'openai' as const, paths: USAGE_API_PATHS.openai }),
]);

export const NO_USAGE_SETTINGS: UsageSettings = Object.freeze({ apis: Object.freeze([]), pricing: Object.freeze([]) });

const KEYS = ['apis', 'pricing'] as const;
const API_KEYS = ['host', 'api', 'paths'] as const;
const PRICE_KEYS = ['model', 'input', 'output', 'cache_read', 'cache_write'] as const;
const MAX_PRICE = 1_000_000;

const HINT = {
  section: 'Write usage: as a map with apis: and/or pricing:, e.g. usage: { pricing: [{ model: "gpt-4o*", input: 2.5, output: 10 }] }',
  apis: 'Write apis: as a list, e.g. apis: [{ host: llm.internal.example, api: anthropic }]',
  api: 'Use api: anthropic or api: openai',
  host: 'Use an exact host name, e.g. host: llm.internal.example (no wildcard: each gateway is named)',
  paths: 'Use a list of exact paths starting with "/", e.g. paths: ["/v1/messages"]',
  pricing: 'Write pricing: as a list, e.g. pricing: [{ model: "claude-sonnet-4*", input: 3, output: 15 }]',
  model: 'Use the model name as the API reports it, or a glob, e.g. model: "claude-sonnet-4*"',
  price: `Use US dollars per million tokens, a number from 0 to ${MAX_PRICE}, e.g. input: 3`,
} as const;

export function parseUsage(r: Reader, v: Value | undefined): UsageSettings | null {
  if (!v || r.isNull(v)) return null;
  const fields = r.entries(v, KEYS, HINT.section);
  const apisValue = fields.get('apis');
  const pricingValue = fields.get('pricing');
  const apis = apisValue && !r.isNull(apisValue) ? r.list(apisValue, HINT.apis).map((item) => parseApi(r, item)) : [];
  const pricing = pricingValue && !r.isNull(pricingValue) ? r.list(pricingValue, HINT.pricing).map((item) => parsePrice(r, item)) : [];
  return Object.freeze({ apis: Object.freeze(apis), pricing: Object.freeze(pricing) });
}

function parseApi(r: Reader, item: Value): UsageApiRoute {
  const fields = r.entries(item, API_KEYS, HINT.apis);
  const line = item.line ?? 1;
  const hostValue = fields.get('host');
  if (!hostValue) r.fail(item, `${item.path}.host`, 'is missing', HINT.host);
  const pattern = parseHostPattern(r.string(hostValue, HINT.host));
  if (!pattern.ok) r.fail(hostValue, hostValue.path, pattern.problem, pattern.hint);
  if (pattern.kind !== 'exact') r.fail(hostValue, hostValue.path, `${JSON.stringify(pattern.host)} is not an exact host name`, HINT.host);
  const apiValue = fields.get('api');
  if (!apiValue) r.fail(item, `${item.path}.api`, 'is missing', HINT.api);
  const api = r.string(apiValue, HINT.api);
  if (api !== 'anthropic' && api !== 'openai') r.fail(apiValue, apiValue.path, `${JSON.stringify(api)} is not an API this reads`, HINT.api);
  const pathsValue = fields.get('paths');
  let paths = USAGE_API_PATHS[api];
  if (pathsValue) {
    const items = r.list(pathsValue, HINT.paths);
    if (items.length === 0) r.fail(pathsValue, pathsValue.path, 'is an empty list', HINT.paths);
    paths = Object.freeze(
      items.map((p) => {
        const path = r.scalar(p, HINT.paths);
        if (typeof path !== 'string' || !path.startsWith('/') || /[\s?#\u0000-\u001f\u007f]/.test(path)) {
          r.fail(p, pathsValue.path, `${JSON.stringify(path)} is not an exact path starting with "/"`, HINT.paths);
        }
        return path;
      }),
    );
  }
  return Object.freeze({ line, host: pattern.host, api, paths });
}

function parsePrice(r: Reader, item: Value): ModelPrice {
  const fields = r.entries(item, PRICE_KEYS, HINT.pricing);
  const line = item.line ?? 1;
  const modelValue = fields.get('model');
  if (!modelValue) r.fail(item, `${item.path}.model`, 'is missing', HINT.model);
  const model = r.string(modelValue, HINT.model);
  if (model.length === 0 || model.length > 128 || /[\s\u0000-\u001f\u007f]/.test(model)) {
    r.fail(modelValue, modelValue.path, `${JSON.stringify(model)} is not a model name`, HINT.model);
  }
  const price = (key: 'input' | 'output' | 'cache_read' | 'cache_write', fallback?: number): number => {
    const value = fields.get(key);
    if (!value) {
      if (fallback !== undefined) return fallback;
      r.fail(item, `${item.path}.${key}`, 'is missing', HINT.price);
    }
    const n = r.scalar(value, HINT.price);
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > MAX_PRICE) {
      r.fail(value, value.path, `${typeof n === 'string' ? JSON.stringify(n) : String(n)} is not a price`, HINT.price);
    }
    return n;
  };
  const input = price('input');
  const output = price('output');
  return Object.freeze({ line, model, input, output, cacheRead: price('cache_read', input), cacheWrite: price('cache_write', input) });
}

/** The first price whose model glob matches, or null. */
export function priceFor(pricing: readonly ModelPrice[], model: string | undefined): ModelPrice | null {
  if (!model) return null;
  for (const p of pricing) if (compileGlob(p.model)(model)) return p;
  return null;
}

export interface TokenCounts {
  readonly input_tokens?: number;
  readonly output_tokens?: number;
  readonly cache_read_tokens?: number;
  readonly cache_write_tokens?: number;
}

/** Estimated US dollars for `counts` at `price` (missing counts are 0). */
export function costOf(price: ModelPrice, counts: TokenCounts): number {
  const usd =
    ((counts.input_tokens ?? 0) * price.input +
      (counts.output_tokens ?? 0) * price.output +
      (counts.cache_read_tokens ?? 0) * price.cacheRead +
      (counts.cache_write_tokens ?? 0) * price.cacheWrite) /
    1_000_000;
  return Math.round(usd * 1e6) / 1e6;
}
