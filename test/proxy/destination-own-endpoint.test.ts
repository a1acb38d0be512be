// The proxy's own loopback services (the live view) are never a destination, even where an
// operator's --resolve override points a name at them (overrides otherwise skip the guard).
import { describe, expect, it } from 'vitest';
import { DestinationGuard, HostAddresses } from '../../src/proxy/destination.js';

describe('DestinationGuard.overrideBlockedBecause', () => {
  const guard = new DestinationGuard([], new HostAddresses(() => ['127.0.0.0/8', '::1/128', '0.0.0.0/32', '::/128', '192.0.2.10/32']));
  guard.addOwnEndpoint('127.0.0.1', 7070);

  it('refuses every address of this host on the port of an own service', () => {
    for (const address of ['127.0.0.1', '0.0.0.0', '::ffff:127.0.0.1', '127.0.0.2', '::1', '192.0.2.10']) {
      expect(guard.overrideBlockedBecause(address, 7070), address).toBe("this proxy's own service on port 7070");
    }
  });

  it('lets an override to another port, or to another machine on that port, through', () => {
    expect(guard.overrideBlockedBecause('127.0.0.1', 7071)).toBeNull();
    expect(guard.overrideBlockedBecause('198.51.100.7', 7070)).toBeNull();
  });

  it('also refuses the service through the guard itself (its address is the proxy\'s own)', () => {
    expect(guard.blockedBecause('127.0.0.1')).toBe("the proxy's own address");
  });
});
