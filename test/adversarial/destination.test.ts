// Attack 1 (DNS rebinding / SSRF through an allowlisted name) and attack 5 (IP-literal targets).
//
// An allowlisted name is made to resolve — through a lookup hook the test controls, never real DNS
// and never the operator-trusted resolve map — to loopback, the metadata service, private ranges,
// NAT64-embedded loopback and so on. Each is tried on every path that dials: a plain-HTTP request,
// a request inside an inspected tunnel, a blind (inspect: false) CONNECT and a plain WebSocket
// upgrade. Every one must be refused with reason destination_blocked, naming the range, audited,
// with no dial ever attempted (the dial recorder throws for off-machine addresses, and local
// servers on 127.0.0.1 and ::1 at the port used count connections).
//
// The proxy listens on 127.0.0.2 here, so 127.0.0.1 is "just loopback", not the proxy's own
// address. allowPrivate cannot open loopback (an address of this host, see
// host-addresses.test.ts), so the control case opens 10.0.0.0/8 and sees the guard let 10.1.2.3
// through to the dial recorder, which stops it there.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parsePolicy } from '../../src/policy/index.js';
import { startAirlock, startHttpUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestUpstream } from '../helpers/servers.js';
import {
  alongside,
  dialRecorder,
  exchange,
  extraSession,
  fakeDns,
  proxyConnect,
  proxyGet,
  proxyOf,
  send,
  startCountingHttp,
  tunnelTls,
  upgradeHead,
} from './helpers.js';
import type { CountingServer, DialRecorder, FakeDns, ProxyAddress } from './helpers.js';

const PROXY_HOST = '127.0.0.2';

// name → what the attacker's DNS answers, and the range the refusal must name.
const HOSTILE: { name: string; addresses: string[]; range: string }[] = [
  { name: 'loop4', addresses: ['127.0.0.1'], range: 'loopback (127.0.0.0/8)' },
  { name: 'mapped', addresses: ['::ffff:127.0.0.1'], range: 'loopback (127.0.0.0/8)' },
  { name: 'metadata', addresses: ['169.254.169.254'], range: 'link-local / cloud metadata (169.254.0.0/16)' },
  { name: 'rfc1918', addresses: ['10.1.2.3'], range: 'private (RFC 1918, 10.0.0.0/8)' },
  { name: 'loop6', addresses: ['::1'], range: 'loopback (::1)' },
  { name: 'unspecified', addresses: ['0.0.0.0'], range: 'unspecified (0.0.0.0/8)' },
  { name: 'cgnat', addresses: ['100.64.0.1'], range: 'carrier-grade NAT (100.64.0.0/10)' },
  { name: 'ula', addresses: ['fd00::1'], range: 'unique local (fc00::/7)' },
  { name: 'nat64', addresses: ['64:ff9b::7f00:1'], range: 'loopback (127.0.0.0/8), embedded in 64:ff9b::7f00:1' },
  // Several answers, all hostile: refused, naming the first.
  { name: 'mixed', addresses: ['10.1.2.3', '::1', '169.254.169.254'], range: 'private (RFC 1918, 10.0.0.0/8)' },
];

let target4: CountingServer; // 127.0.0.1:P — where a broken guard would land for loopback answers
let target6: CountingServer | null; // [::1]:P
let good: TestUpstream;
let dns: FakeDns;
let dials: DialRecorder;
let airlock: AirlockHandle;
let proxy: ProxyAddress;
let bundle: string;
let P: number;

const policyFor = (port: number, extraPorts: number[] = []) => `
version: 1
name: destination-test
allow:
  - host: good.test
  - host: "*.rebind.test"
    ports: [${[port, ...extraPorts].join(', ')}]
  - host: "*.blind.test"
    ports: [${[port, ...extraPorts].join(', ')}]
    inspect: false
`;

function answers(): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const h of HOSTILE) {
    out[`${h.name}.rebind.test`] = h.addresses;
    out[`${h.name}.blind.test`] = h.addresses;
  }
  return out;
}

