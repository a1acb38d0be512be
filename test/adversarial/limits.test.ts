// Attack 10: one session trying to exhaust the proxy — connections, request rate, upload volume —
// is held to its policy's limits (429, audited) while another session on the same runtime, with
// its own credential and the same policy, is unaffected.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { createTestPki, rmTmp, startAirlock, startHttpUpstream, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { connectTcp, dialRecorder, exchange, extraSession, fakeDns, parseResponse, proxyConnect, proxyGet, proxyOf, sleep, tunnelTls } from './helpers.js';
import type { ProxyAddress, SessionAudit } from './helpers.js';

const policy = (limits: string) => `
version: 1
name: limits
allow:
  - host: good.test
limits: { ${limits} }
`;

interface Body {
  readonly url: string;
  bytes: number;
  complete: boolean;
}

let pki: TestPki;
let plainUp: TestUpstream;
let tlsUp: TestUpstream;
const bodies: Body[] = [];

/** Records how much of each request body arrived; /slow answers after 300 ms. */
function recordingHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const body: Body = { url: req.url ?? '', bytes: 0, complete: false };
  bodies.push(body);
  req.on('data', (c: Buffer) => (body.bytes += c.length));
  req.on('end', () => {
    body.complete = true;
    const answer = () => res.end(`ok ${body.bytes}\n`);
    if (body.url.startsWith('/slow')) setTimeout(answer, 300);
    else answer();
  });
  req.on('error', () => {});
}

async function start(limits: string): Promise<{ airlock: AirlockHandle; proxy: ProxyAddress; other: ProxyAddress; otherAudit: SessionAudit }> {
  const airlock = await startAirlock({
    policy: policy(limits),
    resolve: { 'good.test:80': plainUp.port, 'good.test:443': tlsUp.port },
    upstreamCa: [pki.caPem],
    lookup: fakeDns().lookup,
    beforeDial: dialRecorder().beforeDial,
  });
  const other = await extraSession(airlock);
  return { airlock, proxy: proxyOf(airlock), other: other.proxy, otherAudit: other.audit };
}

beforeAll(async () => {
  pki = await createTestPki();
  plainUp = await startHttpUpstream({ handler: recordingHandler });
  tlsUp = await startHttpsUpstream({ pki, names: ['good.test'], handler: recordingHandler });
});

afterAll(async () => {
  await Promise.all([plainUp?.close(), tlsUp?.close()]);
  rmTmp(pki?.dir);
});

describe('attack 10a: max_connections: 2', () => {
  let a: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    a = await start('max_connections: 2');
  });
  afterAll(async () => {
    await a?.airlock.close();
  });

  it('a third concurrent CONNECT → 429 rate_limited (audited); the other session is unaffected; slots come back', async () => {
    const t1 = await proxyConnect(a.proxy, 'good.test:443');
    const t2 = await proxyConnect(a.proxy, 'good.test:443');
    expect([t1.status, t2.status]).toEqual([200, 200]);
    const t3 = await proxyConnect(a.proxy, 'good.test:443');
    expect(t3.status).toBe(429);
    expect(t3.head).toMatch(/\r\nRetry-After: 1/i);
    // A plain request is a connection too.
    const plain = await proxyGet(a.proxy, 'http://good.test/over-cap');
    expect(plain.status).toBe(429);

    // Meanwhile the other session (same policy, own credential) gets its two and more requests.
    const o1 = await proxyConnect(a.other, 'good.test:443');
    expect(o1.status).toBe(200);
    expect((await proxyGet(a.other, 'http://good.test/other')).status).toBe(200);
    o1.socket.destroy();

    const line = await a.airlock.waitForAudit((l) => l.kind === 'tunnel' && l.reason === 'rate_limited');
    expect(line).toMatchObject({ method: 'CONNECT', status: 429, action: 'deny', host: 'good.test', port: 443 });
    const plainLine = await a.airlock.waitForAudit((l) => l.kind === 'request' && l.path === '/over-cap');
    expect(plainLine).toMatchObject({ status: 429, action: 'deny', reason: 'rate_limited' });
    expect((await a.otherAudit.lines()).filter((l) => l.action === 'deny')).toEqual([]);

    // Closing the tunnels gives the slots back.
    t1.socket.destroy();
    t2.socket.destroy();
    await sleep(100);
    const again = await proxyConnect(a.proxy, 'good.test:443');
    expect(again.status).toBe(200);
    again.socket.destroy();
    await sleep(50);
  });

  it('pipelined requests on a connection the client then drops leave no slot behind (and are not forwarded)', async () => {
    const before = bodies.filter((b) => b.url.startsWith('/slow-pipelined')).length;
    const socket = await connectTcp(a.proxy.host, a.proxy.port);
    const one = (n: number) => `GET http://good.test/slow-pipelined-${n} HTTP/1.1\r\nHost: good.test\r\nProxy-Authorization: ${a.proxy.auth}\r\n\r\n`;
    socket.write(one(1) + one(2) + one(3));
    await sleep(50);
    socket.destroy(); // leaves with /slow-pipelined-1 in flight and 2, 3 queued
    await sleep(500);
    // Only the first was ever started; the queued ones were dropped with the connection.
    expect(bodies.filter((b) => b.url.startsWith('/slow-pipelined')).length - before).toBeLessThanOrEqual(1);
    // Both connection slots are free again: two tunnels open side by side.
    const t1 = await proxyConnect(a.proxy, 'good.test:443');
    const t2 = await proxyConnect(a.proxy, 'good.test:443');
    expect([t1.status, t2.status]).toEqual([200, 200]);
    t1.socket.destroy();
    t2.socket.destroy();
    await sleep(50);
  });
});

