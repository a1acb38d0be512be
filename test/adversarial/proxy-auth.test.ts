// Attack 11: getting through the proxy without this session's credential — another session's
// token, mixed-up id/token pairs, a removed session's credential, malformed Basic values, huge
// headers — on every entry point (plain HTTP, CONNECT, WebSocket upgrade). Each is answered 407
// (431 when the header is over the proxy's header limit) and nothing is forwarded. And the
// credential itself never travels upstream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type { AirlockHandle, TestUpstream } from '../helpers/servers.js';
import { alongside, basic, connectTcp, exchange, extraSession, send, tunnelTls, upgradeHead, sleep, startGuardedRig } from './helpers.js';
import type { DialRecorder, GuardedRig, ProxyAddress } from './helpers.js';
import type { Session } from '../../src/sessions/session.js';

const POLICY = `
version: 1
name: proxy-auth
allow:
  - host: good.test
`;

let rig: GuardedRig;
let plainUp: TestUpstream;
let tlsUp: TestUpstream;
let dials: DialRecorder;
let airlock: AirlockHandle;
let proxy: ProxyAddress;
let other: { session: Session; proxy: ProxyAddress };
let removed: { session: Session; proxy: ProxyAddress };

beforeAll(async () => {
  rig = await startGuardedRig({ policy: POLICY, plain: { onUpgrade: (_req, socket) => socket.destroy() } });
  ({ plainUp, tlsUp, dials, airlock, proxy } = rig);
  other = await extraSession(airlock);
  removed = await extraSession(airlock);
  await airlock.runtime.sessions.remove(removed.session.id);
});

afterAll(() => rig?.close());

const GOOD = 'http://good.test/healthy';
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

// Evaluated inside each test: the sessions exist only after beforeAll.
const me = () => airlock.session;
const BAD: Record<string, () => string | null> = {
  'no Proxy-Authorization at all': () => null,
  "another session's id with my token": () => basic(other.session.id, me().token),
  "my id with another session's token": () => basic(me().id, other.session.token),
  "a removed session's credential": () => removed.proxy.auth,
  'my id, token with one character changed': () => basic(me().id, me().token.slice(0, -1) + (me().token.endsWith('A') ? 'B' : 'A')),
  'my id, token with a trailing byte': () => basic(me().id, me().token + 'x'),
  'my id, empty token': () => basic(me().id, ''),
  'malformed base64': () => 'Basic !!!not*base64!!!',
  'base64 without a colon': () => `Basic ${b64(me().id + me().token)}`,
  'raw id:token, not base64': () => `Basic ${me().id}:${me().token}`,
  'Bearer scheme with the token': () => `Bearer ${me().token}`,
  'scheme only': () => 'Basic',
  'invalid UTF-8 in the decoded value': () => `Basic ${b64(Buffer.from([0xff, 0xfe, 0x3a, 0xc3, 0x28]))}`,
  'NUL between id and token': () => `Basic ${b64(`${me().id}\0:${me().token}`)}`,
  '8 KB value (over the 512-byte cap)': () => `Basic ${b64(`${me().id}:${me().token}${'A'.repeat(6000)}`)}`,
};

function expectNothingForwarded(marker: string, connectionsBefore: { plain: number; tls: number }) {
  expect(plainUp.requests.filter((r) => r.url.includes(marker))).toEqual([]);
  expect(tlsUp.requests.filter((r) => r.url.includes(marker))).toEqual([]);
  expect(tlsUp.connections).toBe(connectionsBefore.tls);
  expect(dials.refused).toEqual([]);
}

