// A strict reader of the request heads that make up nearly all traffic inside a tunnel, so that
// those skip Node's HTTP server (its objects and callbacks cost more per request than the policy,
// the credential swap and the audit together). It accepts a narrow, unambiguous subset only:
// anything it does not accept goes, unread, to Node's own parser, which serves it or refuses it
// exactly as before. So it never needs to judge a doubtful head itself; it must only never accept
// a head that Node's parser would read differently.
import { TOKEN } from './http-syntax.js';

/** The header values forwarding reads by name (Node's IncomingMessage.headers has them too). */
export interface HeadFields {
  readonly host?: string;
  readonly 'content-length'?: string;
  readonly 'content-type'?: string;
  readonly connection?: string;
}

/** The request head fields forwarding uses (Node's IncomingMessage has the same). */
export interface ParsedHead {
  readonly method: string;
  readonly url: string;
  /** [name, value, ...] in order, names as sent. */
  readonly rawHeaders: string[];
  readonly headers: HeadFields;
  /** Body length (0: none). */
  readonly contentLength: number;
  /** The client asked for the connection to close after this exchange. */
  readonly close: boolean;
  /** Bytes of the head, CRLFCRLF included. */
  readonly headBytes: number;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

// Origin-form with RFC 3986 characters only (pchar, '/', '?' and '%'): no fragment, no spaces.
const ORIGIN_FORM = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/;
// Visible ASCII, space and tab; no control characters, no bytes above 0x7E.
const PLAIN_VALUE = /^[\t\x20-\x7e]*$/;
const DECIMAL = /^(?:0|[1-9][0-9]{0,14})$/;

/** Headers whose presence sends the request to Node's parser (framing, upgrades, 100-continue). */
const HAND_OFF = new Set(['transfer-encoding', 'upgrade', 'expect', 'http2-settings', 'te']);
/** Headers that must appear at most once on the fast path (Node keeps the first or joins them). */
const SINGLE = new Set(['host', 'content-length', 'content-type', 'connection']);

const MAX_HEADERS = 100;

/**
 * Reads the request head at the start of `buf`, whose CRLFCRLF ends at `end` (its index).
 * Returns null for anything outside the fast path's subset.
 */
export function parseRequestHead(buf: Buffer, end: number): ParsedHead | null {
  const text = buf.toString('latin1', 0, end);
  const lineEnd = text.indexOf('\r\n');
  const requestLine = lineEnd === -1 ? text : text.slice(0, lineEnd);
  const sp1 = requestLine.indexOf(' ');
  const sp2 = requestLine.indexOf(' ', sp1 + 1);
  if (sp1 === -1 || sp2 === -1) return null;
  const method = requestLine.slice(0, sp1);
  const url = requestLine.slice(sp1 + 1, sp2);
  if (!METHODS.has(method) || requestLine.slice(sp2) !== ' HTTP/1.1' || !ORIGIN_FORM.test(url)) return null;

  const rawHeaders: string[] = [];
  const headers: Record<string, string> = {};
  let pos = lineEnd === -1 ? text.length : lineEnd + 2;
  while (pos < text.length) {
    let next = text.indexOf('\r\n', pos);
    if (next === -1) next = text.length;
    const line = text.slice(pos, next);
    pos = next + 2;
    const colon = line.indexOf(':');
    if (colon <= 0) return null; // obs-fold, a missing colon or an empty name
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return null; // also a space before the colon
    let start = colon + 1;
    while (start < line.length && (line.charCodeAt(start) === 32 || line.charCodeAt(start) === 9)) start++;
    const value = line.slice(start);
    const last = value.charCodeAt(value.length - 1);
    // A bare CR or LF inside a line, a control byte, obs-text, or trailing whitespace (which
    // parsers trim differently): Node's parser decides.
    if (last === 32 || last === 9 || !PLAIN_VALUE.test(value)) return null;
    const lower = name.toLowerCase();
    if (HAND_OFF.has(lower)) return null;
    if (SINGLE.has(lower)) {
      if (headers[lower] !== undefined) return null;
      headers[lower] = value;
    }
    rawHeaders.push(name, value);
    if (rawHeaders.length > MAX_HEADERS * 2) return null;
  }

  let contentLength = 0;
  const declared = headers['content-length'];
  if (declared !== undefined) {
    if (!DECIMAL.test(declared)) return null;
    contentLength = Number(declared);
  }
  let close = false;
  const connection = headers.connection;
  if (connection !== undefined) {
    for (const token of connection.toLowerCase().split(',')) {
      const t = token.trim();
      if (t === 'upgrade') return null;
      if (t === 'close') close = true;
    }
  }
  return { method, url, rawHeaders, headers, contentLength, close, headBytes: end + 4 };
}
