// Attack: reaching the host itself through one of its own addresses. A service on the host bound to
// 0.0.0.0 answers on every interface address, not only on loopback, and another session's proxy
// listener sits on a host address too (a Docker session network's gateway). The destination guard
// must refuse every address of this host, in every spelling, whatever --allow-private opens.
//
// The main Airlock here opens every private range an operator might (RFC 1918, CGNAT, link-local,
// ULA, loopback, benchmarking, and each of this machine's own addresses as a /32 or /128): the
// refusals below come from the host-address check alone. Name resolution is a fake resolver, and
// the dial recorder lets only loopback dials through, so a broken guard cannot send a packet
// anywhere but this machine's loopback; a dial to a non-loopback host address shows up as a
// recorded refusal (and a 502) instead of a 403.
//
// The bridge test (root only) adds a short-lived bridge without carrier, as Docker's are before
// their first container starts and after their last one stops: os.networkInterfaces() does not
// list such an interface, yet the host answers on its address.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
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
const PEER_HOST = '127.0.0.3'; // another runtime's listener: an embedded proxy of another `airlock run`
const HOST_REASON = 'an address of this host';

/** This machine's non-loopback addresses, as os.networkInterfaces() reports them. */
const INTERFACE_ADDRESSES = Object.values(networkInterfaces())
  .flat()
  .filter((i) => i !== undefined && !i.internal)
  .map((i) => i!.address);
const V4 = INTERFACE_ADDRESSES.filter((a) => net.isIPv4(a));
const V6 = INTERFACE_ADDRESSES.filter((a) => net.isIPv6(a));

/** Every range an operator could open, and each of this machine's addresses on its own. */
const OPEN_EVERYTHING = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '::/128',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
  ...V4.map((a) => `${a}/32`),
  ...V6.map((a) => `${a}/128`),
];