beforeAll(async () => {
  target4 = await startCountingHttp('127.0.0.1');
  P = target4.port;
  target6 = await startCountingHttp('::1', P).catch(() => null); // no IPv6 loopback: the recorder still guards
  good = await startHttpUpstream();
  dns = fakeDns(answers());
  dials = dialRecorder();
  airlock = await startAirlock({
    policy: policyFor(P),
    listenHost: PROXY_HOST,
    resolve: { 'good.test:80': good.port }, // operator-trusted: the well-behaved client's upstream
    lookup: dns.lookup,
    beforeDial: dials.beforeDial,
  });
  proxy = proxyOf(airlock);
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([target4?.close(), target6?.close(), good?.close()]);
});

const GOOD = () => 'http://good.test/healthy';

function expectBlockedBody(body: string, range: string) {
  const parsed = JSON.parse(body) as { reason: string; message: string };
  expect(parsed.reason).toBe('destination_blocked');
  expect(parsed.message).toContain(range);
}

/** Connection counts of the local loopback targets, to compare against after an attack. */
function reached(): number {
  return target4.connections + (target6?.connections ?? 0);
}

function expectNothingDialled(host: string, reachedBefore: number) {
  expect(dials.forHost(host)).toEqual([]);
  expect(dials.refused).toEqual([]);
  expect(reached()).toBe(reachedBefore);
}

describe('attack 1: an allowlisted name resolving to a hostile address', () => {
  for (const h of HOSTILE) {
    it(`${h.name}.rebind.test → ${h.addresses.join(', ')}: destination_blocked on every path, nothing dialled`, async () => {
      const name = `${h.name}.rebind.test`;
      const blind = `${h.name}.blind.test`;
      const before = reached();
      await alongside(proxy, GOOD(), async () => {
        // (a) plain HTTP, absolute URI
        const plain = await proxyGet(proxy, `http://${name}:${P}/attack-plain`);
        expect(plain.status).toBe(403);
        expect(plain.headers['x-airlock-decision']).toBe('deny; reason=destination_blocked');
        expectBlockedBody(plain.body, h.range);

        // (b) a request inside an inspected tunnel (the CONNECT itself dials nothing)
        const tunnel = await tunnelTls(proxy, `${name}:${P}`, { ca: bundle });
        const inTunnel = await exchange(tunnel, `GET /attack-tunnel HTTP/1.1\r\nHost: ${name}:${P}\r\n\r\n`, { untilResponse: true });
        tunnel.destroy();
        expect(inTunnel.status).toBe(403);
        expectBlockedBody(inTunnel.text.slice(inTunnel.text.indexOf('{')), h.range);

        // (c) a blind tunnel: refused at CONNECT, before any byte is relayed
        const connect = await proxyConnect(proxy, `${blind}:${P}`);
        expect(connect.status).toBe(403);
        expectBlockedBody(connect.body, h.range);

        // (d) a plain WebSocket upgrade
        const ws = await send(proxy, upgradeHead(`http://${name}:${P}/attack-ws`, `${name}:${P}`, proxy.auth));
        expect(ws.status).toBe(403);
        expectBlockedBody(ws.text.slice(ws.text.indexOf('{')), h.range);
      });

      for (const [host, kind, path] of [
        [name, 'request', '/attack-plain'],
        [name, 'request', '/attack-tunnel'],
        [blind, 'tunnel', ''],
        [name, 'websocket', '/attack-ws'],
      ] as const) {
        const line = await airlock.waitForAudit((l) => l.host === host && l.kind === kind && l.path === path);
        expect(line).toMatchObject({ status: 403, action: 'deny', reason: 'destination_blocked', port: P });
        expect(line.detail).toContain(h.range);
      }
      expect(dns.queries).toContain(name);
      expectNothingDialled(name, before);
      expectNothingDialled(blind, before);
    });
  }
});

