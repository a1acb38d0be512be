// Validation of the `credentials:` section. A credential says: inside the container, these env
// vars hold a placeholder; when a request to one of these hosts carries the placeholder in one
// of these places, the proxy swaps in the real secret from `secret:`. The broker itself is a
// later feature; validating now means policies written today keep working.

import { parseHostPattern } from './host-pattern.js';
import { CREDENTIAL_PRESETS, type CredentialPreset } from './presets.js';
import type { Reader, Value } from './reader.js';
import { parseAws, parseGithubApp } from './minted-sources.js';
import type { CredentialLocation, CredentialSpec, SecretSource } from './types.js';

const CREDENTIAL_KEYS = ['name', 'preset', 'env', 'placeholder', 'secret', 'hosts', 'in', 'headers', 'body'] as const;
const SECRET_KEYS = ['env', 'file', 'command', 'ttl_seconds', 'claude_login', 'google', 'scopes', 'github_app', 'aws'] as const;
const SOURCE_KINDS = ['env', 'file', 'command', 'claude_login', 'google', 'github_app', 'aws'] as const;
const GOOGLE_DEFAULT_SCOPES: readonly string[] = Object.freeze(['https://www.googleapis.com/auth/cloud-platform']);
const BODY_KEYS = ['types', 'max_bytes'] as const;
const LOCATIONS: readonly CredentialLocation[] = ['header', 'basic', 'query', 'body'];
const DEFAULT_LOCATIONS: readonly CredentialLocation[] = Object.freeze(['header', 'basic']);
const DEFAULT_HEADERS: readonly string[] = Object.freeze(['authorization']);
// RFC 9110 token characters; hop-by-hop and proxy headers never reach an upstream.
const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9a-z-]{1,64}$/;
const UNUSABLE_HEADERS = new Set(['host', 'connection', 'proxy-authorization', 'proxy-connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'range', 'if-range']);
const DEFAULT_TTL_SECONDS = 300;
const DEFAULT_BODY_MAX_BYTES = 1048576;

const NAME_RE = /^[a-z0-9_-]{1,40}$/;
const ENV_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PLACEHOLDER_RE = /^[A-Za-z0-9_.:-]{12,256}$/;
const MEDIA_TYPE_RE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/;

const PRESET_NAMES = Object.keys(CREDENTIAL_PRESETS).join(', ');
const SECRET_FORMS = 'secret: { env: NAME }, { file: PATH }, { command: [program, arg, ...], ttl_seconds: 300 }, { claude_login: ~/.claude/.credentials.json }, { google: KEY_FILE | adc }, { github_app: {...} } or { aws: { profile: NAME } }';

const HINT = {
  list: 'Write credentials: as a list, e.g. credentials: [{ preset: github, secret: { env: AIRLOCK_GITHUB_TOKEN } }]',
  entry: 'Each credential is a map, e.g. - { preset: github, secret: { env: AIRLOCK_GITHUB_TOKEN } }',
  name: `Give name: with 1-40 characters from a-z, 0-9, "_" and "-", or use a preset (${PRESET_NAMES})`,
  preset: `Known presets: ${PRESET_NAMES}`,
  env: 'Give env: a list of environment variable names, e.g. env: [GH_TOKEN, GITHUB_TOKEN]',
  placeholder: 'Use at least 12 characters from letters, digits, "_", ".", ":" and "-", or leave placeholder out to generate one per session',
  secret: `Every credential needs exactly one source: ${SECRET_FORMS}`,
  file: 'Give the path of a file holding the secret, e.g. file: /run/secrets/github-token',
  command: 'Give the command as a list (it runs without a shell), e.g. command: [op, read, "op://dev/github/token"]',
  ttl: 'Use a positive whole number of seconds, e.g. ttl_seconds: 300',
  claudeLogin: 'Give the Claude Code login store on the host, e.g. claude_login: ~/.claude/.credentials.json',
  google: 'Give a service-account key file, e.g. google: /etc/airlock/vertex-sa.json, or google: adc for the host user\'s application default credentials',
  scopes: 'Give scopes: a list of OAuth scopes, e.g. scopes: [https://www.googleapis.com/auth/cloud-platform]',
  hosts: 'Give hosts: a list of host names the secret may be sent to, e.g. hosts: [api.github.com, "*.githubusercontent.com"]',
  in: `Use a list from ${LOCATIONS.join(', ')}, e.g. in: [header, basic]`,
  headers: 'Give headers: the request headers the service reads this credential from, e.g. headers: [authorization, x-api-key] (default: authorization, or the preset\'s own)',
  body: 'Write body: as { types: [application/json], max_bytes: 1048576 }, together with "body" in in:',
  types: 'Give types: a list of media types, e.g. types: [application/json, application/x-www-form-urlencoded]',
  maxBytes: 'Use a positive whole number of bytes, e.g. max_bytes: 1048576',
} as const;

/** Which earlier credential already claimed a name, env var or placeholder. */
interface Claims {
  names: Map<string, string>;
  env: Map<string, string>;
  placeholders: Map<string, string>;
}

export function parseCredentials(r: Reader, v: Value | undefined): CredentialSpec[] {
  // `credentials:` with nothing under it (all entries commented out) grants nothing: accept it.
  if (!v || r.isNull(v)) return [];
  const claims: Claims = { names: new Map(), env: new Map(), placeholders: new Map() };
  return r.list(v, HINT.list).map((item) => parseCredential(r, item, claims));
}

function parseCredential(r: Reader, item: Value, claims: Claims): CredentialSpec {
  const f = r.entries(item, CREDENTIAL_KEYS, HINT.entry);
  const at = (key: string) => f.get(key) ?? { node: null, path: `${item.path}.${key}`, line: item.line };

  let preset: CredentialPreset | null = null;
  const presetValue = f.get('preset');
  if (presetValue) {
    const id = r.string(presetValue, HINT.preset);
    // hasOwn, so "constructor" or "__proto__" are not mistaken for presets.
    const found = Object.hasOwn(CREDENTIAL_PRESETS, id) ? CREDENTIAL_PRESETS[id] : undefined;
    if (!found) r.fail(presetValue, presetValue.path, `unknown preset ${JSON.stringify(id)}`, HINT.preset);
    preset = found;
  }

  const nameValue = f.get('name');
  let name: string;
  if (nameValue) {
    name = r.string(nameValue, HINT.name);
    if (!NAME_RE.test(name)) r.fail(nameValue, nameValue.path, `${JSON.stringify(name)} is not a valid credential name`, HINT.name);
  } else if (preset) {
    name = preset.name;
  } else {
    r.fail(item, `${item.path}.name`, 'is missing', HINT.name);
  }
  claim(r, claims.names, name, item.path, at('name'), `name ${JSON.stringify(name)}`, 'Give each credential a distinct name:');

  const envValue = f.get('env');
  const env = envValue ? parseEnvList(r, envValue) : preset?.env;
  if (!env) r.fail(item, `${item.path}.env`, 'is missing', HINT.env);
  for (const e of env) {
    claim(r, claims.env, e, item.path, at('env'), `env var ${e}`, 'An env var can carry only one credential; remove it from one of them');
  }

  const placeholder = parsePlaceholder(r, f.get('placeholder'), preset);
  if (placeholder !== null) {
    claim(r, claims.placeholders, placeholder, item.path, at('placeholder'), 'this placeholder', 'Give each credential its own placeholder');
  }

  const secretValue = f.get('secret');
  if (!secretValue) r.fail(item, `${item.path}.secret`, 'is missing', HINT.secret);
  const secret = parseSecret(r, secretValue);

  const hostsValue = f.get('hosts');
  const hosts = hostsValue ? parseHosts(r, hostsValue) : preset?.hosts;
  if (!hosts) r.fail(item, `${item.path}.hosts`, 'is missing', HINT.hosts);

  const inValue = f.get('in');
  const locations = inValue ? parseLocations(r, inValue) : (preset?.in ?? DEFAULT_LOCATIONS);
  const headersValue = f.get('headers');
  const headers = headersValue ? parseHeaderNames(r, headersValue) : (preset?.headers ?? DEFAULT_HEADERS);

  // `body` and "body" in `in:` come together: body injection needs to know which content types
  // to rewrite and how much to buffer, and a body: section that is never used is a mistake.
  const bodyValue = f.get('body');
  const wantsBody = locations.includes('body');
  if (bodyValue && !wantsBody) {
    r.fail(bodyValue, bodyValue.path, 'is only used when in: contains body', 'Add body to in:, e.g. in: [header, body], or remove body:');
  }
  if (wantsBody && !bodyValue) {
    r.fail(at('in'), `${item.path}.in`, 'contains body, but there is no body: section', HINT.body);
  }
  const body = bodyValue ? parseBody(r, bodyValue) : null;

  return Object.freeze({
    name,
    line: item.line ?? 1,
    env,
    placeholder,
    secret,
    hosts,
    in: locations,
    headers,
    body,
  });
}

function claim(r: Reader, seen: Map<string, string>, key: string, owner: string, at: Value, what: string, hint: string): void {
  const earlier = seen.get(key);
  if (earlier !== undefined) r.fail(at, at.path, `${what} is already used by ${earlier}`, hint);
  seen.set(key, owner);
}

function parseEnvList(r: Reader, v: Value): readonly string[] {
  const items = r.list(v, HINT.env);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', HINT.env);
  const names: string[] = [];
  for (const item of items) {
    const e = r.scalar(item, HINT.env);
    if (typeof e !== 'string' || !ENV_RE.test(e)) r.fail(item, v.path, `${JSON.stringify(e)} is not an env var name`, HINT.env);
    if (names.includes(e)) r.fail(item, v.path, `${e} is listed twice`, HINT.env);
    names.push(e);
  }
  return Object.freeze(names);
}

function parsePlaceholder(r: Reader, v: Value | undefined, preset: CredentialPreset | null): string | null {
  if (!v) return preset?.placeholder ?? null;
  // An explicit `placeholder: null` asks for the default: one generated per session.
  if (r.isNull(v)) return null;
  const p = r.string(v, HINT.placeholder);
  if (!PLACEHOLDER_RE.test(p)) r.fail(v, v.path, `${JSON.stringify(p)} is not a usable placeholder`, HINT.placeholder);
  return p;
}

function parseSecret(r: Reader, v: Value): SecretSource {
  const f = r.entries(v, SECRET_KEYS, HINT.secret);
  const sources = SOURCE_KINDS.filter((k) => f.has(k));
  const [kind] = sources;
  if (kind === undefined) r.fail(v, v.path, 'names no source', HINT.secret);
  if (sources.length > 1) r.fail(v, v.path, `gives both ${sources.join(' and ')}`, HINT.secret);
  const ttl = f.get('ttl_seconds');
  if (ttl && kind !== 'command') {
    r.fail(ttl, ttl.path, 'only applies to command secrets', 'Remove ttl_seconds; env and file secrets are read when needed');
  }
  const scopesValue = f.get('scopes');
  if (scopesValue && kind !== 'google') r.fail(scopesValue, scopesValue.path, 'only applies to google secrets', 'Remove scopes:');
  const value = f.get(kind) ?? v;
  switch (kind) {
    case 'claude_login': {
      const path = r.string(value, HINT.claudeLogin);
      if (path.trim() === '' || path.includes('\0')) r.fail(value, value.path, `${JSON.stringify(path)} is not a file path`, HINT.claudeLogin);
      return Object.freeze({ kind, path });
    }
    case 'google': {
      const raw = r.string(value, HINT.google);
      if (raw.trim() === '' || raw.includes('\0')) r.fail(value, value.path, `${JSON.stringify(raw)} is not a file path`, HINT.google);
      let scopes = GOOGLE_DEFAULT_SCOPES;
      if (scopesValue) {
        const items = r.list(scopesValue, HINT.scopes);
        if (items.length === 0) r.fail(scopesValue, scopesValue.path, 'is an empty list', HINT.scopes);
        scopes = Object.freeze(items.map((item) => {
          const scope = r.string(item, HINT.scopes);
          if (!/^[\x21-\x7e]{1,200}$/.test(scope)) r.fail(item, scopesValue.path, `${JSON.stringify(scope)} is not a scope`, HINT.scopes);
          return scope;
        }));
      }
      return Object.freeze({ kind, keyFile: raw === 'adc' ? null : raw, scopes });
    }
    case 'env': {
      const name = r.string(value, HINT.secret);
      if (!ENV_RE.test(name)) r.fail(value, value.path, `${JSON.stringify(name)} is not an env var name`, 'Use letters, digits and "_", not starting with a digit, e.g. env: AIRLOCK_GITHUB_TOKEN');
      return Object.freeze({ kind, name });
    }
    case 'file': {
      const path = r.string(value, HINT.file);
      if (path.trim() === '' || path.includes('\0')) r.fail(value, value.path, `${JSON.stringify(path)} is not a file path`, HINT.file);
      return Object.freeze({ kind, path });
    }
    case 'command': {
      const items = r.list(value, HINT.command);
      if (items.length === 0) r.fail(value, value.path, 'is an empty list', HINT.command);
      const argv = items.map((item) => {
        const arg = r.scalar(item, HINT.command);
        if (typeof arg !== 'string' && typeof arg !== 'number') r.fail(item, value.path, `${JSON.stringify(arg)} is not a command argument`, HINT.command);
        return String(arg);
      });
      if (argv[0] === '') r.fail(value, value.path, 'has an empty program name', HINT.command);
      const ttlSeconds = ttl ? r.integer(ttl, 1, 31_536_000, HINT.ttl) : DEFAULT_TTL_SECONDS;
      return Object.freeze({ kind, argv: Object.freeze(argv), ttlSeconds });
    }
    case 'github_app':
      return parseGithubApp(r, value);
    case 'aws':
      return parseAws(r, value);
  }
}

function parseHosts(r: Reader, v: Value): readonly string[] {
  const items = r.list(v, HINT.hosts);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', HINT.hosts);
  const hosts: string[] = [];
  for (const item of items) {
    const pattern = parseHostPattern(r.string(item, HINT.hosts));
    if (!pattern.ok) r.fail(item, v.path, pattern.problem, pattern.hint);
    if (!hosts.includes(pattern.host)) hosts.push(pattern.host);
  }
  return Object.freeze(hosts);
}

function parseHeaderNames(r: Reader, v: Value): readonly string[] {
  const items = r.list(v, HINT.headers);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', HINT.headers);
  const names: string[] = [];
  for (const item of items) {
    const raw = r.scalar(item, HINT.headers);
    const name = typeof raw === 'string' ? raw.trim().toLowerCase() : '';
    if (!HEADER_NAME_RE.test(name)) r.fail(item, v.path, `${JSON.stringify(raw)} is not a header name`, HINT.headers);
    if (UNUSABLE_HEADERS.has(name)) r.fail(item, v.path, `${name} cannot carry a credential (the proxy manages it)`, HINT.headers);
    if (!names.includes(name)) names.push(name);
  }
  return Object.freeze(names);
}

function parseLocations(r: Reader, v: Value): readonly CredentialLocation[] {
  const items = r.list(v, HINT.in);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', HINT.in);
  const out: CredentialLocation[] = [];
  for (const item of items) {
    const loc = r.scalar(item, HINT.in);
    const known = LOCATIONS.find((l) => l === loc);
    if (!known) r.fail(item, v.path, `${JSON.stringify(loc)} is not a place a credential can go`, HINT.in);
    if (!out.includes(known)) out.push(known);
  }
  return Object.freeze(out);
}

function parseBody(r: Reader, v: Value): { readonly types: readonly string[]; readonly maxBytes: number } {
  const f = r.entries(v, BODY_KEYS, HINT.body);
  const typesValue = f.get('types');
  if (!typesValue) r.fail(v, `${v.path}.types`, 'is missing', HINT.types);
  const items = r.list(typesValue, HINT.types);
  if (items.length === 0) r.fail(typesValue, typesValue.path, 'is an empty list', HINT.types);
  const types: string[] = [];
  for (const item of items) {
    const t = r.scalar(item, HINT.types);
    const lower = typeof t === 'string' ? t.trim().toLowerCase() : '';
    if (!MEDIA_TYPE_RE.test(lower)) r.fail(item, typesValue.path, `${JSON.stringify(t)} is not a media type`, HINT.types);
    if (!types.includes(lower)) types.push(lower);
  }
  const max = f.get('max_bytes');
  const maxBytes = max ? r.integer(max, 1, Number.MAX_SAFE_INTEGER, HINT.maxBytes) : DEFAULT_BODY_MAX_BYTES;
  return Object.freeze({ types: Object.freeze(types), maxBytes });
}
