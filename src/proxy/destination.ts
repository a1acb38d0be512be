// The destination guard: an allowlisted name is not a safe destination if it resolves to the
// host itself, the cloud metadata service or a private network. Checked on the address that is
// then dialled, so DNS rebinding between check and connect is impossible.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';

interface Range {
  readonly bytes: Uint8Array; // 16 bytes (IPv4 as ::ffff:a.b.c.d)
  readonly prefix: number; // in bits, over the 16-byte form
  readonly name: string;
}

/** Parses an IPv4 or IPv6 literal into 16 bytes (IPv4 mapped into ::ffff:0:0/96). */
export function ipBytes(address: string): Uint8Array | null {
  const kind = net.isIP(address);
  if (kind === 4) {
    const out = new Uint8Array(16);
    out[10] = 0xff;
    out[11] = 0xff;
    address.split('.').forEach((part, i) => (out[12 + i] = Number(part)));
    return out;
  }
  if (kind !== 6) return null;
  let text = address.split('%')[0]!;
  const out = new Uint8Array(16);
  // An embedded dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const b = quad[1]!.split('.').map(Number);
    text = text.slice(0, -quad[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':').filter((g) => g !== '') : [];
  const tailGroups = tail ? tail.split(':').filter((g) => g !== '') : [];
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  if (groups.length !== 8) return null;
  groups.forEach((g: string, i: number) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

function range(cidr: string, name: string): Range {
  const [addr, bits] = cidr.split('/');
  const bytes = ipBytes(addr!);
  if (!bytes) throw new Error(`bad CIDR ${cidr}`);
  const prefix = Number(bits ?? (net.isIP(addr!) === 4 ? 32 : 128)) + (net.isIP(addr!) === 4 ? 96 : 0);
  return { bytes, prefix, name };
}

/** Parses an operator's CIDR (allow_private); throws a message naming it when malformed. */
export function parseCidr(cidr: string): Range {
  const match = /^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/.exec(cidr.trim());
  const kind = match ? net.isIP(match[1]!) : 0;
  const bits = match?.[2] === undefined ? (kind === 4 ? 32 : 128) : Number(match[2]);
  if (!match || kind === 0 || bits > (kind === 4 ? 32 : 128)) {
    throw new Error(`${JSON.stringify(cidr)} is not a CIDR range (e.g. 10.1.0.0/16 or fd00::/8)`);
  }
  return range(`${match[1]}/${bits}`, `allowed ${cidr}`);
}

function inRange(bytes: Uint8Array, r: Range): boolean {
  let bits = r.prefix;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[i]! & mask) !== (r.bytes[i]! & mask)) return false;
  }
  return true;
}

// Built at the first check, not when the module loads: parsing its IPv6 entries compiles Node's
// IPv6 pattern (net.isIPv6), ~10 ms of CPU that `airlock exec` would otherwise pay before its
// command starts (Node pays it at a session's first connection to a name anyway).
let blocked: readonly Range[] | undefined;
const blockedRanges = (): readonly Range[] => (blocked ??= [
  range('0.0.0.0/8', 'unspecified (0.0.0.0/8)'),
  range('127.0.0.0/8', 'loopback (127.0.0.0/8)'),
  range('10.0.0.0/8', 'private (RFC 1918, 10.0.0.0/8)'),
  range('172.16.0.0/12', 'private (RFC 1918, 172.16.0.0/12)'),
  range('192.168.0.0/16', 'private (RFC 1918, 192.168.0.0/16)'),
  range('100.64.0.0/10', 'carrier-grade NAT (100.64.0.0/10)'),
  range('169.254.0.0/16', 'link-local / cloud metadata (169.254.0.0/16)'),
  range('192.0.0.0/24', 'IETF protocol assignments (192.0.0.0/24)'),
  range('198.18.0.0/15', 'benchmarking (198.18.0.0/15)'),
  range('224.0.0.0/4', 'multicast (224.0.0.0/4)'),
  range('240.0.0.0/4', 'reserved (240.0.0.0/4)'),
  range('::/128', 'unspecified (::)'),
  range('::1/128', 'loopback (::1)'),
  range('fc00::/7', 'unique local (fc00::/7)'),
  range('fe80::/10', 'link-local (fe80::/10)'),
  range('ff00::/8', 'multicast (ff00::/8)'),
]);

/** IPv4 addresses hidden inside IPv6 forms that route to them: NAT64, 6to4, IPv4-compatible. */
function embeddedIpv4(b: Uint8Array): Uint8Array | null {
  const v4 = (o: number) => ipBytes(`${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`);
  const zero = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return v4(12); // 64:ff9b::/96
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2); // 2002::/16 (6to4)
  if (zero(0, 12) && !zero(12, 16) && !(zero(12, 15) && b[15] === 1)) return v4(12); // ::a.b.c.d
  return null;
}