describe('attack 1, controls: allowPrivate opens a range, never the proxy itself nor this host', () => {
  let open: AirlockHandle;
  let openDials: DialRecorder;
  let openProxy: ProxyAddress;
  let ownPortProxy: ProxyAddress;

  beforeAll(async () => {
    openDials = dialRecorder();
    open = await startAirlock({
      policy: policyFor(P),
      listenHost: PROXY_HOST,
      resolve: { 'good.test:80': good.port },
      allowPrivate: ['10.0.0.0/8', '127.0.0.0/8'],
      lookup: fakeDns({
        'rfc1918.rebind.test': ['10.1.2.3'],
        'rfc1918.blind.test': ['10.1.2.3'],
        'loop4.rebind.test': ['127.0.0.1'],
        // Hostile answers first, the opened one last: the hostile ones are skipped, never dialled.
        'mixed.rebind.test': ['169.254.169.254', '127.0.0.1', '10.1.2.3'],
        'self.rebind.test': [PROXY_HOST],
        'selfmapped.rebind.test': [`::ffff:${PROXY_HOST}`],
        'selfnat64.rebind.test': ['64:ff9b::7f00:2'],
        'selfcompat.rebind.test': ['::7f00:2'],
        'self6to4.rebind.test': ['2002:7f00:2::1'],
      }).lookup,
      beforeDial: openDials.beforeDial,
    });
    openProxy = proxyOf(open);
    // A session whose rules also allow the proxy's own port, so "self" is tried at that very port.
    ownPortProxy = (await extraSession(open, policyFor(P, [open.port]))).proxy;
  });

  afterAll(async () => {
    await open?.close();
  });

  // The control dials are to 10.1.2.3: the guard lets them through and the dial recorder, which
  // refuses anything off loopback, stops them before a socket exists (a 502, not a 403).
  const unexpectedRefusals = () => openDials.refused.filter((d) => d.address !== '10.1.2.3');

  it('allowPrivate: [10.0.0.0/8] lets rfc1918.rebind.test → 10.1.2.3 through the guard (the control)', async () => {
    const res = await proxyGet(openProxy, `http://rfc1918.rebind.test:${P}/opened`);
    expect(res.status).toBe(502);
    expect(res.body).toContain('ETESTREFUSED');
    const connect = await proxyConnect(openProxy, `rfc1918.blind.test:${P}`);
    expect(connect.status).toBe(502);
    expect(openDials.forHost('rfc1918.rebind.test')).toEqual([{ host: 'rfc1918.rebind.test', address: '10.1.2.3', port: P }]);
    expect(openDials.forHost('rfc1918.blind.test')).toEqual([{ host: 'rfc1918.blind.test', address: '10.1.2.3', port: P }]);
    expect(unexpectedRefusals()).toEqual([]);
  });

  it('allowPrivate: [127.0.0.0/8] does not open loopback: an address of this host', async () => {
    const before = reached();
    const res = await proxyGet(openProxy, `http://loop4.rebind.test:${P}/loopback`);
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ reason: 'destination_blocked' });
    expect(JSON.parse(res.body).message).toContain('an address of this host');
    expect(openDials.forHost('loop4.rebind.test')).toEqual([]);
    expect(reached()).toBe(before);
  });

  it('a name answering [169.254.169.254, 127.0.0.1, 10.1.2.3] dials only the opened address that is not this host', async () => {
    const res = await proxyGet(openProxy, `http://mixed.rebind.test:${P}/mixed`);
    expect(res.status).toBe(502);
    expect(openDials.forHost('mixed.rebind.test').map((d) => d.address)).toEqual(['10.1.2.3']);
    expect(unexpectedRefusals()).toEqual([]);
  });

  for (const [name, shown] of [
    ['self', PROXY_HOST],
    ['selfmapped', `::ffff:${PROXY_HOST}`],
    ['selfnat64', '64:ff9b::7f00:2'],
    ['selfcompat', '::7f00:2'],
    ['self6to4', '2002:7f00:2::1'],
  ] as const) {
    it(`the proxy's own listen address stays blocked even then: ${name}.rebind.test → ${shown} at the proxy's port`, async () => {
      const host = `${name}.rebind.test`;
      const before = reached();
      await alongside(openProxy, GOOD(), async () => {
        const res = await proxyGet(ownPortProxy, `http://${host}:${open.port}/loop`);
        expect(res.status).toBe(403);
        const body = JSON.parse(res.body) as { reason: string; message: string };
        expect(body.reason).toBe('destination_blocked');
        expect(body.message).toContain("the proxy's own address");
        // and at another port on the same address
        const other = await proxyGet(ownPortProxy, `http://${host}:${P}/loop`);
        expect(other.status).toBe(403);
        expect(JSON.parse(other.body).message).toContain("the proxy's own address");
      });
      expect(openDials.forHost(host)).toEqual([]);
      expect(unexpectedRefusals()).toEqual([]);
      expect(reached()).toBe(before);
    });
  }
});