function hex32(v4: string): [string, string] {
  const b = v4.split('.').map(Number);
  return [((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16)];
}

/** The IPv6 spellings of an IPv4 address that the guard sees through. */
function v6Forms(v4: string): { label: string; address: string }[] {
  const [hi, lo] = hex32(v4);
  return [
    { label: 'IPv4-mapped', address: `::ffff:${v4}` },
    { label: 'NAT64', address: `64:ff9b::${hi}:${lo}` },
    { label: '6to4', address: `2002:${hi}:${lo}::1` },
    { label: 'IPv4-compatible', address: `::${hi}:${lo}` },
  ];
}

// name label → the fake DNS answer, all of them addresses of this host.
const FORMS: { label: string; address: string }[] = [
  ...V4.flatMap((a) => [{ label: 'interface', address: a }, ...v6Forms(a)]),
  ...V6.map((a) => ({ label: 'interface', address: a })),
  { label: 'loopback, opened by allowPrivate', address: '127.0.0.1' },
  { label: 'loopback, opened by allowPrivate', address: '::1' },
  { label: 'unspecified (dials the host)', address: '0.0.0.0' },
  { label: 'unspecified :: (dials the host)', address: '::' },
];
const nameOf = (i: number) => `f${i}.host.test`;
const blindOf = (i: number) => `f${i}.blind.test`;

let target: CountingServer; // 127.0.0.1:P — a host service, where a broken guard would land
let good: TestUpstream;
let peer: AirlockHandle; // another runtime, listening on PEER_HOST
let dns: FakeDns;
let dials: DialRecorder;
let airlock: AirlockHandle;
let proxy: ProxyAddress;
let bundle: string;
let P: number;

const policyFor = (ports: number[]) => `
version: 1
name: host-address-test
allow:
  - host: good.test
  - host: "*.host.test"
    ports: [${ports.join(', ')}]
  - host: "*.blind.test"
    ports: [${ports.join(', ')}]
    inspect: false
  - host: ${PEER_HOST}
    ports: [${ports.join(', ')}]
    inspect: false
`;

beforeAll(async () => {
  target = await startCountingHttp('127.0.0.1');
  P = target.port;
  good = await startHttpUpstream();
  peer = await startAirlock({ policy: 'version: 1\nname: peer\nallow:\n  - host: good.test\n', listenHost: PEER_HOST });
  const answers: Record<string, string[]> = { 'peer.host.test': [PEER_HOST] };
  FORMS.forEach((f, i) => {
    answers[nameOf(i)] = [f.address];
    answers[blindOf(i)] = [f.address];
  });
  dns = fakeDns(answers);
  dials = dialRecorder();
  airlock = await startAirlock({
    policy: policyFor([P, peer.port]),
    listenHost: PROXY_HOST,
    resolve: { 'good.test:80': good.port }, // operator-trusted, and on loopback: must keep working
    allowPrivate: OPEN_EVERYTHING,
    lookup: dns.lookup,
    beforeDial: dials.beforeDial,
  });
  proxy = proxyOf(airlock);
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  await airlock?.close();
  await peer?.close();
  await Promise.all([target?.close(), good?.close()]);
});

const GOOD = 'http://good.test/healthy';

function expectHostRefusal(body: string, address: string) {
  const parsed = JSON.parse(body) as { reason: string; message: string };
  expect(parsed.reason).toBe('destination_blocked');
  expect(parsed.message).toContain(HOST_REASON);
  expect(parsed.message).toContain(address);
}

function expectNothingDialled(host: string, reachedBefore: number) {
  expect(dials.forHost(host)).toEqual([]);
  expect(dials.refused).toEqual([]);
  expect(target.connections).toBe(reachedBefore);
}

describe('a name whose DNS answer is an address of this host', () => {
  it('this machine has addresses besides loopback to test with', () => {
    expect(INTERFACE_ADDRESSES.length).toBeGreaterThan(0);
  });

  FORMS.forEach((form, i) => {
    it(`${form.label} ${form.address}: destination_blocked on every path, audited, nothing dialled`, async () => {
      const name = nameOf(i);
      const blind = blindOf(i);
      const before = target.connections;
      await alongside(proxy, GOOD, async () => {
        const plain = await proxyGet(proxy, `http://${name}:${P}/host-plain`);
        expect(plain.status).toBe(403);
        expect(plain.headers['x-airlock-decision']).toBe('deny; reason=destination_blocked');
        expectHostRefusal(plain.body, form.address);

        const tunnel = await tunnelTls(proxy, `${name}:${P}`, { ca: bundle });
        const inTunnel = await exchange(tunnel, `GET /host-tunnel HTTP/1.1\r\nHost: ${name}:${P}\r\n\r\n`, { untilResponse: true });
        tunnel.destroy();
        expect(inTunnel.status).toBe(403);
        expectHostRefusal(inTunnel.text.slice(inTunnel.text.indexOf('{')), form.address);

        const connect = await proxyConnect(proxy, `${blind}:${P}`);
        expect(connect.status).toBe(403);
        expectHostRefusal(connect.body, form.address);

        const ws = await send(proxy, upgradeHead(`http://${name}:${P}/host-ws`, `${name}:${P}`, proxy.auth));
        expect(ws.status).toBe(403);
        expectHostRefusal(ws.text.slice(ws.text.indexOf('{')), form.address);
      });
      for (const [host, kind, path] of [
        [name, 'request', '/host-plain'],
        [name, 'request', '/host-tunnel'],
        [blind, 'tunnel', ''],
        [name, 'websocket', '/host-ws'],
      ] as const) {
        const line = await airlock.waitForAudit((l) => l.host === host && l.kind === kind && l.path === path);
        expect(line).toMatchObject({ status: 403, action: 'deny', reason: 'destination_blocked', port: P });
        expect(line.detail).toContain(HOST_REASON);
      }
      expect(dns.queries).toContain(name);
      expectNothingDialled(name, before);
      expectNothingDialled(blind, before);
    });
  });
});

describe('report mode: a literal address of this host', () => {
  // Report mode lets every rule denial through; only the destination guard stands in the way.
  const REPORT = 'version: 1\nname: report-host\nmode: report\nallow:\n  - host: good.test\n';
  let report: Awaited<ReturnType<typeof extraSession>>;

  beforeAll(async () => {
    report = await extraSession(airlock, REPORT);
  });

  const literals = () => [
    ...V4.flatMap((a) => [a, `::ffff:${a}`]),
    ...V6,
    '127.0.0.1',
  ];

  it('plain HTTP to each literal (and its ::ffff: form) → 403 destination_blocked, audited, nothing dialled', async () => {
    expect(literals().length).toBeGreaterThan(1);
    const before = target.connections;
    for (const literal of literals()) {
      const hostInUrl = net.isIPv6(literal) ? `[${literal}]` : literal;
      const res = await alongside(proxy, GOOD, () => proxyGet(report.proxy, `http://${hostInUrl}:${P}/report-literal`));
      expect(res.status, literal).toBe(403);
      expect(res.headers['x-airlock-decision']).toBe('deny; reason=destination_blocked');
      const body = JSON.parse(res.body) as { reason: string; message: string };
      expect(body.reason).toBe('destination_blocked');
      expect(body.message).toContain(HOST_REASON);
      // The audit names the canonical spelling the proxy parsed the literal into.
      const canonical = new URL(`http://${hostInUrl}/`).hostname.replace(/^\[|\]$/g, '');
      const line = await report.audit.waitFor((l) => l.kind === 'request' && l.host === canonical && l.path === '/report-literal');
      expect(line).toMatchObject({ status: 403, action: 'deny', reason: 'destination_blocked', port: P });
      expect(line.detail).toContain(HOST_REASON);
      expect(dials.forHost(canonical)).toEqual([]);
    }
    expect(dials.refused).toEqual([]);
    expect(target.connections).toBe(before);
  });

  it('CONNECT to a literal of this host: the tunnel opens for inspection, the request in it → 403', async () => {
    const literal = V4[0] ?? V6[0]!;
    const authority = net.isIPv6(literal) ? `[${literal}]:${P}` : `${literal}:${P}`;
    const before = target.connections;
    const tunnel = await tunnelTls(report.proxy, authority, {
      ca: readFileSync(report.session.bundlePath, 'utf8'),
      servername: '',
      checkServerIdentity: () => undefined, // no name to check; the chain is still verified
    });
    const r = await exchange(tunnel, `GET /report-tunnel HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, { untilResponse: true });
    tunnel.destroy();
    expect(r.status).toBe(403);
    expect(JSON.parse(r.text.slice(r.text.indexOf('{')))).toMatchObject({ reason: 'destination_blocked' });
    const line = await report.audit.waitFor((l) => l.kind === 'request' && l.path === '/report-tunnel');
    expect(line).toMatchObject({ status: 403, reason: 'destination_blocked' });
    expect(line.detail).toContain(HOST_REASON);
    expectNothingDialled(literal, before);
  });

  it('decimal, hex and octal spellings never reach a dial: refused as malformed, even in report mode', async () => {
    // normalizeHost refuses any name a resolver would read as an IPv4 address, so these are
    // refused while parsing the target, before policy, report mode or the guard.
    const v4 = V4[0] ?? '192.0.2.2';
    const n = v4.split('.').map(Number).reduce((acc, b) => acc * 256 + b, 0);
    const spellings = [String(n), `0x${n.toString(16)}`, `0${n.toString(8)}`, v4.split('.').map((b) => `0${Number(b).toString(8)}`).join('.'), `${v4.split('.')[0]}.${n & 0xffffff}`];
    const before = target.connections;
    const dialsBefore = dials.dials.length;
    for (const s of spellings) {
      const res = await proxyGet(report.proxy, `http://${s}:${P}/odd`, { headers: { Host: `${s}:${P}` } });
      expect(res.status, s).toBe(400);
      const connect = await proxyConnect(report.proxy, `${s}:${P}`);
      expect(connect.status, s).toBe(400);
    }
    await report.audit.waitFor((l) => l.kind === 'tunnel' && l.reason === 'invalid_host');
    await report.audit.waitFor((l) => l.kind === 'request' && l.reason === 'bad_request');
    expect(dials.dials.slice(dialsBefore)).toEqual([]);
    expect(target.connections).toBe(before);
  });
});

describe("another session's listener", () => {
  it(`a separate runtime's listener on ${PEER_HOST}, with allowPrivate covering it → 403, nothing dialled`, async () => {
    await alongside(proxy, GOOD, async () => {
      const byName = await proxyGet(proxy, `http://peer.host.test:${peer.port}/peer`, { headers: { 'X-Probe': 'peer' } });
      expect(byName.status).toBe(403);
      expectHostRefusal(byName.body, PEER_HOST);
      const connect = await proxyConnect(proxy, `${PEER_HOST}:${peer.port}`);
      expect(connect.status).toBe(403);
      expectHostRefusal(connect.body, PEER_HOST);
    });
    const line = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === PEER_HOST);
    expect(line).toMatchObject({ status: 403, reason: 'destination_blocked', port: peer.port });
    expect((await airlock.waitForAudit((l) => l.host === 'peer.host.test')).reason).toBe('destination_blocked');
    expect(dials.forHost('peer.host.test')).toEqual([]);
    expect(dials.forHost(PEER_HOST)).toEqual([]);
    // The peer's own session log shows nothing arrived from this proxy.
    expect((await peer.auditLines()).length).toBe(0);
  });

  it("another session's listener in this same runtime (on an address of its own) → 403, nothing dialled", async () => {
    // As the daemon does for a Docker session: a session bound to a listener of its own.
    const listenerName = 'session:host-address-peer';
    const owner = await airlock.runtime.sessions.create(airlock.session.policy, { listener: listenerName });
    const address = await airlock.runtime.proxy.listen('127.0.0.4', 0, listenerName);
    const probe = await extraSession(airlock, policyFor([address.port]));
    try {
      dns.answers.set('own.host.test', ['127.0.0.4']);
      const res = await proxyGet(probe.proxy, `http://own.host.test:${address.port}/own`);
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body)).toMatchObject({ reason: 'destination_blocked' });
      const line = await probe.audit.waitFor((l) => l.host === 'own.host.test');
      expect(line).toMatchObject({ status: 403, reason: 'destination_blocked', port: address.port });
      expect(dials.forHost('own.host.test')).toEqual([]);
    } finally {
      await airlock.runtime.proxy.unlisten(address);
      await airlock.runtime.sessions.remove(owner.id);
      await airlock.runtime.sessions.remove(probe.session.id);
    }
  });
});

