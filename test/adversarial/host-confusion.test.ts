// Attacks 2-4: making the proxy send a request somewhere other than what it checked.
//   2. absolute-URI requests whose Host header (or, inside a tunnel, whose URI) names another host
//   3. a CONNECT sent as a request inside an inspected tunnel (tunnel-in-tunnel)
//   4. WebSocket upgrades to a denied host, plain (ws:// absolute URI) and inside a tunnel to an
//      allowed host with the Host header (or SNI) of the denied one
// Every denied host has a real local server behind it (resolve map), so a bypass would show up as
// a connection there; each must stay at zero. Names never go to real DNS (lookup hook).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { createTestPki, rmTmp, startHttpUpstream, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream, UpgradeHandler } from '../helpers/servers.js';
import { alongside, exchange, send, tunnelTls, upgradeHead, startGuardedAirlock } from './helpers.js';
import type { DialRecorder, ProxyAddress } from './helpers.js';

const POLICY = `
version: 1
name: host-confusion
allow:
  - host: good.test
  - host: also-good.test
`;

function wsUpgrader(): { onUpgrade: UpgradeHandler; upgrades: http.IncomingHttpHeaders[] } {
  const upgrades: http.IncomingHttpHeaders[] = [];
  const wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(m)));
  return {
    upgrades,
    onUpgrade: (req, socket, head) => {
      upgrades.push(req.headers);
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    },
  };
}

let pki: TestPki;
let goodPlain: TestUpstream;
let goodTls: TestUpstream;
let evilPlain: TestUpstream;
let evilTls: TestUpstream;
let evilWs: ReturnType<typeof wsUpgrader>;
let dials: DialRecorder;
let airlock: AirlockHandle;
let proxy: ProxyAddress;
let bundle: string;

beforeAll(async () => {
  pki = await createTestPki();
  evilWs = wsUpgrader();
  goodPlain = await startHttpUpstream();
  goodTls = await startHttpsUpstream({ pki, names: ['good.test', 'also-good.test'] });
  evilPlain = await startHttpUpstream({ onUpgrade: evilWs.onUpgrade });
  evilTls = await startHttpsUpstream({ pki, names: ['evil.test'], onUpgrade: evilWs.onUpgrade });
  ({ airlock, dials, proxy, bundle } = await startGuardedAirlock({
    policy: POLICY,
    resolve: {
      'good.test:80': goodPlain.port,
      'good.test:443': goodTls.port,
      'also-good.test:443': goodTls.port,
      // Where a bypass would land: real servers that count connections.
      'evil.test:80': evilPlain.port,
      'evil.test:443': evilTls.port,
    },
    upstreamCa: [pki.caPem],
  }));
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([goodPlain?.close(), goodTls?.close(), evilPlain?.close(), evilTls?.close()]);
  rmTmp(pki?.dir);
});

const GOOD = 'http://good.test/healthy';

function expectEvilUntouched() {
  expect(evilPlain.connections).toBe(0);
  expect(evilTls.connections).toBe(0);
  expect(evilWs.upgrades).toHaveLength(0);
  expect(dials.forHost('evil.test')).toEqual([]);
  expect(dials.refused).toEqual([]);
}

/** No request carrying `marker` in its URL reached any upstream. */
function expectMarkerUnseen(marker: string) {
  for (const up of [goodPlain, goodTls, evilPlain, evilTls]) {
    expect(up.requests.filter((r) => r.url.includes(marker))).toEqual([]);
  }
}

