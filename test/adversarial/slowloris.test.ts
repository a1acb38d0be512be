// Attack 8: slowloris. A client trickles a request head one byte every 500 ms so that no idle
// timer ever fires. With limits.headersTimeoutMs = 1500 the proxy must close such a connection
// within a bound — on the plain listener, for a CONNECT head, inside an inspected tunnel, and
// during an intercepted tunnel's TLS handshake — while a parallel well-behaved client keeps
// being served.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import type { AirlockHandle, TestUpstream } from '../helpers/servers.js';
import { connectTcp, proxyConnect, proxyGet, tunnelTls, startGuardedRig } from './helpers.js';
import type { GuardedRig, ProxyAddress } from './helpers.js';

const HEADERS_TIMEOUT_MS = 1_500;
const DRIP_MS = 500;
// Closed no earlier than the timeout (it is the timeout that fired, not a parse error) and no
// later than the timeout plus the server's checking interval and scheduling slack.
const CLOSED_AFTER_MS = HEADERS_TIMEOUT_MS - 100;
const CLOSED_WITHIN_MS = HEADERS_TIMEOUT_MS + 2_500;

const POLICY = `
version: 1
name: slowloris
allow:
  - host: good.test
`;

let rig: GuardedRig;
let plainUp: TestUpstream;
let tlsUp: TestUpstream;
let airlock: AirlockHandle;
let proxy: ProxyAddress;
let bundle: string;

beforeAll(async () => {
  rig = await startGuardedRig({ policy: POLICY, limits: { headersTimeoutMs: HEADERS_TIMEOUT_MS } });
  ({ plainUp, tlsUp, airlock, proxy, bundle } = rig);
});

afterAll(() => rig?.close());

/**
 * Writes `bytes` one at a time every DRIP_MS until the peer closes (or `giveUpMs`). Resolves with
 * how long the connection lived and how many bytes got out.
 */
function drip(socket: net.Socket | tls.TLSSocket, bytes: Buffer, giveUpMs = 20_000): Promise<{ ms: number; sent: number; closed: boolean; received: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    let sent = 0;
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('error', () => {});
    socket.resume();
    const finish = (closed: boolean) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ ms: performance.now() - started, sent, closed, received });
    };
    const timer = setInterval(() => {
      if (socket.destroyed || !socket.writable) return;
      socket.write(bytes.subarray(sent % bytes.length, (sent % bytes.length) + 1));
      sent++;
    }, DRIP_MS);
    const giveUp = setTimeout(() => finish(false), giveUpMs);
    socket.once('close', () => finish(true));
  });
}

/** Well-behaved requests every 250 ms while `during` runs; all must be served promptly. */
async function servedMeanwhile<T>(during: Promise<T>): Promise<T> {
  let done = false;
  const latencies: number[] = [];
  const results: number[] = [];
  const loop = (async () => {
    while (!done) {
      const t = performance.now();
      const r = await proxyGet(proxy, 'http://good.test/meanwhile');
      latencies.push(performance.now() - t);
      results.push(r.status);
      await new Promise((res) => setTimeout(res, 250));
    }
  })();
  const value = await during;
  done = true;
  await loop;
  expect(results.length).toBeGreaterThan(2);
  expect(results.every((s) => s === 200)).toBe(true);
  expect(Math.max(...latencies)).toBeLessThan(1_000);
  return value;
}

function expectClosedByTimeout(r: { ms: number; closed: boolean }) {
  expect(r.closed, `still open after ${Math.round(r.ms)} ms`).toBe(true);
  expect(r.ms).toBeGreaterThanOrEqual(CLOSED_AFTER_MS);
  expect(r.ms).toBeLessThanOrEqual(CLOSED_WITHIN_MS);
}

const HEAD = (target: string, auth: string) => Buffer.from(`GET ${target} HTTP/1.1\r\nHost: good.test\r\n${auth}X-Padding: ${'p'.repeat(200)}\r\n\r\n`);

describe('attack 8: slowloris', { timeout: 30_000 }, () => {
  it('plain listener: a request head trickled one byte / 500 ms is cut off within the bound', async () => {
    const socket = await connectTcp(proxy.host, proxy.port);
    const r = await servedMeanwhile(drip(socket, HEAD('http://good.test/slow', `Proxy-Authorization: ${proxy.auth}\r\n`)));
    expectClosedByTimeout(r);
    expect(r.received).toMatch(/^HTTP\/1\.1 408 /);
    expect(plainUp.requests.filter((q) => q.url === '/slow')).toEqual([]);
  });

  it('plain listener: a CONNECT head trickled one byte / 500 ms is cut off within the bound', async () => {
    const socket = await connectTcp(proxy.host, proxy.port);
    const head = Buffer.from(`CONNECT good.test:443 HTTP/1.1\r\nHost: good.test:443\r\nProxy-Authorization: ${proxy.auth}\r\nX-Padding: ${'p'.repeat(200)}\r\n\r\n`);
    const r = await servedMeanwhile(drip(socket, head));
    expectClosedByTimeout(r);
  });

  it('inside an inspected tunnel: a request head trickled over TLS is cut off within the bound', async () => {
    const tunnel = await tunnelTls(proxy, 'good.test:443', { ca: bundle });
    const r = await servedMeanwhile(drip(tunnel as unknown as net.Socket, HEAD('/slow-tunnel', '')));
    expectClosedByTimeout(r);
    expect(r.received).toMatch(/^HTTP\/1\.1 408 /);
    expect(tlsUp.requests.filter((q) => q.url === '/slow-tunnel')).toEqual([]);
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.status === 408);
    expect(line).toMatchObject({ host: 'good.test', port: 443, action: 'deny', reason: 'bad_request', detail: 'ERR_HTTP_REQUEST_TIMEOUT' });
  });

  it('inside an inspected tunnel: the second head on a kept-alive connection is bounded too', async () => {
    const tunnel = await tunnelTls(proxy, 'good.test:443', { ca: bundle });
    // One normal request first, then trickle the next.
    const first = await new Promise<string>((resolve) => {
      let text = '';
      const onData = (c: Buffer) => {
        text += c.toString('latin1');
        if (/\r\n\r\n[\s\S]*\}$/.test(text)) {
          tunnel.off('data', onData);
          resolve(text);
        }
      };
      tunnel.on('data', onData);
      tunnel.write('GET /first HTTP/1.1\r\nHost: good.test\r\n\r\n');
    });
    expect(first).toMatch(/^HTTP\/1\.1 200/);
    const r = await servedMeanwhile(drip(tunnel as unknown as net.Socket, HEAD('/slow-second', '')));
    expectClosedByTimeout(r);
    expect(tlsUp.requests.filter((q) => q.url === '/slow-second')).toEqual([]);
  });

  it('an intercepted tunnel whose TLS ClientHello is trickled is cut off within the bound, and audited', async () => {
    const connect = await proxyConnect(proxy, 'good.test:443');
    expect(connect.status).toBe(200);
    // A real ClientHello, captured from a TLS client, then fed back one byte at a time.
    const hello = await clientHello('good.test');
    const r = await servedMeanwhile(drip(connect.socket, hello));
    expectClosedByTimeout(r);
    expect(r.sent).toBeLessThan(hello.length); // it never finished the handshake
    const line = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'good.test' && l.detail !== undefined && /timeout/i.test(l.detail));
    expect(line).toMatchObject({ method: 'CONNECT', status: 200 });
  });
});

/** The bytes of a TLS ClientHello for `servername` (a TLS client writing into a capture socket). */
function clientHello(servername: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername, rejectUnauthorized: false });
      c.on('error', () => {});
    });
    server.on('error', reject);
  });
}
