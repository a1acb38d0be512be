// Attack 9: what a client sends after CONNECT to an inspected host, when it is not a proper TLS
// session for that host: plaintext HTTP, binary junk, a bogus TLS record, an SSLv2-style hello —
// closed, with the tunnel's audit line carrying the TLS error — and TLS without SNI to a host given
// by name — closed right after the handshake, audited bad_request "TLS without SNI". The upstream
// sees nothing either way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tls from 'node:tls';
import type { AirlockHandle, TestUpstream } from '../helpers/servers.js';
import { alongside, exchange, proxyConnect, startGuardedRig } from './helpers.js';
import type { DialRecorder, GuardedRig, ProxyAddress } from './helpers.js';

const POLICY = `
version: 1
name: tunnel-tls
allow:
  - host: good.test
  - host: inspected.test
`;

let rig: GuardedRig;
let plainUp: TestUpstream;
let inspectedUp: TestUpstream;
let dials: DialRecorder;
let airlock: AirlockHandle;
let proxy: ProxyAddress;
let bundle: string;

beforeAll(async () => {
  rig = await startGuardedRig({ policy: POLICY, tlsNames: ['inspected.test'] });
  ({ plainUp, tlsUp: inspectedUp, dials, airlock, proxy, bundle } = rig);
});

afterAll(() => rig?.close());

const GOOD = 'http://good.test/healthy';

function expectUpstreamUntouched() {
  expect(inspectedUp.connections).toBe(0);
  expect(dials.forHost('inspected.test')).toEqual([]);
}

const NOT_TLS: Record<string, Buffer> = {
  'plaintext HTTP': Buffer.from('GET /plaintext HTTP/1.1\r\nHost: inspected.test\r\n\r\n'),
  'binary junk': Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 131 + 7) & 0xff)),
  'a TLS handshake record with an absurd length': Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0xff, 0xfb, ...Array(64).fill(0x41)]),
  'an SSLv2-style ClientHello': Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10, ...Array(37).fill(0x01)]),
  'a TLS alert record': Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
};

describe('attack 9: not TLS, or TLS without SNI, after CONNECT to an inspected host', () => {
  let n = 0;
  for (const [name, bytes] of Object.entries(NOT_TLS)) {
    it(`${name} → connection closed, tunnel audited with the TLS error, upstream untouched`, async () => {
      const before = (await airlock.auditLines()).filter((l) => l.kind === 'tunnel' && l.host === 'inspected.test').length;
      const r = await alongside(proxy, GOOD, async () => {
        const connect = await proxyConnect(proxy, 'inspected.test:443');
        expect(connect.status).toBe(200);
        return await exchange(connect.socket, bytes, { timeoutMs: 5_000 });
      });
      expect(r.closed).toBe(true);
      // Nothing but (at most) a TLS alert came back: no HTTP answer to plaintext.
      expect(r.text).not.toMatch(/HTTP\/1\.[01]/);
      n++;
      const lines = await airlock.waitForAudit(
        () => true,
      ).then(async () => {
        for (let i = 0; i < 100; i++) {
          const tunnels = (await airlock.auditLines()).filter((l) => l.kind === 'tunnel' && l.host === 'inspected.test');
          if (tunnels.length > before) return tunnels;
          await new Promise((res) => setTimeout(res, 25));
        }
        throw new Error('no tunnel audit line');
      });
      const line = lines[lines.length - 1]!;
      expect(line).toMatchObject({ method: 'CONNECT', port: 443, action: 'allow', reason: 'allowed' });
      expect(line.detail, JSON.stringify(line)).toMatch(/SSL|TLS|tls_/i);
      expect(line.bytes_up).toBeGreaterThan(0);
      expectUpstreamUntouched();
    });
  }

  it('a client hanging up right after CONNECT 200 (no TLS at all) → the tunnel is closed and audited at once, its slot freed', async () => {
    const detached = (airlock.runtime.proxy as unknown as { detached: Map<unknown, unknown> }).detached;
    const before = (await airlock.auditLines()).length;
    await alongside(proxy, GOOD, async () => {
      for (const how of ['destroy', 'end'] as const) {
        const connect = await proxyConnect(proxy, 'inspected.test:443');
        expect(connect.status).toBe(200);
        if (how === 'end') connect.socket.end();
        else connect.socket.destroy();
      }
    });
    // Well within headersTimeout (30 s here) and the idle timeout (10 min): EOF itself ends it.
    const started = Date.now();
    for (;;) {
      const lines = (await airlock.auditLines()).slice(before).filter((l) => l.kind === 'tunnel' && l.host === 'inspected.test');
      if (lines.length === 2) break;
      expect(Date.now() - started, 'tunnels still open after the client left').toBeLessThan(2_000);
      await new Promise((res) => setTimeout(res, 25));
    }
    expect(detached.size).toBe(0);
    expectUpstreamUntouched();
  });

  it('TLS without SNI to a host CONNECTed by name → closed after the handshake, audited bad_request "TLS without SNI"', async () => {
    const result = await alongside(proxy, GOOD, async () => {
      const connect = await proxyConnect(proxy, 'inspected.test:443');
      expect(connect.status).toBe(200);
      return await new Promise<{ secured: boolean; closed: boolean; answer: string }>((resolve) => {
        let secured = false;
        let answer = '';
        const socket = tls.connect({
          socket: connect.socket,
          servername: '', // no SNI extension at all
          ca: bundle,
          checkServerIdentity: () => undefined,
          ALPNProtocols: ['http/1.1'],
        });
        socket.on('secureConnect', () => {
          secured = true;
          socket.write('GET /no-sni HTTP/1.1\r\nHost: inspected.test\r\n\r\n');
        });
        socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
        socket.on('error', () => {});
        socket.on('close', () => resolve({ secured, closed: true, answer }));
      });
    });
    expect(result.closed).toBe(true);
    expect(result.answer).toBe(''); // the request after the handshake was never answered
    const line = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'inspected.test' && l.detail === 'TLS without SNI');
    expect(line).toMatchObject({ method: 'CONNECT', status: 400, action: 'deny', reason: 'bad_request', rule: 'allow[1] inspected.test' });
    expect(inspectedUp.requests.filter((r) => r.url === '/no-sni')).toEqual([]);
    expectUpstreamUntouched();
    expect(n).toBe(Object.keys(NOT_TLS).length);
  });
});