// Always this host, whatever the interfaces say: the loopback ranges (Linux answers on all of
// 127.0.0.0/8; other systems may list only 127.0.0.1) and the unspecified addresses, which a
// connect() on Linux delivers to the host itself.
const ALWAYS_HOST = ['127.0.0.0/8', '::1/128', '0.0.0.0/32', '::/128'];

/**
 * Parses /proc/net/fib_trie: the IPv4 ranges whose route type is LOCAL, i.e. every address (or
 * prefix, for `ip route add local ...`) the kernel delivers to this host. Each leaf line
 * ("|-- 172.17.0.1") is followed by its routes ("/32 host LOCAL").
 */
export function localRoutesIpv4(fibTrie: string): string[] {
  const out: string[] = [];
  let leaf: string | null = null;
  for (const line of fibTrie.split('\n')) {
    const leafMatch = /^\s*\|-- (\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (leafMatch) {
      leaf = leafMatch[1]!;
      continue;
    }
    const route = /^\s*\/(\d{1,2}) \S+ LOCAL\s*$/.exec(line);
    if (route && leaf) out.push(`${leaf}/${route[1]}`);
    else if (!/^\s*\//.test(line)) leaf = null;
  }
  return out;
}

/**
 * Parses /proc/net/ipv6_route: the IPv6 routes flagged local (RTF_LOCAL) or anycast
 * (RTF_ANYCAST: the subnet-router addresses a forwarding host answers on), in every table.
 */
export function localRoutesIpv6(ipv6Route: string): string[] {
  const RTF_LOCAL = 0x80000000;
  const RTF_ANYCAST = 0x00100000;
  const out: string[] = [];
  for (const line of ipv6Route.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^[0-9a-f]{32}$/i.test(f[0]!)) continue;
    const flags = parseInt(f[8]!, 16);
    if ((flags & (RTF_LOCAL | RTF_ANYCAST)) === 0) continue;
    const groups = f[0]!.match(/.{4}/g)!.join(':');
    out.push(`${groups}/${parseInt(f[1]!, 16)}`);
  }
  return out;
}

/** Reads a /proc table and parses it, parsing again only when its text has changed. */
function procTable(path: string, parse: (text: string) => string[]): () => string[] {
  let lastText: string | null = null;
  let lastRoutes: string[] = [];
  return () => {
    let text: string;
    try {
      text = readFileSync(path, 'latin1');
    } catch {
      return []; // not Linux, or /proc not mounted: the interface list still answers
    }
    if (text !== lastText) {
      lastRoutes = parse(text);
      lastText = text;
    }
    return lastRoutes;
  };
}

const ipv4LocalRoutes = procTable('/proc/net/fib_trie', localRoutesIpv4);
const ipv6LocalRoutes = procTable('/proc/net/ipv6_route', localRoutesIpv6);

/**
 * Every address this host answers on, as CIDRs: each interface address os.networkInterfaces()
 * lists, and on Linux the kernel's local routes. Both, because Node lists only interfaces that
 * are up and have carrier: a Docker bridge before its first container starts (or after its last
 * one stops) is missing there, yet the host answers on its address; the local routes have it.
 */
export function readHostAddresses(): string[] {
  const out = [...ALWAYS_HOST];
  try {
    for (const list of Object.values(networkInterfaces())) {
      for (const info of list ?? []) out.push(`${info.address.split('%')[0]}/${info.family === 'IPv4' ? 32 : 128}`);
    }
  } catch {
    // Listing can fail in a restricted sandbox; the local routes and ALWAYS_HOST still hold.
  }
  out.push(...ipv4LocalRoutes(), ...ipv6LocalRoutes());
  return out;
}

/**
 * This host's addresses, re-read on a miss. Interfaces come and go while the proxy runs (Docker
 * creates a bridge for every session network), and nothing cheap tells a process when. A stale
 * list errs in one direction only: an address that has gone stays refused until the next read
 * (harmless), while an address that has appeared would pass. So an address not in the list is
 * never accepted on the old list: the list is read again first, before that one dial, leaving no
 * window for a caller that keeps trying the address a new bridge will get. A periodic refresh
 * would leave one as long as its period. The cost (0.1-0.2 ms: listing interfaces, reading two
 * /proc tables; parsed again only when they changed) is paid once per upstream connection the
 * guard lets through, not per request (connections are pooled), and never for an address
 * already known to be the host.
 */
export class HostAddresses {
  private ranges: readonly Range[] = [];
  private key = '';

  // Read at the first check, not here: a miss re-reads before it answers, so an empty list is as
  // safe as a stale one, and a session's start (which makes a guard) does not wait for the read
  // and for parsing the IPv6 addresses (Node's IPv6 pattern: ~5 ms of CPU the first time).
  constructor(private readonly read: () => readonly string[] = readHostAddresses) {}

  /** The first of `candidates` that is an address of this host, or null. */
  find(candidates: readonly Uint8Array[]): Uint8Array | null {
    const known = this.match(candidates);
    if (known) return known;
    this.refresh();
    return this.match(candidates);
  }

  private match(candidates: readonly Uint8Array[]): Uint8Array | null {
    return candidates.find((c) => this.ranges.some((r) => inRange(c, r))) ?? null;
  }

  private refresh(): void {
    const cidrs = this.read();
    // Usually nothing has changed: skip parsing then (it is most of a re-read's cost).
    const key = cidrs.join(',');
    if (key === this.key) return;
    this.key = key;
    const ranges: Range[] = [];
    for (const cidr of cidrs) {
      try {
        ranges.push(parseCidr(cidr));
      } catch {
        // An entry this parser does not know is skipped; ALWAYS_HOST and the rest still hold.
      }
    }
    this.ranges = ranges;
  }
}

export class DestinationGuard {
  private readonly allowed: readonly Range[];
  private readonly own = new Map<string, Uint8Array>();

  /**
   * `allowPrivate` opens ranges of blockedRanges(); it never opens the proxy's own listeners or any
   * address of this host, which are refused whatever it says.
   */
  constructor(
    allowPrivate: readonly string[] = [],
    private readonly host: HostAddresses = new HostAddresses(),
  ) {
    this.allowed = allowPrivate.map(parseCidr);
  }

  /** The proxy's own listening addresses: never a destination. */
  addOwnAddress(address: string): void {
    const bytes = ipBytes(address);
    if (bytes) this.own.set(address, bytes);
  }

  private readonly ownPorts = new Set<number>();

  /**
   * A service of this process on a loopback port (the live view): never a destination, not even
   * through a --resolve override, which otherwise skips the guard.
   */
  addOwnEndpoint(address: string, port: number): void {
    this.addOwnAddress(address);
    this.ownPorts.add(port);
  }

  /**
   * Why an operator's override endpoint may not be dialled, or null: an address of this host on
   * the port of one of this process's own services (any address of the host may reach a socket
   * bound to loopback: 0.0.0.0, or 127.0.0.1 through its mapped IPv6 form).
   */
  overrideBlockedBecause(address: string, port: number): string | null {
    if (!this.ownPorts.has(port)) return null;
    const bytes = ipBytes(address);
    if (!bytes) return null;
    const inner = embeddedIpv4(bytes);
    const candidates = inner ? [bytes, inner] : [bytes];
    const own = [...this.own.values()];
    const isOwn = candidates.some((c) => own.some((o) => o.every((v, i) => v === c[i])));
    return isOwn || this.host.find(candidates) ? `this proxy's own service on port ${port}` : null;
  }

  /** Why `address` may not be dialled, or null when it may. */
  blockedBecause(address: string): string | null {
    const bytes = ipBytes(address);
    if (!bytes) return 'not an IP address';
    const candidates = [bytes];
    const inner = embeddedIpv4(bytes);
    if (inner) candidates.push(inner);
    // The own-address check sees through NAT64 / 6to4 / IPv4-compatible forms too: allow_private
    // may open the range the proxy listens in, but never the proxy itself.
    for (const candidate of candidates) {
      for (const own of this.own.values()) {
        if (own.every((v, i) => v === candidate[i])) {
          return candidate === bytes ? "the proxy's own address" : `the proxy's own address, embedded in ${address}`;
        }
      }
    }
    for (const candidate of candidates) {
      if (this.allowed.some((r) => inRange(candidate, r))) continue;
      const hit = blockedRanges().find((r) => inRange(candidate, r));
      if (hit) return candidate === bytes ? hit.name : `${hit.name}, embedded in ${address}`;
    }
    // Last, as it may re-read the interfaces: only an address that would otherwise be dialled
    // pays for that. Whatever allow_private opened, the host itself stays closed: a service
    // bound to 0.0.0.0 answers on every one of its addresses, and another session's proxy
    // listener sits on one (a Docker session network's gateway).
    const self = this.host.find(candidates);
    if (self) return self === bytes ? 'an address of this host' : `an address of this host, embedded in ${address}`;
    return null;
  }
}
