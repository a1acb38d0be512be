// Validation of the host patterns written in a policy (allow rules and credential scopes).
// Kept separate from hosts.ts because it is about explaining mistakes, not about matching.

import { isIpLiteral, normalizeHost } from './hosts.js';
import type { AllowRule } from './types.js';

export type HostPattern =
  | { readonly ok: true; readonly host: string; readonly kind: AllowRule['kind'] }
  | { readonly ok: false; readonly problem: string; readonly hint: string };

const WILDCARD_HINT =
  'Only a leading "*." on a domain is allowed, e.g. "*.githubusercontent.com" (quoted, because YAML treats a leading * specially)';
const NAME_HINT =
  'Use a DNS name (letters, digits, "-", "_" and "."; labels up to 63 characters) or an IP address, e.g. api.github.com or 10.0.0.5';

export function parseHostPattern(raw: string): HostPattern {
  const text = raw.trim();
  const shown = JSON.stringify(raw);
  if (text.includes('://')) {
    return bad(`${shown} is a URL, not a host`, 'Give only the host name, e.g. host: api.github.com, and use paths: for the path');
  }
  if (text.includes('*')) {
    if (text === '*' || text === '*.') {
      return bad(`${shown} would allow every host`, WILDCARD_HINT);
    }
    const base = text.slice(2);
    if (!text.startsWith('*.') || base.includes('*')) {
      return bad(`${shown} is not a supported wildcard`, WILDCARD_HINT);
    }
    const host = normalizeHost(base);
    if (host === null) return bad(`${shown} is not a valid wildcard host`, WILDCARD_HINT);
    if (isIpLiteral(host)) return bad(`${shown} puts a wildcard on an IP address`, WILDCARD_HINT);
    if (!host.includes('.')) return bad(`${shown} would allow every host under the top-level domain "${host}"`, WILDCARD_HINT);
    return { ok: true, host: `*.${host}`, kind: 'wildcard' };
  }
  // "host:443" or "[::1]:443" -- a bare IPv6 address also contains ":", so look for the shapes.
  if (/^[^:]+:\d+$/.test(text) || /^\[[^\]]*\]:\d+$/.test(text)) {
    return bad(`${shown} includes a port`, 'Give the port separately, e.g. host: example.com with ports: [8443]');
  }
  if (text.includes('/')) {
    return bad(`${shown} includes a path`, 'Give only the host name and restrict paths with paths: ["/v1/*"]');
  }
  const host = normalizeHost(text);
  if (host === null) return bad(`${shown} is not a valid host name or IP address`, NAME_HINT);
  return { ok: true, host, kind: isIpLiteral(host) ? 'ip' : 'exact' };
}

function bad(problem: string, hint: string): HostPattern {
  return { ok: false, problem, hint };
}

/** A host allowed on the command line (`--allow HOST[:PORT]`): the pattern and its port, if any. */
export type AllowEntry =
  | { readonly ok: true; readonly host: string; readonly port: number | null }
  | { readonly ok: false; readonly problem: string; readonly hint: string };

const ENTRY_HINT = 'Give a host name, "*." and a domain, or an IP address, optionally with :PORT, e.g. --allow api.github.com, --allow "*.githubusercontent.com" or --allow registry.example.com:8443';

/** Checks one `--allow` entry: HOST, HOST:PORT, [IPv6] or [IPv6]:PORT (ports 1 to 65535). */
export function parseAllowEntry(raw: string): AllowEntry {
  const text = raw.trim();
  const shown = JSON.stringify(raw);
  if (text.includes('://')) {
    const host = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(text)?.[1]?.replace(/^[^@]*@/, '');
    return { ok: false, problem: `${shown} is a URL, not a host`, hint: host ? `Give only the host (and a port if not 80 or 443): --allow ${host}` : ENTRY_HINT };
  }
  const withPort = /^(\[[^\]]*\]|[^:]+):(\d+)$/.exec(text);
  let hostText = text;
  let port: number | null = null;
  if (withPort) {
    hostText = withPort[1]!.replace(/^\[(.*)\]$/, '$1');
    port = Number(withPort[2]);
    if (!Number.isSafeInteger(port) || port < 1 || port > 65535) {
      return { ok: false, problem: `${shown}: port ${withPort[2]} is out of range`, hint: 'A port is a number from 1 to 65535; without one, ports 80 and 443 are allowed' };
    }
  } else if (/^[^:]+:/.test(text) && !isIpLiteral(text.replace(/^\[(.*)\]$/, '$1'))) {
    return { ok: false, problem: `${shown}: what follows ":" is not a port`, hint: ENTRY_HINT };
  }
  const pattern = parseHostPattern(hostText);
  if (!pattern.ok) return { ok: false, problem: pattern.problem, hint: pattern.hint.startsWith('Give the port') ? ENTRY_HINT : pattern.hint };
  return { ok: true, host: pattern.host, port };
}
