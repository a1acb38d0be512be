// Host name normalisation and rule-host matching.
//
// Everything that compares hosts (policy rules, CONNECT targets, Host headers, SNI, credential
// scopes) must agree on one canonical spelling, otherwise "API.GitHub.com." and "api.github.com"
// could be treated as different hosts and a rule bypassed. This module is that single spelling.

import { isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';

const MAX_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
// Cheap cap before any real work, so absurd inputs are rejected without running IDNA over them.
const MAX_INPUT_LENGTH = 1024;

// Characters that are URL/authority delimiters or whitespace. domainToASCII runs WHATWG host
// parsing, which silently truncates at some of these (domainToASCII("a/b") === "a"), so they
// must be refused before it sees the input, not after.
const DELIMITERS = /[\s/\\?#@:%[\]*<>^|"'`{}\u0000-\u001f\u007f]/;
const ASCII_NAME = /^[a-z0-9._-]+$/;

/**
 * net.isIP, answered without Node's IPv6 pattern for a string with no colon (no IPv6 text form
 * lacks one): compiling that pattern costs a few ms of CPU, which every policy's host names would
 * otherwise pay before `airlock exec` starts its command.
 */
export function ipVersion(s: string): 0 | 4 | 6 {
  if (s.includes(':')) return isIPv6(s) ? 6 : 0;
  return isIPv4(s) ? 4 : 0;
}

/**
 * Canonical form of a host name or IP literal, or null if it is not a usable host.
 *
 * - trims, lower-cases, strips one trailing dot, strips IPv6 brackets
 * - IDN names become punycode ("bücher.example" -> "xn--bcher-kva.example")
 * - IPv4 stays dotted-quad, IPv6 becomes its compressed lower-case form
 * - names that resolvers would read as a non-canonical IPv4 ("127.1", "0x7f.1") are refused:
 *   they are ambiguous, and a rule or target should spell the address out
 */
export function normalizeHost(input: string): string | null {
  if (typeof input !== 'string' || input.length > MAX_INPUT_LENGTH) return null;
  let s = input.trim().toLowerCase();
  if (s === '') return null;

  if (s.startsWith('[') || s.endsWith(']')) {
    if (!(s.startsWith('[') && s.endsWith(']'))) return null;
    const inner = s.slice(1, -1);
    return ipVersion(inner) === 6 ? canonicalIpv6(inner) : null;
  }
  if (ipVersion(s) === 6) return canonicalIpv6(s);

  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s === '') return null;
  if (ipVersion(s) === 4) return s; // net.isIP only accepts plain dotted-quad without leading zeros

  if (DELIMITERS.test(s)) return null;
  const ascii = domainToASCII(s);
  if (ascii === '') return null;
  // WHATWG host parsing turns "127.1" into "127.0.0.1"; refuse rather than guess.
  if (ipVersion(ascii) !== 0) return null;
  if (!ASCII_NAME.test(ascii) || ascii.length > MAX_NAME_LENGTH) return null;
  for (const label of ascii.split('.')) {
    if (label.length === 0 || label.length > MAX_LABEL_LENGTH) return null;
  }
  return ascii;
}

function canonicalIpv6(address: string): string | null {
  try {
    // The URL parser prints IPv6 in the RFC 5952 form ("::1", "::ffff:102:304").
    return new URL(`http://[${address}]`).hostname.slice(1, -1);
  } catch {
    return null; // e.g. zone ids ("fe80::1%eth0") pass net.isIP but are not valid in a URL
  }
}

/** True for IPv4/IPv6 literals (without brackets). */
export function isIpLiteral(host: string): boolean {
  return ipVersion(host) !== 0;
}

/**
 * Does a normalised rule host match a normalised request host?
 *
 * - "api.example.com" matches only itself
 * - "*.example.com" matches any name with one or more labels in front of "example.com",
 *   never the apex "example.com" itself and never "badexample.com"
 * - IP literals match only the identical canonical address
 */
export function matchHostPattern(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) {
    // Keep the leading dot of the suffix: that is what stops "badexample.com" from matching.
    const suffix = pattern.slice(1);
    return host.length > suffix.length && host.endsWith(suffix) && !isIpLiteral(host);
  }
  return pattern === host;
}