describe('attack 2: Host header / URI disagreeing with what was checked', () => {
  it('plain HTTP: absolute URI to an allowed host with Host: of a denied one (and the reverse) → 403 host_mismatch', async () => {
    await alongside(proxy, GOOD, async () => {
      for (const [uri, host] of [
        ['http://good.test/a2-front', 'evil.test'],
        ['http://evil.test/a2-back', 'good.test'],
        ['http://good.test/a2-port', 'good.test:8080'],
        ['http://good.test:80/a2-userinfo', 'evil.test@good.test'],
      ]) {
        const r = await send(proxy, `GET ${uri} HTTP/1.1\r\nHost: ${host}\r\nProxy-Authorization: ${proxy.auth}\r\n\r\n`);
        expect(r.status, `${uri} Host: ${host}`).toBe(403);
        expect(r.text).toMatch(/X-Airlock-Decision: deny; reason=host_mismatch/i);
      }
    });
    for (const path of ['/a2-front', '/a2-back', '/a2-port', '/a2-userinfo']) {
      const line = await airlock.waitForAudit((l) => l.path === path);
      expect(line).toMatchObject({ kind: 'request', status: 403, action: 'deny', reason: 'host_mismatch' });
    }
    expectMarkerUnseen('/a2-');
    expectEvilUntouched();
  });

  it('inside a tunnel to good.test: an absolute URI naming evil.test (or another allowed host) → 403 host_mismatch', async () => {
    await alongside(proxy, GOOD, async () => {
      for (const [uri, host] of [
        ['https://evil.test/a2-tunnel-evil', 'good.test'],
        ['https://evil.test/a2-tunnel-evil2', 'evil.test'],
        ['https://also-good.test/a2-tunnel-other', 'also-good.test'],
        ['https://good.test:8443/a2-tunnel-port', 'good.test:8443'],
      ]) {
        const tls = await tunnelTls(proxy, 'good.test:443', { ca: bundle });
        const r = await exchange(tls, `GET ${uri} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
        expect(r.status, uri).toBe(403);
        expect(r.text).toContain('"reason":"host_mismatch"');
      }
    });
    for (const path of ['https://evil.test/a2-tunnel-evil', 'https://also-good.test/a2-tunnel-other']) {
      const line = await airlock.waitForAudit((l) => l.path === path);
      expect(line).toMatchObject({ kind: 'request', host: 'good.test', status: 403, action: 'deny', reason: 'host_mismatch' });
    }
    expectMarkerUnseen('/a2-');
    expectEvilUntouched();
  });
});

describe('attack 3: CONNECT inside an inspected tunnel', () => {
  it('CONNECT evil.test:443 / good.test:443 sent over the TLS tunnel → 403, audited, nothing dialled', async () => {
    const before = goodTls.connections;
    await alongside(proxy, GOOD, async () => {
      for (const target of ['evil.test:443', 'good.test:443', '127.0.0.1:22']) {
        const tls = await tunnelTls(proxy, 'good.test:443', { ca: bundle });
        const r = await exchange(tls, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n\x16\x03\x01\x00\x00`);
        expect(r.status, target).toBe(403);
        expect(r.closed).toBe(true);
      }
    });
    const evil = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'evil.test' && l.detail === 'CONNECT inside a tunnel');
    expect(evil).toMatchObject({ method: 'CONNECT', status: 403, action: 'deny', reason: 'no_rule' });
    const nested = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'good.test' && l.detail === 'CONNECT inside a tunnel');
    expect(nested).toMatchObject({ status: 403, action: 'deny', reason: 'bad_request', rule: 'allow[0] good.test' });
    await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === '127.0.0.1' && l.detail === 'CONNECT inside a tunnel');
    // The inner CONNECTs dialled nothing: the only good.test:443 connections are none at all
    // (the outer tunnels are inspected and sent no request upstream).
    expect(goodTls.connections).toBe(before);
    expectEvilUntouched();
  });
});

describe('attack 4: WebSocket upgrades to a denied host', () => {
  it('plain: GET ws://evil.test/ and http://evil.test/ with Upgrade → 403 no_rule; the ws server is never reached', async () => {
    await alongside(proxy, GOOD, async () => {
      for (const uri of ['ws://evil.test/a4-ws', 'http://evil.test/a4-http']) {
        const r = await send(proxy, upgradeHead(uri, 'evil.test', proxy.auth));
        expect(r.status, uri).toBe(403);
        expect(r.text).toContain('"reason":"no_rule"');
        expect(r.text).not.toMatch(/^HTTP\/1\.1 101/);
      }
      // Host header of the denied host on an allowed URI
      const fronted = await send(proxy, upgradeHead('ws://good.test/a4-fronted', 'evil.test', proxy.auth));
      expect(fronted.status).toBe(403);
      expect(fronted.text).toContain('"reason":"host_mismatch"');
    });
    for (const path of ['/a4-ws', '/a4-http']) {
      const line = await airlock.waitForAudit((l) => l.kind === 'websocket' && l.path === path);
      expect(line).toMatchObject({ host: 'evil.test', status: 403, action: 'deny', reason: 'no_rule' });
    }
    await airlock.waitForAudit((l) => l.kind === 'websocket' && l.reason === 'host_mismatch');
    expectEvilUntouched();
  });

  it('wss: CONNECT good.test:443, then an upgrade with Host: evil.test (or SNI evil.test) → 403 host_mismatch', async () => {
    const before = goodTls.requests.length;
    await alongside(proxy, GOOD, async () => {
      const hostFront = await tunnelTls(proxy, 'good.test:443', { ca: bundle });
      const r1 = await exchange(hostFront, upgradeHead('/a4-wss-host', 'evil.test'));
      expect(r1.status).toBe(403);
      expect(r1.text).toContain('"reason":"host_mismatch"');

      // SNI names the denied host: the proxy presents good.test's leaf, so the client must skip the
      // name check to get this far — then the request is refused anyway.
      const sniFront = await tunnelTls(proxy, 'good.test:443', { ca: bundle, servername: 'evil.test', checkServerIdentity: () => undefined });
      const r2 = await exchange(sniFront, upgradeHead('/a4-wss-sni', 'evil.test'));
      expect(r2.status).toBe(403);
      expect(r2.text).toContain('"reason":"host_mismatch"');

      // SNI evil.test with Host good.test: the SNI still has to match.
      const sniOnly = await tunnelTls(proxy, 'good.test:443', { ca: bundle, servername: 'evil.test', checkServerIdentity: () => undefined });
      const r3 = await exchange(sniOnly, upgradeHead('/a4-wss-sni-only', 'good.test'));
      expect(r3.status).toBe(403);
      expect(r3.text).toContain('TLS server name evil.test differs');
    });
    for (const path of ['/a4-wss-host', '/a4-wss-sni', '/a4-wss-sni-only']) {
      const line = await airlock.waitForAudit((l) => l.kind === 'websocket' && l.path === path);
      expect(line).toMatchObject({ host: 'good.test', status: 403, action: 'deny', reason: 'host_mismatch' });
    }
    expect(goodTls.requests.length).toBe(before);
    expectEvilUntouched();
  });
});
