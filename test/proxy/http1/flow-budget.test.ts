// The bulk flow limits (512 KiB of a response, 256 KiB of a request body waiting) hold only on
// bytes lent from one budget for all connections: connections whose reader stalls cannot each
// make the proxy hold the full limits (a session with a thousand stalled downloads would pin
// 512 MiB), only the earlier limits each plus the budget once. Real sockets to a scripted
// upstream; the sinks stand for client sockets that never drain.
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import net from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Client } from '../../../src/proxy/http1/http1-client.js';
import type { BodySink, UpstreamCall } from '../../../src/proxy/http1/types.js';
import { createTestPki, plainDial, rmTmp, sleep, startAirlock, startHttpsUpstream, startHttpUpstream, startScriptedServer, waitFor } from '../../helpers/servers.js';
import { tunnelThrough } from '../../helpers/clients.js';
import type { ScriptedServer } from '../../helpers/servers.js';

const KiB = 1024;
const servers: ScriptedServer[] = [];
const clients: Http1Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.close();
});

function client(flowBudgetBytes: number): Http1Client {
  const c = new Http1Client({
    flowBudgetBytes,
    dial: plainDial,
  });
  clients.push(c);
  return c;
}

/** Answers every request with a 4 MiB body, or reads nothing at all (`sink: true`). */
async function upstream(mode: 'download' | 'sink'): Promise<ScriptedServer> {
  const total = 4 << 20;
  const answer = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${total}\r\n\r\n`), Buffer.alloc(total, 0x64)]);
  const s = await startScriptedServer((socket) => {
    if (mode === 'sink') socket.pause();
    else if (!(socket as net.Socket & { answered?: boolean }).answered) {
      (socket as net.Socket & { answered?: boolean }).answered = true;
      socket.write(answer);
    }
  });
  servers.push(s);
  return s;
}

/** A client socket that never reads: everything stays waiting until it is destroyed. */
class StalledSink extends EventEmitter implements BodySink {
  waiting = 0;
  write(b: Buffer): boolean {
    this.waiting += b.length;
    return false;
  }
  get writableLength(): number {
    return this.waiting;
  }
  end(): void {}
  cork(): void {}
  uncork(): void {}
  /** The client left: what waited is dropped. */
  destroy(): void {
    this.waiting = 0;
    this.emit('close');
  }
}

function call(port: number, extra: Partial<UpstreamCall> = {}): UpstreamCall {
  return { secure: false, host: '127.0.0.1', port, method: 'GET', path: '/', headers: ['host', 'up.test'], body: null, ...extra };
}

/** Waits until `sink` stops growing (its upstream paused) and returns what waits. */
async function settled(sink: StalledSink): Promise<number> {
  await waitFor(() => sink.waiting > 200 * KiB, 10_000, 'a first turn relayed');
  let last = -1;
  while (last !== sink.waiting) {
    last = sink.waiting;
    await sleep(150);
  }
  return sink.waiting;
}

describe('the flow budget', () => {
  it('lets one stalled download wait up to 512 KiB, the next ones only up to 256 KiB while it holds the loan', async () => {
    const s = await upstream('download');
    const c = client(256 * KiB);
    const first = new StalledSink();
    c.request(call(s.port), () => first).done.catch(() => {});
    expect(await settled(first)).toBeGreaterThan(512 * KiB);
    const others = [new StalledSink(), new StalledSink(), new StalledSink()];
    for (const sink of others) c.request(call(s.port), () => sink).done.catch(() => {});
    for (const sink of others) {
      const held = await settled(sink);
      expect(held).toBeGreaterThan(256 * KiB);
      // Paused past the base limit: at most the rest of the read that crossed it.
      expect(held).toBeLessThan(384 * KiB);
    }
    expect(c.budget.left).toBe(0);
    // The first client leaves: its loan comes back, and the next stalled download may use it.
    first.destroy();
    expect(c.budget.left).toBe(256 * KiB);
    const next = new StalledSink();
    c.request(call(s.port), () => next).done.catch(() => {});
    expect(await settled(next)).toBeGreaterThan(512 * KiB);
  });

  it('a loan ends when the writer drains, so a fast flow borrows for a turn at a time', async () => {
    const s = await upstream('download');
    const c = client(256 * KiB);
    const sink = new StalledSink();
    c.request(call(s.port), () => sink).done.catch(() => {});
    await settled(sink);
    expect(c.budget.left).toBe(0);
    sink.waiting = 0;
    sink.emit('drain');
    expect(c.budget.left).toBe(256 * KiB);
    sink.destroy();
  });

  it('holds a request body to 64 KiB waiting while the budget is lent out, and to 256 KiB with a loan', async () => {
    const s = await upstream('sink');
    const c = client(192 * KiB);
    const uploads: { body: Readable; pushed: number }[] = [];
    for (let i = 0; i < 2; i++) {
      const body = new Readable({ read() {} });
      c.request(call(s.port, { method: 'POST', headers: ['host', 'up.test', 'content-length', String(64 << 20)], body }), () => new StalledSink()).done.catch(() => {});
      while (body.listenerCount('data') === 0) await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      uploads.push({ body, pushed: 0 });
    }
    // Pushed in one synchronous turn each, so the socket's writableLength keeps all of it.
    const piece = Buffer.alloc(16 * KiB, 0x75);
    const pausedAfter: number[] = [];
    for (const u of uploads) {
      for (let n = 1; n <= 64; n++) {
        u.body.push(piece);
        if (u.body.isPaused()) {
          pausedAfter.push(n);
          break;
        }
      }
    }
    // The first borrows the whole budget: past 192 KiB; the second pauses at the base 64 KiB.
    expect(pausedAfter[0]).toBeGreaterThan(12);
    expect(pausedAfter[0]).toBeLessThan(32);
    expect(pausedAfter[1]).toBeGreaterThanOrEqual(4);
    expect(pausedAfter[1]).toBeLessThan(8);
  });
});

describe('the flow budget through the proxy', () => {
  it('has every loan back once downloads end, read to the end or left stalled by their clients (tunnel and plain proxy)', async () => {
    const big = Buffer.alloc(8 << 20, 0x62);
    const handler = (_req: unknown, res: http.ServerResponse) => {
      res.writeHead(200, { 'Content-Length': big.length });
      res.end(big);
    };
    const pki = await createTestPki();
    const tlsUp = await startHttpsUpstream({ pki, names: ['dl.test'], handler });
    const plainUp = await startHttpUpstream({ handler });
    const airlock = await startAirlock({
      policy: 'version: 1\nname: flow-budget\nallow:\n  - host: dl.test\n  - host: plain.test\n',
      resolve: { 'dl.test:443': tlsUp.port, 'plain.test:80': plainUp.port },
      upstreamCa: [pki.caPem],
    });
    const budget = airlock.runtime.upstream.http.budget;
    const full = budget.left;
    try {
      // Stalled: the client never reads; then it leaves.
      const stalled: net.Socket[] = [];
      for (let i = 0; i < 3; i++) {
        const s = await tunnelThrough(airlock, 'dl.test');
        s.pause();
        s.write('GET /big HTTP/1.1\r\nHost: dl.test\r\n\r\n');
        stalled.push(s);
      }
      const plain = net.connect(airlock.port, '127.0.0.1');
      plain.pause();
      plain.write(`GET http://plain.test/big HTTP/1.1\r\nHost: plain.test\r\nProxy-Authorization: ${airlock.proxyAuthorization}\r\n\r\n`);
      stalled.push(plain);
      await waitFor(() => budget.left < full, 10_000, 'a loan taken by a stalled download');
      await sleep(300);
      for (const s of stalled) s.destroy();
      // Read to the end, on a kept-alive tunnel, twice.
      const reader = await tunnelThrough(airlock, 'dl.test');
      for (let i = 0; i < 2; i++) {
        let got = 0;
        await new Promise<void>((resolve) => {
          const onData = (d: Buffer) => {
            got += d.length;
            if (got >= big.length) {
              reader.off('data', onData);
              resolve();
            }
          };
          reader.on('data', onData);
          reader.write('GET /big HTTP/1.1\r\nHost: dl.test\r\n\r\n');
        });
      }
      reader.destroy();
      await waitFor(() => budget.left === full, 5_000, 'every loan given back');
    } finally {
      await airlock.close();
      await tlsUp.close();
      await plainUp.close();
      rmTmp(pki.dir);
    }
  }, 30_000);
});
