// The destination guard: an allowlisted name is not a safe destination if it resolves to the
// host itself, the cloud metadata service or a private network. Checked on the address that is
// then dialled, so DNS rebinding between check and connect is impossible.
import net from 'node:net';

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

const BLOCKED: readonly Range[] = [
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
];

/** IPv4 addresses hidden inside IPv6 forms that route to them: NAT64, 6to4, IPv4-compatible. */
function embeddedIpv4(b: Uint8Array): Uint8Array | null {
  const v4 = (o: number) => ipBytes(`${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`);
  const zero = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return v4(12); // 64:ff9b::/96
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2); // 2002::/16 (6to4)
  if (zero(0, 12) && !zero(12, 16) && !(zero(12, 15) && b[15] === 1)) return v4(12); // ::a.b.c.d
  return null;
}

export class DestinationGuard {
  private readonly allowed: readonly Range[];
  private readonly own = new Map<string, Uint8Array>();

  constructor(allowPrivate: readonly string[] = []) {
    this.allowed = allowPrivate.map(parseCidr);
  }

  /** The proxy's own listening addresses: never a destination. */
  addOwnAddress(address: string): void {
    const bytes = ipBytes(address);
    if (bytes) this.own.set(address, bytes);
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
      const hit = BLOCKED.find((r) => inRange(candidate, r));
      if (hit) return candidate === bytes ? hit.name : `${hit.name}, embedded in ${address}`;
    }
    return null;
  }
}
