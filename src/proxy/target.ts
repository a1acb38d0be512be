// Parsing what a client asked for: CONNECT authorities, absolute URIs, Host headers and paths.
// Everything returned is normalised the same way policy hosts are, so comparisons are exact.
import { normalizeHost } from '../policy/index.js';
import type { MethodOverride } from '../policy/index.js';

export interface Authority {
  readonly host: string;
  readonly port: number;
}

/** "host:port", "[v6]:port" or (with a default port) "host". Null when malformed. */
export function parseAuthority(raw: string | undefined, defaultPort: number | null): Authority | null {
  if (!raw || raw.length > 300) return null;
  let hostPart: string;
  let portPart: string | undefined;
  if (raw.startsWith('[')) {
    const close = raw.indexOf(']');
    if (close === -1) return null;
    hostPart = raw.slice(1, close);
    const rest = raw.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) return null;
    portPart = rest === '' ? undefined : rest.slice(1);
  } else {
    const colon = raw.lastIndexOf(':');
    if (colon !== raw.indexOf(':')) return null; // bare IPv6 without brackets is ambiguous
    hostPart = colon === -1 ? raw : raw.slice(0, colon);
    portPart = colon === -1 ? undefined : raw.slice(colon + 1);
  }
  let port: number;
  if (portPart === undefined) {
    if (defaultPort === null) return null;
    port = defaultPort;
  } else {
    if (!/^[0-9]{1,5}$/.test(portPart)) return null;
    port = Number(portPart);
    if (port < 1 || port > 65535) return null;
  }
  const host = normalizeHost(hostPart);
  return host ? { host, port } : null;
}

export interface AbsoluteTarget extends Authority {
  readonly scheme: 'http' | 'https' | 'ws' | 'wss';
  readonly pathWithQuery: string;
}

/** Parses an absolute-form request target (`http://host:port/path?q`). */
export function parseAbsoluteUri(raw: string): AbsoluteTarget | null {
  const match = /^(https?|wss?):\/\/([^/?#]*)([^#]*)/i.exec(raw);
  if (!match) return null;
  const scheme = match[1]!.toLowerCase() as AbsoluteTarget['scheme'];
  const authorityRaw = match[2]!;
  if (authorityRaw.includes('@')) return null; // userinfo in a proxy request is a smuggling vector
  const authority = parseAuthority(authorityRaw, scheme === 'https' || scheme === 'wss' ? 443 : 80);
  if (!authority) return null;
  const rest = match[3] || '/';
  return { scheme, ...authority, pathWithQuery: rest.startsWith('/') ? rest : `/${rest}` };
}

// Paths made only of these, without dot segments or encoded dots, are forwarded byte for byte.
const PLAIN_PATH = /^\/[A-Za-z0-9\-_~!$&'()*+,;=:@%/]*$/;

export interface NormalisedPath {
  /** Path without query, dot segments resolved: what rules are matched against. */
  readonly path: string;
  /** Path without query as the client sent it: what ambiguous encodings are judged on. */
  readonly raw: string;
  /** What is sent upstream: the same path plus the query. */
  readonly forward: string;
}

/**
 * Resolves dot segments (including percent-encoded ones) and backslashes the way servers will,
 * so a rule on /v1/* cannot be walked out of with /v1/../admin. The upstream gets exactly the
 * path that was checked.
 */
export function normalisePath(pathWithQuery: string): NormalisedPath | null {
  if (!pathWithQuery.startsWith('/')) return null;
  const q = pathWithQuery.indexOf('?');
  const rawPath = q === -1 ? pathWithQuery : pathWithQuery.slice(0, q);
  const query = q === -1 ? '' : pathWithQuery.slice(q);
  if (PLAIN_PATH.test(rawPath) && !rawPath.includes('/.') && !/%2e/i.test(rawPath)) {
    return { path: rawPath, raw: rawPath, forward: pathWithQuery };
  }
  try {
    const url = new URL(rawPath, 'http://airlock.invalid');
    return { path: url.pathname, raw: rawPath, forward: url.pathname + query };
  } catch {
    return null;
  }
}

// Headers that Rails (Rack::MethodOverride), Laravel/Symfony, Express method-override, ASP.NET and
// OData read as "run this request as another method", lower-case with "-" for "_": CGI-style
// servers map X_HTTP_METHOD_OVERRIDE and X-HTTP-Method-Override to the same variable.
const OVERRIDE_HEADERS = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);

/**
 * The method overrides a request carries: the headers above (any case, "_" or "-", each one) and the
 * `_method` query parameter (name and value decoded; ";" also separates, as older Rack splits on
 * it). Values are upper-cased as those frameworks do. A `_method` field in a form body is not
 * seen: bodies are streamed through, not parsed.
 */
export function methodOverrides(rawHeaders: readonly string[], pathWithQuery: string): readonly MethodOverride[] {
  // Nearly every request has none: no array is made for those.
  let found: MethodOverride[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    // Every such name starts with "x-" and is 13 to 22 characters long: most headers stop here.
    if (name.length < 13 || name.length > 22 || (name.charCodeAt(0) | 0x20) !== 0x78) continue;
    if (OVERRIDE_HEADERS.has(name.toLowerCase().replace(/_/g, '-'))) {
      (found ??= []).push({ via: `header ${name}`, method: rawHeaders[i + 1]!.trim().toUpperCase() });
    }
  }
  const q = pathWithQuery.indexOf('?');
  // "_method" spelled out, or with some of its letters percent-encoded.
  if (q === -1 || !MAY_NAME_METHOD.test(pathWithQuery.slice(q))) return found ?? NONE;
  for (const pair of pathWithQuery.slice(q + 1).split(/[&;]/)) {
    // "_method" is 7 characters; an encoded spelling is longer.
    if (pair.length < 7) continue;
    const eq = pair.indexOf('=');
    const name = decodeQueryText(eq === -1 ? pair : pair.slice(0, eq)).trim().toLowerCase();
    // "_method[]" too: parsers that read it as a list may still take its first value.
    if (name !== '_method' && !name.startsWith('_method[')) continue;
    (found ??= []).push({ via: 'query parameter _method', method: decodeQueryText(eq === -1 ? '' : pair.slice(eq + 1)).trim().toUpperCase() });
  }
  return found ?? NONE;
}

const NONE: readonly MethodOverride[] = [];

const PATH_OVERRIDE_HEADERS = new Set(['x-original-url', 'x-rewrite-url']);

/** Names of the headers a request carries that some servers serve instead of its path. */
export function pathOverrides(rawHeaders: readonly string[]): readonly string[] {
  let found: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    // Both names are 13 or 14 characters and start with "x-": most headers stop here.
    if ((name.length !== 13 && name.length !== 14) || (name.charCodeAt(0) | 0x20) !== 0x78) continue;
    if (PATH_OVERRIDE_HEADERS.has(name.toLowerCase().replace(/_/g, '-'))) (found ??= []).push(name);
  }
  return found ?? NO_NAMES;
}

const NO_NAMES: readonly string[] = [];
const MAY_NAME_METHOD = /method|%/i;

/**
 * "+" as space and the ASCII percent-escapes decoded: enough to read a method name, and it cannot
 * fail on malformed escapes (which are left as they are) the way decodeURIComponent does.
 */
function decodeQueryText(text: string): string {
  if (!text.includes('%') && !text.includes('+')) return text;
  return text.replace(/\+/g, ' ').replace(/%([0-7][0-9A-Fa-f])/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}
