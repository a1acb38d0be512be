// The credential broker of one session: swaps placeholders for real secrets on requests to the
// hosts each secret is bound to (TLS only), refuses placeholders anywhere else, and scrubs
// secrets that upstreams echo back.
import { randomBytes } from 'node:crypto';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { Duplex } from 'node:stream';
import { matchHostPattern } from '../policy/index.js';
import type { CredentialSpec } from '../policy/index.js';
import type { CredentialBroker, OutgoingRequest, ResponseScrub, SwapResult } from './broker.js';
import { variablesHolding } from './copies.js';
import { Replacer, ReplaceStream } from './replace-stream.js';
import type { Replacement } from './replace-stream.js';

/** Where the real value comes from. Implemented by the CLI (which may read env, files, commands). */
export interface SecretHandle {
  /** The current value. Rejects with an error that names the credential, never the value. */
  current(): Promise<string>;
  /** Values seen so far (for scrubbing echoes, including rotated-out ones). */
  known(): readonly string[];
}

interface BoundCredential {
  readonly spec: CredentialSpec;
  readonly placeholder: string;
  readonly secret: SecretHandle;
}

// Prefixes some clients check before they will send a token at all.
const PLACEHOLDER_PREFIX: Record<string, string> = {
  anthropic: 'sk-ant-api03-',
  'anthropic-oauth': 'sk-ant-oat01-',
  openai: 'sk-',
  github: 'ghp_',
  npm: 'npm_',
};

export function generatePlaceholder(name: string): string {
  return `${PLACEHOLDER_PREFIX[name] ?? ''}airlock-${name}-${randomBytes(12).toString('hex')}`;
}

// Characters that may be part of a token: a placeholder only counts when it is not glued to
// more of them, so a value that merely resembles it is left alone.
const TOKEN_CHAR = /[A-Za-z0-9_.~+/-]/;

/** Start indexes of whole-token occurrences of `needle` in `text`. */
function occurrences(text: string, needle: string): number[] {
  const found: number[] = [];
  let at = text.indexOf(needle);
  while (at !== -1) {
    const before = at === 0 ? '' : text[at - 1]!;
    const after = text[at + needle.length] ?? '';
    if (!TOKEN_CHAR.test(before) && !TOKEN_CHAR.test(after)) found.push(at);
    at = text.indexOf(needle, at + 1);
  }
  return found;
}

function replaceWhole(text: string, needle: string, value: string): string {
  const at = occurrences(text, needle);
  if (at.length === 0) return text;
  let out = '';
  let pos = 0;
  for (const i of at) {
    out += text.slice(pos, i) + value;
    pos = i + needle.length;
  }
  return out + text.slice(pos);
}

const SCRUBBABLE_ENCODINGS = new Set(['gzip', 'x-gzip', 'deflate', 'br', 'identity']);

class Misuse extends Error {
  constructor(
    readonly credential: string,
    readonly where: string,
    readonly why: string,
  ) {
    super(why);
  }
}

export class SessionBroker implements CredentialBroker {
  readonly sessionEnv: Readonly<Record<string, string>>;
  readonly secretSourceEnv: readonly string[];
  readonly empty: boolean;
  private readonly bound: readonly BoundCredential[];

  constructor(specs: readonly CredentialSpec[], secrets: ReadonlyMap<string, SecretHandle>) {
    this.bound = specs.map((spec) => {
      const secret = secrets.get(spec.name);
      if (!secret) throw new Error(`credential "${spec.name}" has no secret source`);
      return { spec, placeholder: spec.placeholder ?? generatePlaceholder(spec.name), secret };
    });
    const env: Record<string, string> = {};
    for (const c of this.bound) for (const name of c.spec.env) env[name] = c.placeholder;
    this.sessionEnv = Object.freeze(env);
    this.secretSourceEnv = Object.freeze(
      specs.flatMap((s) => (s.secret.kind === 'env' ? [s.secret.name] : [])),
    );
    this.empty = this.bound.length === 0;
  }

  async variablesHoldingSecrets(env: Readonly<Record<string, string | undefined>>): Promise<string[]> {
    const current = await Promise.all(this.bound.map((c) => c.secret.current()));
    // Values seen before the current one (a rotated file) may still be valid.
    const secrets = new Set([...current, ...this.bound.flatMap((c) => c.secret.known())]);
    return variablesHolding(env, [...secrets]);
  }

  private boundTo(c: BoundCredential, request: OutgoingRequest): string | null {
    if (request.scheme !== 'https') return 'secrets are never sent over plain http';
    if (!c.spec.hosts.some((pattern) => matchHostPattern(pattern, request.host))) {
      return `credential "${c.spec.name}" is bound to ${c.spec.hosts.join(', ')}, not ${request.host}`;
    }
    return null;
  }

  async swapRequest(request: OutgoingRequest): Promise<SwapResult> {
    try {
      return await this.swap(request);
    } catch (err) {
      if (err instanceof Misuse) return { kind: 'misuse', credential: err.credential, where: err.where, why: err.why };
      throw err;
    }
  }

  private async swap(request: OutgoingRequest): Promise<SwapResult> {
    const used = new Set<string>();
    let headers = request.headers;
    let pathWithQuery = request.pathWithQuery;
    let bodyTransform: Duplex | null = null;

    // A host that may receive a secret must answer in an encoding the scrubber can read.
    if (this.bound.some((c) => c.spec.hosts.some((p) => matchHostPattern(p, request.host)))) {
      for (let i = 0; i < headers.length; i += 2) {
        if (headers[i]!.toLowerCase() !== 'accept-encoding') continue;
        const accepted = headers[i + 1]!.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase()).filter((t) => SCRUBBABLE_ENCODINGS.has(t));
        headers = headers === request.headers ? [...headers] : headers;
        headers[i + 1] = accepted.length > 0 ? accepted.join(', ') : 'identity';
      }
    }

