// The usage tap: on the routes where an LLM API reports token usage, the response on its way to
// the client is read as it passes (never held back, never changed) for the model and the token
// counts, which go on the request's audit line.
//
// What it reads is what the client receives: the body after the credential scrubber, which has
// already decoded a gzip/br/deflate body on every host a session secret is bound to (the usual
// setup for an API key). A body that still goes out compressed (no secret bound to the host) is
// not decoded a second time just for this: its line says `unread: "content-encoding gzip"`.
// Anything the tap cannot make sense of is skipped; an exception inside it only turns it off.
import type { UsageRecord } from '../../audit/entry.js';
import { BUILTIN_USAGE_ROUTES, costOf, priceFor } from '../../policy/index.js';
import type { ModelPrice, Policy, UsageApi } from '../../policy/index.js';
import type { ResponseOut } from '../http1/types.js';
import { JsonFields, SseFields } from './scan.js';

/** Past this many body bytes the tap stops reading (no LLM answer is near it). */
const MAX_TAPPED_BYTES = 64 * 1024 * 1024;

type Field = 'model' | 'input' | 'output' | 'cacheRead' | 'cacheWrite';

/**
 * Where each API reports what, in its JSON answers and in its stream events: Anthropic's message
 * (and message_start's message, message_delta's usage), OpenAI's chat completion (and the last
 * chunk of a stream with stream_options.include_usage), and the Responses API's response (and
 * response.completed's response).
 */
const FIELDS: Readonly<Record<UsageApi, ReadonlyMap<string, Field>>> = {
  anthropic: new Map<string, Field>([
    ['model', 'model'],
    ['message.model', 'model'],
    ...(['', 'message.'] as const).flatMap((p) => [
      [`${p}usage.input_tokens`, 'input'] as const,
      [`${p}usage.output_tokens`, 'output'] as const,
      [`${p}usage.cache_read_input_tokens`, 'cacheRead'] as const,
      [`${p}usage.cache_creation_input_tokens`, 'cacheWrite'] as const,
    ]),
  ]),
  openai: new Map<string, Field>([
    ['model', 'model'],
    ['response.model', 'model'],
    ['usage.prompt_tokens', 'input'],
    ['usage.completion_tokens', 'output'],
    ['usage.prompt_tokens_details.cached_tokens', 'cacheRead'],
    ...(['', 'response.'] as const).flatMap((p) => [
      [`${p}usage.input_tokens`, 'input'] as const,
      [`${p}usage.output_tokens`, 'output'] as const,
      [`${p}usage.input_tokens_details.cached_tokens`, 'cacheRead'] as const,
    ]),
  ]),
};
const WANTED: Readonly<Record<UsageApi, ReadonlySet<string>>> = {
  anthropic: new Set(FIELDS.anthropic.keys()),
  openai: new Set(FIELDS.openai.keys()),
};

/** A model name as kept on the line: printable, no spaces, at most 128 characters. */
const MODEL_RE = /^[A-Za-z0-9._:/@+-]{1,128}$/;

/** Which API's usage a POST to host+path reports, if any: the public endpoints, then the policy's usage.apis. */
export function usageApiFor(policy: Policy, host: string, method: string | undefined, path: string): UsageApi | null {
  if (method !== 'POST') return null;
  let api: UsageApi | null = null;
  let paths: readonly string[] = [];
  for (const route of BUILTIN_USAGE_ROUTES) if (route.host === host) ({ api, paths } = route);
  for (const route of policy.usage?.apis ?? []) if (route.host === host) ({ api, paths } = route);
  if (api === null) return null;
  // A session must not dodge the count by spelling the path another way a server may accept.
  const plain = path.replace(/\/{2,}/g, '/').replace(/(.)\/+$/, '$1');
  return paths.includes(plain) ? api : null;
}

function headerOf(headers: Record<string, string | string[] | number>, name: string): string {
  for (const key in headers) {
    if (key.toLowerCase() !== name) continue;
    const v = headers[key];
    return String(Array.isArray(v) ? v.join(',') : v).trim().toLowerCase();
  }
  return '';
}

/** A header value shown on the audit line: short and printable. */
function shown(value: string): string {
  return value.replace(/[^\x21-\x7e]/g, '?').slice(0, 40);
}

export class UsageTap {
  private reader: { write(chunk: Buffer): void; end(): void } | null = null;
  private found: Partial<Record<Field, string | number>> = {};
  private anything = false;
  private unread: string | undefined;
  private read = 0;
  /** Not a 2xx answer: no usage to report. */
  private ignored = true;

  constructor(
    readonly api: UsageApi,
    private readonly pricing: readonly ModelPrice[],
  ) {}

