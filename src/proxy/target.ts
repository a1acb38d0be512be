// Parsing what a client asked for: CONNECT authorities, absolute URIs, Host headers and paths.
// Everything returned is normalised the same way policy hosts are, so comparisons are exact.
import { normalizeHost } from '../policy/index.js';

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
