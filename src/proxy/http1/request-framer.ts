// The request side of HTTP/1.1 on the wire, as bytes: the head the proxy sends upstream (checked
// so that nothing a session or a swapped-in secret put in it can split it) and the chunk framing
// of a body without a length. No socket here; the upstream client writes what these return.
import { Http1Error } from './errors.js';
import { BAD_VALUE, TOKEN } from './http-syntax.js';
import type { UpstreamCall } from './types.js';

export const CRLF = Buffer.from('\r\n');
export const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const BAD_PATH = /[^\x21-\x7e\x80-\xff]/;

/** The request head (Host added when absent) and whether its body goes chunked. */
export function requestHead(call: UpstreamCall): { head: string; chunked: boolean } {
  if (BAD_PATH.test(call.path) || !TOKEN.test(call.method)) throw new Http1Error('request line not sendable', 'INVALID_REQUEST');
  let head = `${call.method} ${call.path} HTTP/1.1\r\n`;
  let host = false;
  let length = false;
  const h = call.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    if (!TOKEN.test(name) || BAD_VALUE.test(value)) throw new Http1Error(`header ${JSON.stringify(name)} not sendable`, 'INVALID_HEADER');
    if (name.length === 4 && name.toLowerCase() === 'host') host = true;
    else if (name.length === 14 && name.toLowerCase() === 'content-length') length = true;
    head += `${name}: ${value}\r\n`;
  }
  if (!host) head += `host: ${hostHeader(call)}\r\n`;
  const chunked = call.body !== null && !length;
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  return { head: head + '\r\n', chunked };
}

function hostHeader(call: UpstreamCall): string {
  const host = call.host.includes(':') ? `[${call.host}]` : call.host;
  return call.port === (call.secure ? 443 : 80) ? host : `${host}:${call.port}`;
}

/** What goes before a chunk of `length` bytes (the chunk is followed by CRLF). */
export function chunkPrefix(length: number): string {
  return length.toString(16) + '\r\n';
}
