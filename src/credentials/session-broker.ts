// The credential broker of one session: swaps placeholders for real secrets on requests to the
// hosts each secret is bound to (TLS only), refuses placeholders anywhere else, and scrubs
// secrets that upstreams echo back. A source may also stand in for its token endpoint (a Claude
// login's refresh): those requests are answered by the source, never forwarded.
import { randomBytes } from 'node:crypto';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { Duplex } from 'node:stream';
import { matchHostPattern } from '../policy/index.js';
import type { CredentialSpec } from '../policy/index.js';
import type { CredentialBroker, HostAnswer, OutgoingRequest, RequestSigner, ResponseScrub, ResponseToScrub, SessionFile, SignOutcome, SwapResult } from './broker.js';
import { variablesHolding } from './copies.js';
import { jsonEscaped, secretForms, usableSecret } from './secret-forms.js';
import { Replacer, ReplaceStream } from './replace-stream.js';
import { DecodedBodyScrub } from './compressed-body.js';
import type { Replacement } from './replace-stream.js';
import { CLAUDE_ONBOARDING_FILE, CLAUDE_TOKEN_ENV } from './claude-oauth.js';

/** Where the real value comes from. Implemented by the CLI (which may read env, files, commands). */
export interface SecretHandle {
  /**
   * The current value. Rejects with an error that names the credential, never the value.
   * `beforeUpstream` runs before the source refreshes it upstream (see swapRequest).
   */
  current(beforeUpstream?: () => boolean): Promise<string>;
  /** Values seen so far (for scrubbing echoes, including rotated-out ones). */
  known(): readonly string[];
  /** Values to look for in the session's environment, without refreshing anything (default: current()). */
  values?(): Promise<readonly string[]>;
  /** Files the session gets for this credential, with its placeholder in them. */
  sessionFiles?(placeholder: string): readonly SessionFile[];
  /**
   * Why the secret may not go with this request although its host is bound (an endpoint that
   * mints new credentials from it), or null.
   */
  refuses?(request: OutgoingRequest): string | null;
  /** True for requests the proxy answers itself for this credential (its token endpoint). */
  intercepts?(request: OutgoingRequest): boolean;
  /** `admit` comes before anything goes upstream for the answer (see SwapResult). */
  answer?(request: OutgoingRequest, body: Buffer, placeholder: string, admit: () => boolean): Promise<HostAnswer>;
  /** Set for a credential that signs requests (SigV4) rather than being swapped in. */
  readonly signer?: RequestSigner;
  /**
   * Told the status of each response to a request its value went with (`value`: the one sent): a
   * Claude login learns that the upstream refused its token (a 401), the only case in which a
   * session may make it refresh a token that is still fresh.
   */
  observe?(value: string, status: number): void;
  /** Ends what the source made for this session (a GitHub App token is revoked); never throws. */
  close?(): Promise<void>;
}

/** Bodies of requests a credential answers itself are read whole, up to this. */
const MAX_ANSWERED_BYTES = 64 * 1024;

/** What scrubbing a response from one host needs (see formsFor). */
interface HostForms {
  /** The credentials bound to the host (looked up once: every chunk of a response checks them). */
  readonly creds: readonly BoundCredential[];
  /** The known values each bound credential had when this was made. */
  readonly known: readonly (readonly string[])[];
  readonly forms: readonly Replacement[];
  readonly texts: readonly string[];
  readonly lowered: readonly string[];
}

const MAX_CACHED_HOSTS = 256;

interface BoundCredential {
  readonly spec: CredentialSpec;
  readonly placeholder: string;
  readonly secret: SecretHandle;
}