    for (const c of this.bound) {
      const refusal = this.boundTo(c, request);
      const allows = (where: 'header' | 'basic' | 'query' | 'body') => c.spec.in.includes(where);
      // Headers, including the inside of Basic credentials.
      for (let i = 1; i < headers.length; i += 2) {
        const name = headers[i - 1]!;
        const value = headers[i]!;
        const basic = /^basic\s+/i.exec(value);
        if (basic) {
          const decoded = Buffer.from(value.slice(basic[0].length).trim(), 'base64').toString('utf8');
          if (occurrences(decoded, c.placeholder).length > 0) {
            if (refusal) throw new Misuse(c.spec.name, `header ${name.toLowerCase()} (basic)`, refusal);
            if (allows('basic')) {
              const swapped = replaceWhole(decoded, c.placeholder, await c.secret.current());
              headers = headers === request.headers ? [...headers] : headers;
              headers[i] = `${value.slice(0, basic[0].length)}${Buffer.from(swapped, 'utf8').toString('base64')}`;
              used.add(c.spec.name);
            }
            continue;
          }
        }
        if (occurrences(value, c.placeholder).length > 0) {
          if (refusal) throw new Misuse(c.spec.name, `header ${name.toLowerCase()}`, refusal);
          if (allows('header')) {
            headers = headers === request.headers ? [...headers] : headers;
            headers[i] = replaceWhole(value, c.placeholder, await c.secret.current());
            used.add(c.spec.name);
          }
        }
      }
      // The query string.
      const q = pathWithQuery.indexOf('?');
      if (q !== -1 && occurrences(pathWithQuery.slice(q), c.placeholder).length > 0) {
        if (refusal) throw new Misuse(c.spec.name, 'query', refusal);
        if (allows('query')) {
          const secret = encodeURIComponent(await c.secret.current());
          pathWithQuery = pathWithQuery.slice(0, q) + replaceWhole(pathWithQuery.slice(q), c.placeholder, secret);
          used.add(c.spec.name);
        }
      }
      // The body, only where the operator opted in, only for listed content types.
      if (!refusal && allows('body') && c.spec.body && request.contentType) {
        const type = request.contentType.split(';')[0]!.trim().toLowerCase();
        if (c.spec.body.types.includes(type)) {
          const secret = await c.secret.current();
          const encoded = type === 'application/json' ? JSON.stringify(secret).slice(1, -1) : encodeURIComponent(secret);
          const replacement: Replacement = { find: Buffer.from(c.placeholder), replace: Buffer.from(encoded) };
          const name = c.spec.name;
          const stream = new ReplaceStream([replacement], () => used.add(name), c.spec.body.maxBytes);
          // Chained when several credentials opt in to body swapping.
          bodyTransform = bodyTransform ? chain(bodyTransform, stream) : stream;
        }
      }
    }
    return { kind: 'forward', pathWithQuery, headers, used: [...used], bodyTransform };
  }

  scrubResponse(
    host: string,
    headers: Record<string, string | string[] | undefined>,
    hasBody: boolean,
    onScrub: () => void,
  ): ResponseScrub | null {
    // Only hosts a secret is ever sent to can echo one.
    const relevant = this.bound.filter((c) => c.spec.hosts.some((p) => matchHostPattern(p, host)));
    if (relevant.length === 0) return null;
    // The same pairs as text (for headers) and as bytes (for bodies).
    const pairs: { find: string; replace: string }[] = [];
    for (const c of relevant) for (const value of c.secret.known()) pairs.push({ find: value, replace: c.placeholder });
    if (pairs.length === 0) return null;
    const replacements: Replacement[] = pairs.map((p) => ({ find: Buffer.from(p.find), replace: Buffer.from(p.replace) }));
    let scrubbed = false;
    const scrub = (v: string) => {
      let result = v;
      for (const p of pairs) {
        if (result.includes(p.find)) {
          result = result.split(p.find).join(p.replace);
          scrubbed = true;
        }
      }
      return result;
    };
    const out: Record<string, string | string[]> = Object.create(null);
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      out[name] = Array.isArray(value) ? value.map(scrub) : scrub(value);
    }
    if (scrubbed) onScrub();
    if (!hasBody) return { headers: out, bodyTransform: null, scrubChunks: null, scrubWhole: null };
    // Compressed bodies are decoded so an echoed secret cannot hide in them; the client then
    // receives the body uncompressed.
    const encoding = String(out['content-encoding'] ?? '').trim().toLowerCase();
    const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip() : encoding === 'br' ? createBrotliDecompress() : encoding === 'deflate' ? createInflate() : null;
    if (decoder) {
      delete out['content-encoding'];
      return { headers: out, bodyTransform: chain(decoder, new ReplaceStream(replacements, onScrub)), scrubChunks: null, scrubWhole: null };
    }
    if (encoding !== '' && encoding !== 'identity') {
      return { headers: out, bodyTransform: null, scrubChunks: null, scrubWhole: null, refuse: `response from ${host} is ${encoding}-encoded, which the proxy cannot inspect for echoed secrets` };
    }
    const replacer = new Replacer(replacements, onScrub);
    return { headers: out, bodyTransform: null, scrubChunks: replacer, scrubWhole: (body) => replacer.replaceWhole(body) };
  }
}

/** One duplex that writes into `head` and reads from `tail`, with errors carried through. */
function chain(head: Duplex, tail: Duplex): Duplex {
  head.on('error', (err) => tail.destroy(err));
  head.pipe(tail);
  return Duplex.from({ writable: head, readable: tail });
}
