// The proxy's own upstream HTTP/1.1 client against scripted servers on loopback: keep-alive reuse,
// every framing a response can use, and the malformed ones it must refuse rather than guess at.
import net from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Http1Client } from '../../../src/proxy/http1/http1-client.js';
import type { BodySink, ResponseHead, UpstreamCall } from '../../../src/proxy/http1/types.js';
import { plainDial, sleep, startScriptedServer, waitFor } from '../../helpers/servers.js';
import type { ScriptedServer } from '../../helpers/servers.js';

const servers: ScriptedServer[] = [];
const clients: Http1Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.close();
});

function client(options: { stallTimeoutMs?: number; keepAliveMs?: number } = {}): Http1Client {
  const c = new Http1Client({
    ...options,
    dial: plainDial,
  });
  clients.push(c);
  return c;
}

/** Answers every complete request head on a connection with `respond(n)` (n counts per server). */
async function server(respond: (n: number, request: string) => string | Buffer | null): Promise<ScriptedServer> {
  let n = 0;
  const seen = new Map<net.Socket, number>();
  const s = await startScriptedServer((socket, text) => {
    const heads = text.split('\r\n\r\n').length - 1;
    for (let done = seen.get(socket) ?? 0; done < heads; done++) {
      const reply = respond(++n, text);
      if (reply !== null) socket.write(reply);
    }
    seen.set(socket, heads);
  });
  servers.push(s);
  return s;
}

function call(port: number, extra: Partial<UpstreamCall> = {}): UpstreamCall {
  return { secure: false, host: '127.0.0.1', port, method: 'GET', path: '/', headers: ['host', 'up.test'], body: null, ...extra };
}

/** A sink that accepts everything and drops it, with `parts` changed. */
function sinkWith(parts: Partial<BodySink>): BodySink {
  return { write: () => true, end() {}, cork() {}, uncork() {}, once() {}, on() {}, ...parts };
}

/** Sends a request; resolves with the head and the body as a string. */
async function fetchVia(c: Http1Client, req: UpstreamCall): Promise<{ head: ResponseHead; body: string }> {
  let head: ResponseHead | undefined;
  const chunks: Buffer[] = [];
  const sink = sinkWith({
    write: (b) => (chunks.push(b), true),
    end: (b?: Buffer) => void (b && chunks.push(b)),
  });
  await c.request(req, (h) => ((head = h), sink)).done;
  return { head: head!, body: Buffer.concat(chunks).toString() };
}