describe('attack 10b: requests_per_second: 5', () => {
  let a: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    a = await start('requests_per_second: 5');
  });
  afterAll(async () => {
    await a?.airlock.close();
  });

  it('a burst of 20 → some 429 rate_limited (audited, one line each); the other session is unaffected', async () => {
    const [burst, other] = await Promise.all([
      Promise.all(Array.from({ length: 20 }, (_, i) => proxyGet(a.proxy, `http://good.test/burst-${i}`))),
      (async () => {
        await sleep(10);
        return await Promise.all(Array.from({ length: 5 }, (_, i) => proxyGet(a.other, `http://good.test/other-${i}`)));
      })(),
    ]);
    const statuses = burst.map((r) => r.status);
    const limited = statuses.filter((s) => s === 429).length;
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
    expect(limited).toBeGreaterThanOrEqual(10); // a one-second bucket of 5, refilled at 5/s
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(5);
    expect(other.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    await a.airlock.waitForAudit((l) => l.reason === 'rate_limited');
    const lines = (await a.airlock.auditLines()).filter((l) => l.path.startsWith('/burst-'));
    expect(lines.filter((l) => l.reason === 'rate_limited' && l.status === 429 && l.action === 'deny')).toHaveLength(limited);
    // Refused requests never reached the upstream.
    const refused = burst.map((r, i) => (r.status === 429 ? `/burst-${i}` : null)).filter(Boolean);
    expect(bodies.filter((b) => refused.includes(b.url))).toEqual([]);
    expect((await a.otherAudit.lines()).filter((l) => l.reason === 'rate_limited')).toEqual([]);
  });

  it('a burst of CONNECTs is rate-limited too (the CONNECT takes a request token)', async () => {
    await sleep(1_100); // refill
    const results = await Promise.all(Array.from({ length: 12 }, () => proxyConnect(a.proxy, 'good.test:443')));
    for (const r of results) r.socket.destroy();
    expect(results.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(5);
    await a.airlock.waitForAudit((l) => l.kind === 'tunnel' && l.reason === 'rate_limited');
  });
});

describe('attack 10c: max_upload_bytes: 1000', () => {
  let a: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    a = await start('max_upload_bytes: 1000');
  });
  afterAll(async () => {
    await a?.airlock.close();
  });

  it('a 5000-byte upload with Content-Length → 429 upload_budget_exceeded before anything is sent upstream', async () => {
    const r = await proxyGet(a.proxy, 'http://good.test/upload-declared', { method: 'POST', body: Buffer.alloc(5000, 0x61) });
    expect(r.status).toBe(429);
    expect(r.headers['x-airlock-decision']).toBe('deny; reason=upload_budget_exceeded');
    const line = await a.airlock.waitForAudit((l) => l.path === '/upload-declared');
    expect(line).toMatchObject({ status: 429, action: 'deny', reason: 'upload_budget_exceeded' });
    expect(bodies.filter((b) => b.url === '/upload-declared')).toEqual([]);
    // The same inside a tunnel.
    const tls = await tunnelTls(a.proxy, 'good.test:443', { ca: readFileSync(a.airlock.bundlePath, 'utf8') });
    const t = await exchange(tls, `POST /upload-declared-tls HTTP/1.1\r\nHost: good.test\r\nContent-Length: 5000\r\n\r\n${'b'.repeat(5000)}`, { untilResponse: true });
    tls.destroy();
    expect(t.status).toBe(429);
    expect(bodies.filter((b) => b.url === '/upload-declared-tls')).toEqual([]);
  });

  it('a chunked upload that crosses the budget is cut off (429, audited) and the upstream never gets past the budget', async () => {
    const socket = await connectTcp(a.proxy.host, a.proxy.port);
    let text = '';
    let closed = false;
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => (closed = true));
    socket.write(`POST http://good.test/upload-chunked HTTP/1.1\r\nHost: good.test\r\nProxy-Authorization: ${a.proxy.auth}\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const chunk = 'c'.repeat(300);
    let sent = 0;
    for (let i = 0; i < 20 && !closed && !parseResponse(text); i++) {
      socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      sent += chunk.length;
      await sleep(40);
    }
    await sleep(100);
    socket.destroy();
    expect(sent).toBeLessThan(20 * 300); // it was stopped, not allowed to finish
    expect(parseResponse(text)?.status).toBe(429);
    const line = await a.airlock.waitForAudit((l) => l.path === '/upload-chunked');
    expect(line).toMatchObject({ action: 'deny', reason: 'upload_budget_exceeded' });
    const seen = bodies.filter((b) => b.url === '/upload-chunked');
    for (const b of seen) {
      expect(b.bytes).toBeLessThanOrEqual(1000);
      expect(b.complete).toBe(false);
    }
  });

  it('the other session still has its own budget', async () => {
    const r = await proxyGet(a.other, 'http://good.test/other-upload', { method: 'POST', body: Buffer.alloc(900, 0x64) });
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok 900\n');
    expect((await a.otherAudit.lines()).filter((l) => l.action === 'deny')).toEqual([]);
  });
});
