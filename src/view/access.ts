// Who may use the view: a browser on this host that opened the printed URL. The URL's token is
// traded once for an HttpOnly SameSite=Strict cookie; every request must name the view by a
// loopback Host (a page on a rebinding name reaches the socket, but not with our Host); every write
// must come from the view's own origin. Pure functions, so each check is tested without a socket.
import net from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** The page's policy: nothing inline, nothing from elsewhere, never framed. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers every answer of the view carries. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/** True for an address the view may listen on: loopback only. */
export function isLoopback(address: string): boolean {
  if (net.isIPv4(address)) return address.startsWith('127.');
  return address === '::1';
}

/** The Host header values that name the view: its address or localhost, with its port. */
export function viewHosts(address: string, port: number): Set<string> {
  const literal = net.isIPv6(address) ? `[${address}]` : address;
  return new Set([`${literal}:${port}`, `localhost:${port}`]);
}

export function sameBytes(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Why a state-changing request is refused, or null. The browser says where it came from: Origin
 * must be one of the view's own; without Origin, Sec-Fetch-Site must say same-origin. A request
 * that says neither is not from a page of the view (the view has no other clients that write).
 */
export function writeRefusal(headers: IncomingHttpHeaders, hosts: ReadonlySet<string>): string | null {
  const origin = headers.origin;
  const site = headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return `Sec-Fetch-Site is ${JSON.stringify(site)}, not same-origin`;
  if (origin !== undefined) {
    const m = /^http:\/\/(.+)$/.exec(origin);
    if (!m || !hosts.has(m[1]!)) return `Origin ${JSON.stringify(origin)} is not this view`;
    return null;
  }
  return site === 'same-origin' ? null : 'a write must come from the view page (no Origin or Sec-Fetch-Site)';
}