describe('Http1Client', () => {
  it('reuses one keep-alive connection for requests in sequence', async () => {
    const s = await server((n) => `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr${n}`);
    const c = client();
    expect((await fetchVia(c, call(s.port))).body).toBe('r1');
    expect((await fetchVia(c, call(s.port))).body).toBe('r2');
    expect(s.connections).toHaveLength(1);
  });

  it('decodes chunked bodies with extensions and drops trailers, then reuses the connection', async () => {
    const s = await server(() => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n');
    const c = client();
    const r = await fetchVia(c, call(s.port));
    expect(r.body).toBe('hello world');
    await fetchVia(c, call(s.port));
    expect(s.connections).toHaveLength(1);
  });

  it('parses a response that arrives one byte at a time', async () => {
    const reply = 'HTTP/1.1 201 Created\r\nX-A: 1\r\nX-A: 2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const s = await startScriptedServer((socket) => {
      let i = 0;
      const tick = () => {
        if (i < reply.length) socket.write(reply[i++]!, () => setImmediate(tick));
      };
      tick();
    });
    servers.push(s);
    const r = await fetchVia(client(), call(s.port));
    expect(r.head.statusCode).toBe(201);
    expect(r.head.headers['x-a']).toEqual(['1', '2']);
    expect(r.body).toBe('abc');
  });

  it('skips 1xx informational heads and delivers the final one', async () => {
    const s = await server(() => 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    const r = await fetchVia(client(), call(s.port));
    expect(r.head.statusCode).toBe(200);
    expect(r.body).toBe('ok');
  });

  it('reads a body without length until close, and does not reuse that connection', async () => {
    const s = await startScriptedServer((socket) => socket.end('HTTP/1.1 200 OK\r\n\r\nall of it'));
    servers.push(s);
    const c = client();
    expect((await fetchVia(c, call(s.port))).body).toBe('all of it');
    expect((await fetchVia(c, call(s.port))).body).toBe('all of it');
    expect(s.connections).toHaveLength(2);
  });

  it('HEAD, 204 and 304 have no body even with a Content-Length', async () => {
    const s = await server((n) => (n === 1 ? 'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n' : n === 2 ? 'HTTP/1.1 204 No Content\r\n\r\n' : 'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n'));
    const c = client();
    expect((await fetchVia(c, call(s.port, { method: 'HEAD' }))).body).toBe('');
    expect((await fetchVia(c, call(s.port))).head.statusCode).toBe(204);
    expect((await fetchVia(c, call(s.port))).head.statusCode).toBe(304);
    expect(s.connections).toHaveLength(1);
  });

  const malformed: Record<string, string> = {
    'both Transfer-Encoding and Content-Length': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
    'two different Content-Lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
    'a non-numeric Content-Length': 'HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc',
    'an obs-folded header': 'HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n',
    'a space before the colon': 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n',
    'a bad status line': 'HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n',
    'a malformed chunk size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
    'chunk data longer than its size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n',
    '101 on a plain request': 'HTTP/1.1 101 Switching Protocols\r\n\r\n',
    'a bare LF inside a header line': 'HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\nContent-Length: 0\r\n\r\n',
    'a NUL in a header value': 'HTTP/1.1 200 OK\r\nX-A: a\u0000b\r\nContent-Length: 0\r\n\r\n',
    'a control character in a header value': 'HTTP/1.1 200 OK\r\nX-A: a\u0001b\r\nContent-Length: 0\r\n\r\n',
    'a Transfer-Encoding other than chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
  };
  for (const [name, reply] of Object.entries(malformed)) {
    it(`refuses a response with ${name} and closes that connection`, async () => {
      const s = await server(() => reply);
      const err = await fetchVia(client(), call(s.port)).then(
        () => null,
        (e: Error & { code?: string }) => e,
      );
      expect(err?.code).toBe('UPSTREAM_BAD_RESPONSE');
      await new Promise((r) => setTimeout(r, 50));
      expect(s.connections[0]!.destroyed || s.connections[0]!.readableEnded).toBe(true);
    });
  }

  it('refuses a response head over 64 KiB', async () => {
    const s = await server(() => `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\nContent-Length: 0\r\n\r\n`);
    await expect(fetchVia(client(), call(s.port))).rejects.toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE' });
  });

  it('does not reuse a connection that sent bytes past the end of a response', async () => {
    const s = await server(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled');
    const c = client();
    expect((await fetchVia(c, call(s.port))).body).toBe('ok');
    expect((await fetchVia(c, call(s.port))).body).toBe('ok');
    expect(s.connections).toHaveLength(2);
  });

  it('retries a GET once when a kept-alive connection turns out closed', async () => {
    const s = await server((n, req) => {
      if (n === 2) {
        // The server drops the reused connection without answering.
        s.connections[0]!.destroy();
        return null;
      }
      return `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr${n}`;
    });
    const c = client();
    expect((await fetchVia(c, call(s.port))).body).toBe('r1');
    expect((await fetchVia(c, call(s.port))).body).toBe('r3');
    expect(s.connections).toHaveLength(2);
  });

  it('refuses to send a header value with CR or LF (a swapped-in secret included), sending nothing', async () => {
    const s = await server(() => 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    await expect(fetchVia(client(), call(s.port, { headers: ['host', 'up.test', 'authorization', 'Bearer a\r\nX-Evil: 1'] }))).rejects.toMatchObject({ code: 'INVALID_HEADER' });
    await new Promise((r) => setTimeout(r, 50));
    expect(s.received.join('')).toBe('');
  });

  it('sends a body with its Content-Length as is, and one without chunked', async () => {
    const s = await server(() => 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    const c = client();
    await fetchVia(c, call(s.port, { method: 'POST', headers: ['host', 'up.test', 'content-length', '5'], body: Readable.from([Buffer.from('hello')]) }));
    await fetchVia(c, call(s.port, { method: 'POST', body: Readable.from([Buffer.from('ab'), Buffer.from('cde')]) }));
    const wire = s.received[0]!;
    expect(wire).toContain('POST / HTTP/1.1\r\nhost: up.test\r\ncontent-length: 5\r\n\r\nhello');
    expect(wire).toContain('POST / HTTP/1.1\r\nhost: up.test\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n');
  });

  it('stops a body when the per-chunk check throws, with that error', async () => {
    const s = await server(() => null);
    const budget = new Error('over budget');
    const req = call(s.port, {
      method: 'POST',
      headers: ['host', 'up.test', 'content-length', '6'],
      body: Readable.from([Buffer.from('abc'), Buffer.from('def')]),
      onBodyChunk: () => {
        throw budget;
      },
    });
    await expect(client().request(req, () => sinkWith({})).done).rejects.toBe(budget);
  });

  it('times out an upstream that stalls, before the head and mid-body, with codes that say which', async () => {
    const silent = await server(() => null);
    await expect(fetchVia(client({ stallTimeoutMs: 200 }), call(silent.port))).rejects.toMatchObject({ code: 'UPSTREAM_HEADERS_TIMEOUT' });
    const half = await server(() => 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
    await expect(fetchVia(client({ stallTimeoutMs: 200 }), call(half.port))).rejects.toMatchObject({ code: 'UPSTREAM_BODY_TIMEOUT' });
  });

  it('closes idle connections past their keep-alive and does not reuse them', async () => {
    const s = await server(() => 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    const c = client({ keepAliveMs: 1000 });
    await fetchVia(c, call(s.port));
    const first = s.connections[0]!;
    const closed = new Promise<void>((resolve) => first.once('close', () => resolve()));
    await closed; // the sweep closes it (keep-alive 1 s, sweep every 2 s) without another request
    await fetchVia(c, call(s.port));
    expect(s.connections).toHaveLength(2);
  });

  it('a sink that throws fails the exchange instead of escaping into the socket handler', async () => {
    const s = await server(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    const boom = new Error('sink refused');
    const sink = sinkWith({
      end: () => {
        throw boom;
      },
    });
    await expect(client().request(call(s.port), () => sink).done).rejects.toBe(boom);
  });

  it('never sends a non-idempotent request twice, even without a body', async () => {
    const s = await server((n) => {
      if (n === 2) {
        s.connections[0]!.destroy(); // acted on (maybe), then gone without an answer
        return null;
      }
      return 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
    });
    const c = client();
    await fetchVia(c, call(s.port));
    await expect(fetchVia(c, call(s.port, { method: 'POST', headers: ['host', 'up.test', 'content-length', '0'] }))).rejects.toMatchObject({ code: 'UPSTREAM_CLOSED' });
    expect(s.received.join('').match(/^POST /gm)).toHaveLength(1);
  });

  it('a request whose head was still waiting for its body goes again, whole, when the connection dies', async () => {
    const s = await server((n) => (n === 1 ? 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n' : 'HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n'));
    const c = client();
    await fetchVia(c, call(s.port));
    const body = new Readable({ read() {} });
    const pending = fetchVia(c, call(s.port, { method: 'PUT', headers: ['host', 'up.test', 'content-length', '4'], body }));
    await new Promise((r) => setTimeout(r, 50));
    s.connections[0]!.destroy(); // the kept-alive connection dies before the body starts
    await new Promise((r) => setTimeout(r, 50));
    body.push('data');
    body.push(null);
    expect((await pending).head.statusCode).toBe(201);
    expect(s.connections).toHaveLength(2);
    expect(s.received[1]).toContain('PUT / HTTP/1.1\r\nhost: up.test\r\ncontent-length: 4\r\n\r\ndata');
    expect(s.received[0]).not.toContain('PUT');
  });

  it('a discarded body closes the connection instead of reading it (an endless body included)', async () => {
    const s = await startScriptedServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      const more = setInterval(() => (socket.destroyed ? clearInterval(more) : socket.write('4\r\nmore\r\n')), 5);
    });
    servers.push(s);
    const sink = sinkWith({ discard: true });
    await client().request(call(s.port), () => sink).done;
    await new Promise<void>((resolve) => (s.connections[0]!.destroyed ? resolve() : s.connections[0]!.once('close', () => resolve())));
  });

  it('keeps nothing for an origin it could not reach', async () => {
    const c = client();
    const closed = await server(() => null);
    const port = closed.port;
    await closed.close();
    servers.splice(servers.indexOf(closed), 1);
    for (let i = 0; i < 5; i++) await expect(fetchVia(c, call(port))).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(c.openOrigins).toBe(0);
  });

  it('after close(), a request still in flight finishes and its connection is closed, not pooled', async () => {
    let answer: (() => void) | undefined;
    const s = await server(() => {
      answer = () => s.connections[0]!.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      return null;
    });
    const c = client();
    const pending = fetchVia(c, call(s.port));
    await new Promise((r) => setTimeout(r, 50));
    c.close();
    answer!();
    expect((await pending).body).toBe('ok');
    await new Promise<void>((resolve) => (s.connections[0]!.destroyed ? resolve() : s.connections[0]!.once('close', () => resolve())));
  });

  it('relays a turn of request body up to 256 KiB before pausing the client, and pauses it past that', async () => {
    // What one event-loop turn writes stays in the socket's writableLength until the write is
    // reported done, a turn later over TLS: a low limit paused the client nearly every turn, which
    // made uploads cost 15-25% more CPU per MiB (bench/README.md, "Upload flow"). Chunks are pushed
    // within one synchronous turn here, so how many go before the pause does not depend on timing.
    const s = await server(() => null);
    const body = new Readable({ read() {} });
    const c = client();
    const req = c.request(call(s.port, { method: 'POST', headers: ['host', 'up.test', 'content-length', String(64 << 20)], body }), () => sinkWith({}));
    req.done.catch(() => {});
    while (body.listenerCount('data') === 0) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r)); // the body is flowing, its first read done
    const piece = Buffer.alloc(16 * 1024, 0x75);
    let pausedAt = 0;
    for (let n = 1; n <= 64 && pausedAt === 0; n++) {
      body.push(piece);
      if (body.isPaused()) pausedAt = n;
    }
    // 12 pieces (192 KiB) pass without a pause; the client is paused before 512 KiB.
    expect(pausedAt).toBeGreaterThan(12);
    expect(pausedAt).toBeLessThan(32);
    req.abort();
  });

  it('passes up to 512 KiB of a response to a sink that does not drain before pausing the upstream, and no more than a read past it', async () => {
    // The sink never drains: everything written stays in its writableLength, as a turn's TLS
    // writes do until the next turn. Whatever the timing, the upstream is paused once more than
    // 512 KiB waits, and what arrives after that is at most the rest of the read that crossed it.
    const total = 4 << 20;
    const s = await server(() => Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${total}\r\n\r\n`), Buffer.alloc(total, 0x64)]));
    let waiting = 0;
    const sink: BodySink = {
      write: (b) => ((waiting += b.length), false),
      get writableLength() {
        return waiting;
      },
      end() {},
      cork() {},
      uncork() {},
      once() {},
      on() {},
    };
    const req = client().request(call(s.port), () => sink);
    req.done.catch(() => {});
    await waitFor(() => waiting > 448 * 1024, 10_000, 'half a MiB relayed');
    await sleep(200);
    expect(waiting).toBeGreaterThan(512 * 1024);
    expect(waiting).toBeLessThan(640 * 1024);
    req.abort();
  });
});