// Prefixes some clients check before they will send a token at all.
const PLACEHOLDER_PREFIX: Record<string, string> = {
  anthropic: 'sk-ant-api03-',
  'anthropic-oauth': 'sk-ant-oat01-',
  'claude-login': 'sk-ant-oat01-',
  vertex: 'ya29.',
  openai: 'sk-',
  github: 'ghp_',
  'github-app': 'ghs_',
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
  readonly sessionFiles: readonly SessionFile[];
  private readonly bound: readonly BoundCredential[];
  private readonly forms = new Map<string, Replacement[]>();
  private readonly hostForms = new Map<string, HostForms>();

  constructor(specs: readonly CredentialSpec[], secrets: ReadonlyMap<string, SecretHandle>) {
    this.bound = specs.map((spec) => {
      const secret = secrets.get(spec.name);
      if (!secret) throw new Error(`credential "${spec.name}" has no secret source`);
      return { spec, placeholder: spec.placeholder ?? generatePlaceholder(spec.name), secret };
    });
    const env: Record<string, string> = {};
    for (const c of this.bound) {
      if (c.secret.signer) Object.assign(env, c.secret.signer.sessionEnv(c.spec.env, c.placeholder));
      else for (const name of c.spec.env) env[name] = c.placeholder;
    }
    this.sessionEnv = Object.freeze(env);
    this.secretSourceEnv = Object.freeze(
      specs.flatMap((s) =>
        s.secret.kind === 'env' ? [s.secret.name] : s.secret.kind === 'aws' && s.secret.profile === null ? ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'] : [],
      ),
    );
    this.empty = this.bound.length === 0;
    const files = this.bound.flatMap((c) => c.secret.sessionFiles?.(c.placeholder) ?? []);
    // A Claude login token in the environment (env token mode): Claude Code's onboarding is done.
    if (this.bound.some((c) => c.spec.env.includes(CLAUDE_TOKEN_ENV))) files.push(CLAUDE_ONBOARDING_FILE);
    this.sessionFiles = Object.freeze(files.filter((f, i) => files.findIndex((g) => g.path === f.path) === i));
  }

  /** When the session ends: what a source made for it alone is given up. */
  async close(): Promise<void> {
    await Promise.all(this.bound.map((c) => c.secret.close?.()));
  }

  async variablesHoldingSecrets(env: Readonly<Record<string, string | undefined>>): Promise<string[]> {
    const current = (await Promise.all(this.bound.map(async (c) => (c.secret.values ? c.secret.values() : [await c.secret.current()])))).flat();
    // Values seen before the current one (a rotated file) may still be valid.
    const secrets = new Set([...current, ...this.bound.flatMap((c) => c.secret.known())]);
    return variablesHolding(env, [...secrets]);
  }

  private boundTo(c: BoundCredential, request: OutgoingRequest): string | null {
    if (request.scheme !== 'https') return 'secrets are never sent over plain http';
    if (!c.spec.hosts.some((pattern) => matchHostPattern(pattern, request.host))) {
      return `credential "${c.spec.name}" is bound to ${c.spec.hosts.join(', ')}, not ${request.host}`;
    }
    return c.secret.refuses?.(request) ?? null;
  }

  async swapRequest(request: OutgoingRequest, beforeUpstream?: (credential: string) => boolean): Promise<SwapResult> {
    try {
      return await this.swap(request, beforeUpstream);
    } catch (err) {
      if (err instanceof Misuse) return { kind: 'misuse', credential: err.credential, where: err.where, why: err.why };
      throw err;
    }
  }

  /** True when some credential may be sent to `host`: its responses are scrubbed. */
  private holdsSecrets(host: string): boolean {
    return this.bound.some((c) => c.spec.hosts.some((p) => matchHostPattern(p, host)));
  }

  /**
   * True when a swapped-in secret may be sent to `host`, as opposed to only a signing credential:
   * a signature's key id and session token are of no use without the secret key, which never
   * leaves the proxy, so S3's ranged downloads need not be refused for them.
   */
  private slicesMatter(host: string): boolean {
    return this.bound.some((c) => !c.secret.signer && c.spec.hosts.some((p) => matchHostPattern(p, host)));
  }

  private async swap(request: OutgoingRequest, beforeUpstream?: (credential: string) => boolean): Promise<SwapResult> {
    for (const c of this.bound) {
      const { secret } = c;
      if (request.scheme === 'https' && secret.answer && secret.intercepts?.(request)) {
        return { kind: 'answer', credential: c.spec.name, maxBytes: MAX_ANSWERED_BYTES, answer: (body, admit) => secret.answer!(request, body, c.placeholder, admit) };
      }
    }
    const used = new Set<string>();
    /** Values of credentials that watch their answers (observe), as sent with this request. */
    const observed: { c: BoundCredential; value: string }[] = [];
    let headers = request.headers;
    let pathWithQuery = request.pathWithQuery;
    let bodyTransform: Duplex | null = null;
    const echoes: Replacement[] = [];
    const writable = () => (headers === request.headers ? (headers = [...headers]) : headers);
    // Basic credentials as the session sent them, by header index: their echo is mapped back once
    // every credential is in (two credentials may share one header, user and password).
    const basicSent = new Map<number, string>();

    if (this.holdsSecrets(request.host)) {
      for (let i = headers.length - 2; i >= 0; i -= 2) {
        const name = headers[i]!.toLowerCase();
        if (name === 'accept-encoding') {
          // A host that may receive a secret must answer in an encoding the scrubber can read.
          const accepted = headers[i + 1]!.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase()).filter((t) => SCRUBBABLE_ENCODINGS.has(t));
          writable()[i + 1] = accepted.length > 0 ? accepted.join(', ') : 'identity';
        } else if ((name === 'range' || name === 'if-range') && this.slicesMatter(request.host)) {
          // Byte ranges shorter than a secret would hand it over in slices no scrubber can see.
          writable().splice(i, 2);
        }
      }
    }

    for (const c of this.bound) {
      // Signing credentials come last, over the request as the others left it.
      if (c.secret.signer) continue;
      const refusal = this.boundTo(c, request);
      const allows = (where: 'header' | 'basic' | 'query' | 'body') => c.spec.in.includes(where);
      const secretOf = async () => {
        const value = usableSecret(c.spec.name, await c.secret.current(beforeUpstream && (() => beforeUpstream(c.spec.name))));
        if (c.secret.observe && !observed.some((o) => o.c === c && o.value === value)) observed.push({ c, value });
        return value;
      };
      const headerRefusal = (name: string) =>
        refusal ??
        (c.spec.headers.includes(name)
          ? null
          : `credential "${c.spec.name}" may only be sent in ${c.spec.headers.join(', ')}; if the service reads it from ${name}, add ${name} to the credential's headers: in the policy`);
      // Headers, including the inside of Basic credentials.
      for (let i = 1; i < headers.length; i += 2) {
        const name = headers[i - 1]!.toLowerCase();
        const value = headers[i]!;
        // "Basic ..." (any case): checked by its first letter before the expression runs.
        const basic = (value.charCodeAt(0) | 0x20) === 0x62 ? /^basic\s+/i.exec(value) : null;
        if (basic) {
          const decoded = Buffer.from(value.slice(basic[0].length).trim(), 'base64').toString('utf8');
          if (occurrences(decoded, c.placeholder).length > 0) {
            const refused = headerRefusal(name);
            if (refused) throw new Misuse(c.spec.name, `header ${name} (basic)`, refused);
            if (allows('basic')) {
              const swapped = Buffer.from(replaceWhole(decoded, c.placeholder, await secretOf()), 'utf8').toString('base64');
              if (!basicSent.has(i)) basicSent.set(i, value.slice(basic[0].length).trim());
              writable()[i] = `${value.slice(0, basic[0].length)}${swapped}`;
              used.add(c.spec.name);
            }
            continue;
          }
        }
        if (value.includes(c.placeholder) && occurrences(value, c.placeholder).length > 0) {
          const refused = headerRefusal(name);
          if (refused) throw new Misuse(c.spec.name, `header ${name}`, refused);
          if (allows('header')) {
            writable()[i] = replaceWhole(value, c.placeholder, await secretOf());
            used.add(c.spec.name);
          }
        }
      }
      // The query string.
      const q = pathWithQuery.indexOf('?');
      if (q !== -1 && occurrences(pathWithQuery.slice(q), c.placeholder).length > 0) {
        if (refusal) throw new Misuse(c.spec.name, 'query', refusal);
        if (allows('query')) {
          const secret = encodeURIComponent(await secretOf());
          pathWithQuery = pathWithQuery.slice(0, q) + replaceWhole(pathWithQuery.slice(q), c.placeholder, secret);
          used.add(c.spec.name);
        }
      }
      // The body, only where the operator opted in, only for listed content types.
      if (!refusal && allows('body') && c.spec.body && request.contentType) {
        const type = request.contentType.split(';')[0]!.trim().toLowerCase();
        if (c.spec.body.types.includes(type)) {
          const secret = await secretOf();
          const encoded = type === 'application/json' ? jsonEscaped(secret) : encodeURIComponent(secret);
          const replacement: Replacement = { find: Buffer.from(c.placeholder), replace: Buffer.from(encoded) };
          const name = c.spec.name;
          const stream = new ReplaceStream([replacement], () => used.add(name), c.spec.body.maxBytes);
          // Chained when several credentials opt in to body swapping.
          bodyTransform = bodyTransform ? chain(bodyTransform, stream) : stream;
        }
      }
    }
    let signed: Extract<SignOutcome, { kind: 'signed' }> | null = null;
    for (const c of this.bound) {
      if (!c.secret.signer) continue;
      const outcome = await c.secret.signer.resign({ ...request, headers, pathWithQuery }, c.placeholder, this.boundTo(c, request));
      if (!outcome) continue;
      if (outcome.kind === 'refused') throw new Misuse(c.spec.name, outcome.where, outcome.why);
      if (signed) throw new Misuse(c.spec.name, 'header authorization', 'a request can be signed with one AWS credential only');
      signed = outcome;
      headers = outcome.headers;
      used.add(c.spec.name);
    }
    for (const [i, sent] of basicSent) {
      const value = headers[i]!;
      echoes.push({ find: Buffer.from(value.slice(value.search(/\s/)).trim()), replace: Buffer.from(sent) });
    }
    if (signed?.body && bodyTransform) throw new Misuse([...used].join(', '), 'body', 'a signed request cannot also have a credential swapped into its body');
    const signedResponse = signed?.onResponse;
    const onResponse =
      observed.length === 0
        ? signedResponse
        : (status: number, responseHeaders: Readonly<Record<string, string | string[] | undefined>>) => {
            for (const o of observed) if (used.has(o.c.spec.name)) o.c.secret.observe!(o.value, status);
            return signedResponse?.(status, responseHeaders) ?? null;
          };
    return { kind: 'forward', pathWithQuery, headers, used: [...used], bodyTransform, echoes, body: signed?.body, onResponse };
  }

  /**
   * The needles for every known value of the credentials bound to `host` (cached per value), and
   * their text for header checks, kept per host until a credential's known values change: every
   * response from such a host needs them.
   */
  private formsFor(host: string): HostForms {
    const cached = this.hostForms.get(host);
    if (cached && sameKnown(cached)) return cached;
    const creds = cached?.creds ?? this.bound.filter((c) => c.spec.hosts.some((p) => matchHostPattern(p, host)));
    const known: (readonly string[])[] = [];
    const forms: Replacement[] = [];
    for (const c of creds) {
      const values = c.secret.known();
      known.push([...values]);
      for (const v of values) {
        const value = v.trim();
        if (value === '') continue;
        const key = `${c.spec.name}\0${value}`;
        let f = this.forms.get(key);
        if (!f) {
          f = secretForms(value, c.placeholder, c.spec.name, c.spec.in.includes('basic'));
          this.forms.set(key, f);
        }
        forms.push(...f);
      }
    }
    this.forgetForms();
    const texts = forms.map((r) => r.find.toString('latin1'));
    const entry: HostForms = { creds, known, forms, texts, lowered: texts.map((t) => t.toLowerCase()) };
    // Hosts under a wildcard are many: the cache is dropped whole rather than grow without bound.
    if (this.hostForms.size >= MAX_CACHED_HOSTS) this.hostForms.clear();
    this.hostForms.set(host, entry);
    return entry;
  }

  /** Drops the needles of values no credential knows any more: rotations would pile them up. */
  private forgetForms(): void {
    const live = new Set<string>();
    for (const c of this.bound) for (const v of c.secret.known()) live.add(`${c.spec.name}\0${v.trim()}`);
    for (const key of this.forms.keys()) if (!live.has(key)) this.forms.delete(key);
  }

  scrubResponse(response: ResponseToScrub): ResponseScrub | null {
    const { host, headers, hasBody, onScrub } = response;
    // Only hosts a secret is ever sent to can echo one (no forms for any other host).
    const bound = this.formsFor(host);
    if (bound.forms.length === 0) return null;
    // The request's own echoes first: they cover a whole value and give back the session's own.
    const echoes = response.echoes ?? [];
    const withEchoes = (forms: readonly Replacement[]) => (echoes.length ? [...echoes, ...forms] : forms);
    let { texts, lowered } = bound;
    if (echoes.length) {
      const echoed = echoes.map((r) => r.find.toString('latin1'));
      texts = [...echoed, ...texts];
      lowered = [...echoed.map((t) => t.toLowerCase()), ...lowered];
    }
    // A body may stream for longer than a secret stays the same: the needles are looked up again
    // before each chunk, so a value rotated in meanwhile (and reflected here) is found too.
    let latest = bound;
    let needles = withEchoes(bound.forms);
    const live = (): readonly Replacement[] => {
      const now = this.formsFor(host);
      if (now !== latest) {
        latest = now;
        needles = withEchoes(now.forms);
      }
      return needles;
    };
    // One replacer for the headers and an identity body; onScrub may be called for both.
    const replacer = new Replacer(live, onScrub);
    const scrub = (v: string) => (texts.some((t) => v.includes(t)) ? replacer.replaceWhole(Buffer.from(v, 'latin1')).toString('latin1') : v);
    const out: Record<string, string | string[]> = Object.create(null);
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      // Names arrive lower-cased, so they are compared lower-cased; such a header has no use.
      if (lowered.some((t) => name.includes(t))) {
        onScrub();
        continue;
      }
      out[name] = Array.isArray(value) ? value.map(scrub) : scrub(value);
    }
    const none = { headers: out, bodyTransform: null, scrubChunks: null, scrubWhole: null, scrubAcross: null };
    if (response.status === 206 && this.slicesMatter(host)) {
      return { ...none, refuse: `partial content (206) from ${host}, which may receive a secret: a slice of a response could carry part of it past the scrubber` };
    }
    if (!hasBody) return none;
    // Compressed bodies are decoded so an echoed secret cannot hide in them; the client then
    // receives the body uncompressed (a .tgz inside stays compressed, searched; compressed-body.ts).
    const encoding = String(out['content-encoding'] ?? '').trim().toLowerCase();
    const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip() : encoding === 'br' ? createBrotliDecompress() : encoding === 'deflate' ? createInflate() : null;
    if (decoder) {
      delete out['content-encoding'];
      return { ...none, bodyTransform: chain(decoder, new DecodedBodyScrub(host, live, onScrub)) };
    }
    if (encoding !== '' && encoding !== 'identity') {
      return { ...none, refuse: `response from ${host} is ${encoding}-encoded, which the proxy cannot inspect for echoed secrets` };
    }
    return { ...none, scrubChunks: replacer, scrubWhole: (body) => replacer.replaceWhole(body), scrubAcross: (parts, found) => replacer.replaceAcross(parts, found) };
  }
}

/** True when the credentials bound to a host still know exactly the values they knew then. */
function sameKnown(entry: HostForms): boolean {
  for (let i = 0; i < entry.creds.length; i++) {
    const was = entry.known[i]!;
    const now = entry.creds[i]!.secret.known();
    if (was.length !== now.length) return false;
    for (let j = 0; j < now.length; j++) if (was[j] !== now[j]) return false;
  }
  return true;
}

/** One duplex that writes into `head` and reads from `tail`, with errors carried through. */
function chain(head: Duplex, tail: Duplex): Duplex {
  head.on('error', (err) => tail.destroy(err));
  head.pipe(tail);
  return Duplex.from({ writable: head, readable: tail });
}