describe('attack 11: bad proxy credentials', () => {
  let n = 0;
  for (const [name, credential] of Object.entries(BAD)) {
    it(`${name} → 407 on plain HTTP, CONNECT and WebSocket upgrade; nothing forwarded`, async () => {
      const auth = credential();
      const marker = `/a11-${++n}`;
      const before = { plain: plainUp.connections, tls: tlsUp.connections };
      const line = auth === null ? '' : `Proxy-Authorization: ${auth}\r\n`;
      await alongside(proxy, GOOD, async () => {
        const plain = await send(proxy, `GET http://good.test${marker} HTTP/1.1\r\nHost: good.test\r\n${line}Connection: close\r\n\r\n`);
        expect(plain.status).toBe(407);
        expect(plain.text).toMatch(/\r\nProxy-Authenticate: Basic realm="airlock"/i);

        const connect = await send(proxy, `CONNECT good.test:443 HTTP/1.1\r\nHost: good.test:443\r\n${line}\r\n`);
        expect(connect.status).toBe(407);
        expect(connect.closed).toBe(true);

        const ws = await send(proxy, upgradeHead(`ws://good.test${marker}-ws`, 'good.test', auth ?? undefined));
        expect(ws.status).toBe(407);
      });
      expectNothingForwarded(marker, before);
      // No session's audit log is written for an unauthenticated request.
      expect((await airlock.auditLines()).filter((l) => l.path.includes(marker))).toEqual([]);
    });
  }

  it('a 40 KB Proxy-Authorization header (over the header limit) → 431, nothing forwarded', async () => {
    const before = { plain: plainUp.connections, tls: tlsUp.connections };
    const huge = `Basic ${b64('x'.repeat(30 * 1024))}`;
    await alongside(proxy, GOOD, async () => {
      const plain = await send(proxy, `GET http://good.test/a11-huge HTTP/1.1\r\nHost: good.test\r\nProxy-Authorization: ${huge}\r\n\r\n`);
      expect(plain.status).toBe(431);
      const connect = await send(proxy, `CONNECT good.test:443 HTTP/1.1\r\nProxy-Authorization: ${huge}\r\n\r\n`);
      expect(connect.status).toBe(431);
    });
    expectNothingForwarded('/a11-huge', before);
  });

  it('with a valid first request, a pipelined second one carrying a bad credential is still refused', async () => {
    const r = await send(
      proxy,
      `GET http://good.test/a11-first HTTP/1.1\r\nHost: good.test\r\nProxy-Authorization: ${proxy.auth}\r\n\r\n` +
        `GET http://good.test/a11-second HTTP/1.1\r\nHost: good.test\r\nProxy-Authorization: ${basic(airlock.session.id, 'wrong')}\r\nConnection: close\r\n\r\n`,
    );
    expect(r.text.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 407']);
    expect(plainUp.requests.filter((q) => q.url === '/a11-first')).toHaveLength(1);
    expect(plainUp.requests.filter((q) => q.url === '/a11-second')).toEqual([]);
  });

  it('refused CONNECT / upgrade with bytes after the head: once the client hangs up, the proxy lets go of the socket', async () => {
    const detached = (airlock.runtime.proxy as unknown as { detached: Map<unknown, unknown> }).detached;
    const heads = [
      `CONNECT good.test:443 HTTP/1.1\r\nHost: good.test:443\r\n\r\n`, // 407
      `CONNECT good.test:443 HTTP/1.1\r\nHost: good.test:443\r\nProxy-Authorization: ${basic(airlock.session.id, 'nope')}\r\n\r\n`, // 407
      `CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\nProxy-Authorization: ${proxy.auth}\r\n\r\n`, // 403
      upgradeHead('ws://good.test/a11-ws-linger', 'good.test'), // 407
      upgradeHead('ws://evil.test/a11-ws-linger', 'evil.test', proxy.auth), // 403
    ];
    for (const trailing of [1, 100 * 1024]) {
      const sockets = await Promise.all(
        heads.map(async (head) => {
          const socket = await connectTcp(proxy.host, proxy.port);
          socket.on('error', () => {});
          socket.write(head);
          await sleep(20); // the head is handled on its own; what follows arrives later
          socket.write(Buffer.alloc(trailing, 0x78));
          return socket;
        }),
      );
      await sleep(100);
      expect(detached.size).toBeGreaterThan(0);
      for (const socket of sockets) socket.destroy(); // the client hangs up
      const started = Date.now();
      while (detached.size > 0 && Date.now() - started < 3_000) await sleep(25);
      expect(detached.size, `${detached.size} refused sockets still held ${trailing} B`).toBe(0);
    }
  });

  it('the session credential never travels upstream (plain, and inside a tunnel)', async () => {
    await send(proxy, `GET http://good.test/a11-leak HTTP/1.1\r\nHost: good.test\r\nProxy-Authorization: ${proxy.auth}\r\nConnection: close\r\n\r\n`);
    const tls = await tunnelTls(proxy, 'good.test:443', { ca: readFileSync(airlock.bundlePath, 'utf8') });
    const r = await exchange(tls, `GET /a11-leak-tls HTTP/1.1\r\nHost: good.test\r\nProxy-Authorization: ${proxy.auth}\r\nConnection: close\r\n\r\n`);
    tls.destroy();
    expect(r.status).toBe(200);
    const seen = [...plainUp.requests.filter((q) => q.url === '/a11-leak'), ...tlsUp.requests.filter((q) => q.url === '/a11-leak-tls')];
    expect(seen).toHaveLength(2);
    for (const q of seen) {
      expect(q.headers['proxy-authorization']).toBeUndefined();
      expect(JSON.stringify(q.headers)).not.toContain(airlock.session.token);
    }
  });
});