  /** The response head as sent to the client: picks the reader for its body. */
  head(status: number, headers: Record<string, string | string[] | number>): void {
    this.ignored = status < 200 || status > 299;
    if (this.ignored) return;
    const encoding = headerOf(headers, 'content-encoding');
    if (encoding !== '' && encoding !== 'identity') {
      this.unread = `content-encoding ${shown(encoding)}`;
      return;
    }
    const type = headerOf(headers, 'content-type').split(';')[0]!.trim();
    const json = new JsonFields(WANTED[this.api], (path, value) => this.take(path, value));
    if (type === 'text/event-stream') this.reader = new SseFields(json);
    else if (type === 'application/json' || type.endsWith('+json')) this.reader = { write: (c) => json.write(c), end: () => json.end() };
    else this.unread = `content-type ${shown(type || 'none')}`;
  }

  body(chunk: Buffer): void {
    const reader = this.reader;
    if (!reader) return;
    this.read += chunk.length;
    if (this.read > MAX_TAPPED_BYTES) {
      this.stop(`body over ${MAX_TAPPED_BYTES} bytes`);
      return;
    }
    try {
      reader.write(chunk);
    } catch {
      this.stop('unreadable body');
    }
  }

  end(): void {
    try {
      this.reader?.end();
    } catch {
      /* what was found stands */
    }
    this.reader = null;
  }

  /** What goes on the audit line: undefined when nothing was found (an unknown shape is skipped). */
  result(): UsageRecord | undefined {
    if (this.ignored) return undefined;
    if (!this.anything) return this.unread ? { api: this.api, unread: this.unread } : undefined;
    const f = this.found;
    const count = (v: string | number | undefined) => (typeof v === 'number' ? v : undefined);
    const cacheRead = count(f.cacheRead);
    let input = count(f.input);
    // OpenAI counts cache reads inside its input; the line's input is what was not cached.
    if (this.api === 'openai' && input !== undefined && cacheRead !== undefined) input = Math.max(0, input - cacheRead);
    const model = typeof f.model === 'string' && MODEL_RE.test(f.model) ? f.model : undefined;
    const out: UsageRecord = { api: this.api };
    if (model !== undefined) out.model = model;
    if (input !== undefined) out.input_tokens = input;
    if (count(f.output) !== undefined) out.output_tokens = count(f.output);
    if (cacheRead !== undefined) out.cache_read_tokens = cacheRead;
    if (count(f.cacheWrite) !== undefined) out.cache_write_tokens = count(f.cacheWrite);
    const counted = out.input_tokens !== undefined || out.output_tokens !== undefined || cacheRead !== undefined || out.cache_write_tokens !== undefined;
    // A model but no counts (an OpenAI chat stream not asked for include_usage, a stream cut off
    // early): said, so that `audit --usage` shows the call as not counted rather than as free.
    if (!counted) {
      out.unread = this.unread ?? 'no usage in the answer';
      return out;
    }
    const price = priceFor(this.pricing, model);
    if (price) out.cost_usd = costOf(price, out);
    return out;
  }

  private take(path: string, value: string | number): void {
    const field = FIELDS[this.api].get(path);
    if (!field) return;
    // A model is text and counts are numbers; the other way round is an unknown shape.
    if ((field === 'model') !== (typeof value === 'string')) return;
    this.found[field] = value;
    this.anything = true;
  }

  private stop(why: string): void {
    this.reader = null;
    if (!this.anything) this.unread = why;
  }
}

/**
 * The response as the client gets it, with the tap reading along: every call goes to `res`
 * unchanged, in the same order; the tap only sees the head and a reference to each chunk.
 */
export function tappedResponse(res: ResponseOut, tap: UsageTap): ResponseOut {
  const tapped: ResponseOut = {
    get headersSent() {
      return res.headersSent;
    },
    get statusCode() {
      return res.statusCode;
    },
    get destroyed() {
      return res.destroyed;
    },
    get writableFinished() {
      return res.writableFinished;
    },
    get writableLength() {
      return res.writableLength;
    },
    get shouldKeepAlive() {
      return res.shouldKeepAlive;
    },
    set shouldKeepAlive(v: boolean) {
      res.shouldKeepAlive = v;
    },
    writeHead(status, headers) {
      tap.head(status, headers);
      return res.writeHead(status, headers);
    },
    write(chunk) {
      tap.body(chunk);
      return res.write(chunk);
    },
    end(chunk?: Buffer | string) {
      if (chunk !== undefined) tap.body(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
      tap.end();
      return res.end(chunk);
    },
    cork: () => res.cork(),
    uncork: () => res.uncork(),
    destroy: () => res.destroy(),
    on: ((event: 'close' | 'error', listener: (...args: never[]) => void) => res.on(event as 'close', listener as () => void)) as ResponseOut['on'],
    once: ((event: 'close' | 'drain', listener: () => void) => res.once(event, listener)) as ResponseOut['once'],
  };
  return tapped;
}
