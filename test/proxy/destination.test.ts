// The destination guard's list of this host's addresses: where it comes from, and when it is read
// again. (What the proxy answers for each form is in test/adversarial/host-addresses.test.ts.)
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { DestinationGuard, HostAddresses, localRoutesIpv4, localRoutesIpv6, readHostAddresses } from '../../src/proxy/destination.js';

// Abridged from a host with Docker's bridge down (no carrier) and an AnyIP range on lo.
const FIB_TRIE = `Main:
  +-- 0.0.0.0/0 3 0 4
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
        +-- 172.17.0.0/31 1 0 0
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.1
              /32 host LOCAL
     |-- 198.51.100.0
        /24 host LOCAL
        /24 link UNICAST
Local:
  +-- 0.0.0.0/0 3 0 4
     |-- 192.0.2.2
        /32 host LOCAL
`;

const IPV6_ROUTE = [
  'fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0',
  '00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo',
  'fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0',
  'fd000000000000000000000000000000 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 00100001     eth0',
  'ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0',
].join('\n');

describe("this host's addresses", () => {
  it('IPv4: every LOCAL route of /proc/net/fib_trie, prefixes included; broadcast and unicast routes are not', () => {
    expect(localRoutesIpv4(FIB_TRIE)).toEqual(['127.0.0.0/8', '127.0.0.1/32', '172.17.0.1/32', '198.51.100.0/24', '192.0.2.2/32']);
  });

  it('IPv6: the local and anycast routes of /proc/net/ipv6_route', () => {
    expect(localRoutesIpv6(IPV6_ROUTE)).toEqual([
      '0000:0000:0000:0000:0000:0000:0000:0001/128',
      'fd00:0000:0000:0000:0000:0000:0000:0002/128',
      'fd00:0000:0000:0000:0000:0000:0000:0000/128',
    ]);
  });

  it('the real list has every address os.networkInterfaces() reports, loopback and, on Linux, the local routes', () => {
    const listed = readHostAddresses();
    for (const info of Object.values(networkInterfaces()).flat()) {
      expect(listed).toContain(`${info!.address}/${info!.family === 'IPv4' ? 32 : 128}`);
    }
    expect(listed).toEqual(expect.arrayContaining(['127.0.0.0/8', '::1/128', '0.0.0.0/32', '::/128']));
    if (existsSync('/proc/net/fib_trie')) expect(listed).toContain('127.0.0.1/32');
  });

  it('an address that is not known is checked against a fresh read; a known one costs no read', () => {
    let current = ['192.0.2.2/32'];
    let reads = 0;
    const host = new HostAddresses(() => {
      reads++;
      return current;
    });
    const guard = new DestinationGuard(['198.18.0.0/15'], host);
    // Read at the first check, not when the guard is made (a session's start does not wait for it).
    expect(reads).toBe(0);
    expect(guard.blockedBecause('192.0.2.2')).toBe('an address of this host');
    expect(guard.blockedBecause('::ffff:192.0.2.2')).toBe('an address of this host');
    expect(guard.blockedBecause('64:ff9b::c000:202')).toBe('an address of this host, embedded in 64:ff9b::c000:202');
    expect(reads).toBe(1);
    // A bridge appears (in a range allowPrivate opened): the very next check sees it.
    expect(guard.blockedBecause('198.18.7.1')).toBeNull();
    expect(reads).toBe(2);
    current = ['192.0.2.2/32', '198.18.7.1/32'];
    expect(guard.blockedBecause('198.18.7.1')).toBe('an address of this host');
    expect(reads).toBe(3);
    // It goes away: the address is no longer this host's once the list is read again.
    current = ['192.0.2.2/32'];
    expect(guard.blockedBecause('203.0.113.9')).toBeNull();
    expect(guard.blockedBecause('198.18.7.1')).toBeNull();
  });

  it('a range the guard names is refused by that name before the host list is consulted', () => {
    let reads = 0;
    const guard = new DestinationGuard(
      [],
      new HostAddresses(() => {
        reads++;
        return ['127.0.0.0/8'];
      }),
    );
    expect(guard.blockedBecause('127.0.0.1')).toBe('loopback (127.0.0.0/8)');
    expect(guard.blockedBecause('10.1.2.3')).toBe('private (RFC 1918, 10.0.0.0/8)');
    expect(reads).toBe(0);
  });

  it('allowPrivate never opens the host: loopback, unspecified and interface addresses stay refused', () => {
    const guard = new DestinationGuard(['0.0.0.0/0', '::/0'], new HostAddresses(() => ['127.0.0.0/8', '::1/128', '0.0.0.0/32', '::/128', 'fd00::2/128']));
    for (const address of ['127.0.0.1', '127.9.9.9', '::1', '0.0.0.0', '::', 'fd00::2', '::ffff:127.0.0.1']) {
      expect(guard.blockedBecause(address), address).toBe('an address of this host');
    }
    expect(guard.blockedBecause('fd00::3')).toBeNull();
  });
});