describe('attack 5: IP-literal targets', () => {
  const IP_POLICY = (port: number) => `
version: 1
name: ip-rules
allow:
  - host: good.test
  - host: 127.0.0.1
    ports: [${port}]
    inspect: false
  - host: "::1"
    ports: [${port}]
`;

  it('CONNECT 127.0.0.1:<port> and http://127.0.0.1:<port>/ with no rule naming them → 403 no_rule', async () => {
    const before = reached();
    await alongside(proxy, GOOD(), async () => {
      const connect = await proxyConnect(proxy, `127.0.0.1:${P}`);
      expect(connect.status).toBe(403);
      expect(JSON.parse(connect.body)).toMatchObject({ reason: 'no_rule', host: `127.0.0.1:${P}` });
      const plain = await proxyGet(proxy, `http://127.0.0.1:${P}/literal`);
      expect(plain.status).toBe(403);
      expect(JSON.parse(plain.body)).toMatchObject({ reason: 'no_rule' });
      const v6 = await proxyConnect(proxy, `[::1]:${P}`);
      expect(v6.status).toBe(403);
      expect(JSON.parse(v6.body)).toMatchObject({ reason: 'no_rule', host: `::1:${P}` });
    });
    await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === '127.0.0.1' && l.reason === 'no_rule');
    await airlock.waitForAudit((l) => l.kind === 'request' && l.host === '127.0.0.1' && l.reason === 'no_rule');
    await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === '::1' && l.reason === 'no_rule');
    expectNothingDialled('127.0.0.1', before);
    expectNothingDialled('::1', before);
  });

  it('with a rule naming the literal but no allowPrivate → 403 destination_blocked (CONNECT, plain HTTP, inside a tunnel)', async () => {
    const extra = await extraSession(airlock, IP_POLICY(P));
    const before = reached();
    await alongside(proxy, GOOD(), async () => {
      const connect = await proxyConnect(extra.proxy, `127.0.0.1:${P}`);
      expect(connect.status).toBe(403);
      expectBlockedBody(connect.body, 'loopback (127.0.0.0/8)');
      const plain = await proxyGet(extra.proxy, `http://127.0.0.1:${P}/literal`);
      expect(plain.status).toBe(403);
      expectBlockedBody(plain.body, 'loopback (127.0.0.0/8)');
      // [::1] is inspected: the tunnel opens (TLS without SNI is normal for an IP), the request is refused.
      const tunnel = await tunnelTls(extra.proxy, `[::1]:${P}`, {
        ca: readFileSync(extra.session.bundlePath, 'utf8'),
        servername: '',
        checkServerIdentity: () => undefined, // no name to check; the chain is still verified
      });
      const r = await exchange(tunnel, `GET /literal HTTP/1.1\r\nHost: [::1]:${P}\r\n\r\n`, { untilResponse: true });
      tunnel.destroy();
      expect(r.status).toBe(403);
      expectBlockedBody(r.text.slice(r.text.indexOf('{')), 'loopback (::1)');
    });
    await extra.audit.waitFor((l) => l.kind === 'tunnel' && l.host === '127.0.0.1' && l.reason === 'destination_blocked');
    await extra.audit.waitFor((l) => l.kind === 'request' && l.host === '127.0.0.1' && l.reason === 'destination_blocked');
    await extra.audit.waitFor((l) => l.kind === 'request' && l.host === '::1' && l.reason === 'destination_blocked');
    expectNothingDialled('127.0.0.1', before);
    expectNothingDialled('::1', before);
    expect(parsePolicy(IP_POLICY(P), 'x').allow.map((r) => r.kind)).toEqual(['exact', 'ip', 'ip']);
  });
});