describe('an interface created while the proxy runs', () => {
  // Root only: a bridge with one address, its only port removed so it has no carrier.
  const BRIDGE = `alk${process.pid.toString(36)}`.slice(0, 12);
  const ADDRESS = `198.19.${(process.pid >> 8) & 0xff}.${(process.pid & 0xfe) + 1}`;
  let created = false;
  let listener: AirlockHandle | undefined;

  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

  let vethUp = false;

  afterAll(async () => {
    await listener?.close();
    if (vethUp) ip('link', 'del', `${BRIDGE}p`); // deleting one end removes the pair
    if (created) ip('link', 'del', BRIDGE);
  });

  it(`a session gateway on a bridge without carrier, with allowPrivate covering it → 403, nothing dialled`, async () => {
    if (process.getuid?.() !== 0) throw new Error('this test makes a network bridge: run the suite as root (as CI does)');
    try {
      ip('link', 'add', BRIDGE, 'type', 'bridge');
      created = true;
      ip('link', 'add', `${BRIDGE}p`, 'type', 'veth', 'peer', 'name', `${BRIDGE}q`);
      vethUp = true;
      ip('link', 'set', `${BRIDGE}p`, 'master', BRIDGE);
      ip('addr', 'add', `${ADDRESS}/32`, 'dev', BRIDGE);
      ip('link', 'set', BRIDGE, 'up');
      ip('link', 'del', `${BRIDGE}p`); // the bridge keeps its address and loses its carrier
      vethUp = false;
    } catch (err) {
      throw new Error(`could not make the test bridge (needs iproute2 and bridge support): ${(err as Error).message}`);
    }
    // The gateway listener of a session run by another proxy process.
    listener = await startAirlock({ policy: 'version: 1\nname: gateway\nallow:\n  - host: good.test\n', listenHost: ADDRESS });
    const session = await extraSession(
      airlock,
      `version: 1\nname: gateway-probe\nallow:\n  - host: good.test\n  - host: "gw.host.test"\n    ports: [${listener.port}]\n  - host: ${ADDRESS}\n    ports: [${listener.port}]\n    inspect: false\n`,
    );
    dns.answers.set('gw.host.test', [ADDRESS]);
    await alongside(proxy, GOOD, async () => {
      const byName = await proxyGet(session.proxy, `http://gw.host.test:${listener!.port}/gateway`);
      expect(byName.status).toBe(403);
      expectHostRefusal(byName.body, ADDRESS);
      const connect = await proxyConnect(session.proxy, `${ADDRESS}:${listener!.port}`);
      expect(connect.status).toBe(403);
      expectHostRefusal(connect.body, ADDRESS);
    });
    const line = await session.audit.waitFor((l) => l.kind === 'tunnel' && l.host === ADDRESS);
    expect(line).toMatchObject({ status: 403, reason: 'destination_blocked', port: listener.port });
    expect(line.detail).toContain(HOST_REASON);
    expect(dials.forHost('gw.host.test')).toEqual([]);
    expect(dials.forHost(ADDRESS)).toEqual([]);
    expect(dials.refused).toEqual([]);
    expect((await listener.auditLines()).length).toBe(0);
  });
});

describe('user side: operator-trusted --resolve entries still work', () => {
  it('good.test, mapped to a loopback upstream by --resolve, is served', async () => {
    const res = await proxyGet(proxy, 'http://good.test/ok');
    expect(res.status).toBe(200);
    const line = await airlock.waitForAudit((l) => l.host === 'good.test' && l.path === '/ok');
    expect(line).toMatchObject({ status: 200, action: 'allow' });
    expect(dials.forHost('good.test').at(-1)).toEqual({ host: 'good.test', address: '127.0.0.1', port: good.port });
  });

  it('a --resolve entry may point at this host even though no DNS answer may', async () => {
    const resolved = await startAirlock({
      policy: 'version: 1\nname: resolved\nallow:\n  - host: local.test\n',
      resolve: { 'local.test:80': target.port },
    });
    try {
      const via = proxyOf(resolved);
      const res = await proxyGet(via, 'http://local.test/resolved');
      expect(res.status).toBe(200);
      expect(res.body).toBe('reached\n');
      expect(target.urls).toContain('/resolved');
    } finally {
      await resolved.close();
    }
  });
});
