// HTTP/1.1 inside an inspected tunnel, byte for byte, through the real proxy and a real TLS
// upstream: kept-alive and pipelined requests, bodies, HEAD, Connection: close, responses without
// a length, and the hand-over to Node's parser in the middle of a connection (a chunked upload is
// served, a smuggling attempt is refused, audited and not forwarded).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type tls from 'node:tls';
import { exchange, tunnelTls, startGuardedRig } from '../../adversarial/helpers.js';
import type { GuardedRig } from '../../adversarial/helpers.js';
import { echoHandler, sleep } from '../../helpers/servers.js';
import type { UpstreamHandler } from '../../helpers/servers.js';

const POLICY = `
version: 1
name: tunnel-http
allow:
  - host: good.test
    methods: [GET, HEAD, POST]
    paths: ["/**"]
  - host: good.test
    methods: [PUT]
    paths: ["/allowed/**"]
`;

interface Response {
  readonly status: number;
  readonly head: string;
  readonly body: string;
}

/** Splits a byte stream into complete responses (Content-Length, chunked, or none for HEAD/204/304). */
function responses(text: string, heads: readonly string[] = []): Response[] {
  const out: Response[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const head = rest.slice(0, end);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    rest = rest.slice(end + 4);
    let body = '';
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (heads[out.length] === 'HEAD' || status === 204 || status === 304) {
      // no body
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      for (;;) {
        const line = rest.indexOf('\r\n');
        const size = parseInt(rest.slice(0, line), 16);
        rest = rest.slice(line + 2);
        if (size === 0) {
          rest = rest.slice(2);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    } else if (length) {
      body = rest.slice(0, Number(length[1]));
      rest = rest.slice(Number(length[1]));
    }
    out.push({ status, head, body });
  }
  return out;
}

/** Reads from the socket until `count` complete responses (or close/timeout). */
async function readResponses(socket: tls.TLSSocket, data: string | readonly string[], count: number, methods: readonly string[] = []) {
  let text = '';
  const done = new Promise<void>((resolve) => {
    const check = () => {
      if (responses(text, methods).length >= count) resolve();
    };
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      check();
    });
    socket.once('close', () => resolve());
  });
  for (const piece of typeof data === 'string' ? [data] : data) {
    socket.write(piece);
    await sleep(20);
  }
  await Promise.race([done, sleep(5_000)]);
  return { list: responses(text, methods), text };
}

const BLOCK = Buffer.alloc(8 * 1024, 'z');

/**
 * Echoes, except /no-length: a body sent without Content-Length (chunked by the upstream), and
 * /block: 8 KiB with a length (it reaches the proxy in one read).
 */
const handler: UpstreamHandler = (req, res) => {
  if (req.url?.startsWith('/block')) {
    res.writeHead(200, { 'Content-Length': BLOCK.length });
    return void res.end(BLOCK);
  }
  if (!req.url?.startsWith('/no-length')) return echoHandler(req, res);
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('a body of unknown length');
};

let rig: GuardedRig;

beforeAll(async () => {
  rig = await startGuardedRig({ policy: POLICY, tls: { handler } });
});

afterAll(() => rig?.close());

const open = () => tunnelTls(rig.proxy, 'good.test:443', { ca: rig.bundle });
/** Runs `use` on a fresh tunnel, closed afterwards whatever happens. */
async function withTunnel(use: (socket: tls.TLSSocket) => Promise<void>): Promise<void> {
  const socket = await open();
  try {
    await use(socket);
  } finally {
    socket.destroy();
  }
}
const get = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: good.test\r\n${extra}\r\n`;
const upstreamSaw = (fragment: string) => rig.tlsUp.requests.filter((r) => r.url.includes(fragment));

describe('requests inside a tunnel', () => {
  it('three requests, one after another, on one kept-alive connection; each audited', async () => {
    await withTunnel(async (socket) => {
      for (const n of [1, 2, 3]) {
        const { list } = await readResponses(socket, get(`/keep-${n}`), 1);
        expect(list).toHaveLength(1);
        expect(list[0]!.status).toBe(200);
        expect(JSON.parse(list[0]!.body).path).toBe(`/keep-${n}`);
        socket.removeAllListeners('data');
      }
      expect(socket.destroyed).toBe(false);
      for (const n of [1, 2, 3]) {
        await rig.airlock.waitForAudit((l) => l.path === `/keep-${n}` && l.status === 200 && l.action === 'allow');
      }
    });
  });

  it('pipelined requests in one write are answered in order', async () => {
    await withTunnel(async (socket) => {
      const { list } = await readResponses(socket, get('/pipe-a') + get('/pipe-b') + get('/pipe-c'), 3);
      expect(list.map((r) => JSON.parse(r.body).path)).toEqual(['/pipe-a', '/pipe-b', '/pipe-c']);
    });
  });

  it('a body in pieces arrives whole, and a request pipelined right behind it is served', async () => {
    await withTunnel(async (socket) => {
      const body = 'x'.repeat(5000) + 'END';
      const head = `POST /upload-1 HTTP/1.1\r\nHost: good.test\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`;
      const { list } = await readResponses(socket, [head + body.slice(0, 100), body.slice(100, 4000), body.slice(4000) + get('/after-upload')], 2);
      expect(list).toHaveLength(2);
      expect(JSON.parse(list[0]!.body)).toMatchObject({ method: 'POST', path: '/upload-1', body });
      expect(JSON.parse(list[1]!.body).path).toBe('/after-upload');
    });
  });

  it('HEAD: the length is passed on, no body follows, and the next request is framed right', async () => {
    await withTunnel(async (socket) => {
      const head = `HEAD /head-1 HTTP/1.1\r\nHost: good.test\r\n\r\n`;
      const { list, text } = await readResponses(socket, head + get('/after-head'), 2, ['HEAD', 'GET']);
      expect(list[0]!.status).toBe(200);
      expect(list[0]!.head).toMatch(/\r\ncontent-length: \d+/i);
      expect(JSON.parse(list[1]!.body).path).toBe('/after-head');
      expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(2);
    });
  });

  it('a body without a length goes on chunked; HEAD of the same gets no body and no framing', async () => {
    await withTunnel(async (socket) => {
      const head = `HEAD /no-length HTTP/1.1\r\nHost: good.test\r\n\r\n`;
      const { list, text } = await readResponses(socket, get('/no-length') + head + get('/after-no-length'), 3, ['GET', 'HEAD', 'GET']);
      expect(list[0]!.head).toMatch(/\r\ntransfer-encoding: chunked/i);
      expect(list[0]!.body).toBe('a body of unknown length');
      expect(list[1]!.status).toBe(200);
      expect(list[1]!.head).not.toMatch(/transfer-encoding|content-length/i);
      expect(JSON.parse(list[2]!.body).path).toBe('/after-no-length');
      expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(3);
    });
  });

  it('Connection: close is answered with Connection: close, and the connection ends', async () => {
    const socket = await open();
    const r = await exchange(socket, get('/closing', 'Connection: close\r\n'), { timeoutMs: 5_000 });
    expect(r.status).toBe(200);
    expect(r.closed).toBe(true);
    expect(r.text).toMatch(/\r\nConnection: close\r\n/i);
  });

  it('a denied request is answered 403 with the rule, and the connection closes', async () => {
    const socket = await open();
    const r = await exchange(socket, `PUT /elsewhere HTTP/1.1\r\nHost: good.test\r\nContent-Length: 5\r\n\r\nhello` + get('/never-after-deny'), { timeoutMs: 5_000 });
    expect(r.status).toBe(403);
    expect(r.closed).toBe(true);
    expect(r.text).toContain('"error":"airlock_denied"');
    expect(upstreamSaw('/elsewhere')).toEqual([]);
    expect(upstreamSaw('/never-after-deny')).toEqual([]);
  });
});

describe('clients that misbehave', () => {
  it('pipelining requests and never reading the answers: the proxy stops taking requests', async () => {
    await withTunnel(async (socket) => {
      socket.pause();
      const before = upstreamSaw('/block').length;
      socket.write(Array.from({ length: 3000 }, (_, i) => get(`/block?${i}`)).join(''));
      // Let the proxy serve what it will; a bounded proxy stops once the socket's buffers are full
      // (a few MB on loopback), an unbounded one would queue all 3,000 answers (~24 MB).
      let seen = -1;
      for (let i = 0; i < 40 && seen !== upstreamSaw('/block').length; i++) {
        seen = upstreamSaw('/block').length;
        await sleep(150);
      }
      expect(seen - before).toBeGreaterThan(0);
      expect(seen - before).toBeLessThan(1500);
    });
  });

  it('a head cut off by the client hanging up is answered 400 and audited, as Node reports it', async () => {
    const socket = await open();
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write('GET /torn-head HTTP/1.1\r\nHost: good.test\r\nX-Half');
    await sleep(100);
    expect(text).toBe(''); // nothing is answered while the head may still come
    socket.end(); // the client is done sending, still reading
    await Promise.race([closed, sleep(5_000)]);
    expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(text).toContain('HPE_INVALID_EOF_STATE');
    const line = await rig.airlock.waitForAudit((l) => l.detail === 'HPE_INVALID_EOF_STATE');
    expect(line).toMatchObject({ kind: 'request', host: 'good.test', status: 400, action: 'deny', reason: 'bad_request' });
    expect(upstreamSaw('/torn-head')).toEqual([]);
  });
});

describe('hand-over to Node’s parser in the middle of a connection', () => {
  it('a chunked upload after a fast-path request is served by the same connection', async () => {
    await withTunnel(async (socket) => {
      const chunked = `POST /chunked-up HTTP/1.1\r\nHost: good.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`;
      const { list } = await readResponses(socket, get('/before-chunked') + chunked + get('/after-chunked'), 3);
      expect(list.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(JSON.parse(list[0]!.body).path).toBe('/before-chunked');
      expect(JSON.parse(list[1]!.body)).toMatchObject({ path: '/chunked-up', body: 'hello world' });
      expect(JSON.parse(list[2]!.body).path).toBe('/after-chunked');
    });
  });

  it('a smuggling attempt after a fast-path request: 200, then 400, closed, audited, nothing smuggled', async () => {
    const socket = await open();
    const attack =
      `POST /smuggle-outer HTTP/1.1\r\nHost: good.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n` +
      get('/smuggled-inner');
    const r = await exchange(socket, get('/fast-first') + attack, { timeoutMs: 5_000 });
    expect(r.closed).toBe(true);
    const list = responses(r.text);
    expect(list.map((x) => x.status)).toEqual([200, 400]);
    expect(JSON.parse(list[0]!.body).path).toBe('/fast-first');
    expect(upstreamSaw('/smuggle-outer')).toEqual([]);
    expect(upstreamSaw('/smuggled-inner')).toEqual([]);
    const line = await rig.airlock.waitForAudit((l) => l.kind === 'request' && l.status === 400 && /^HPE_/.test(l.detail ?? ''));
    expect(line).toMatchObject({ host: 'good.test', reason: 'bad_request', action: 'deny' });
  });

  it('a request head split at every byte still parses (the reader waits for the whole head)', async () => {
    await withTunnel(async (socket) => {
      const text = get('/bytewise', 'X-Trace: 1\r\n');
      let early = '';
      socket.on('data', (d: Buffer) => (early += d.toString('latin1')));
      for (const byte of text.slice(0, 30)) {
        socket.write(byte);
        await sleep(10);
      }
      await sleep(100);
      expect(early).toBe(''); // nothing answered for a partial head
      socket.removeAllListeners('data');
      const rest = await readResponses(socket, text.slice(30), 1);
      expect(JSON.parse(rest.list[0]!.body).path).toBe('/bytewise');
    });
  });
});

describe('kept-alive connections with nothing to do', () => {
  let quick: GuardedRig;
  beforeAll(async () => {
    quick = await startGuardedRig({ policy: POLICY, limits: { keepAliveTimeoutMs: 300, headersTimeoutMs: 2_000 } });
  });
  afterAll(() => quick?.close());

  it('close after the keep-alive timeout, without an answer of their own', async () => {
    const socket = await tunnelTls(quick.proxy, 'good.test:443', { ca: quick.bundle });
    const started = Date.now();
    const r = await exchange(socket, get('/then-idle'), { timeoutMs: 5_000 });
    expect(r.closed).toBe(true);
    expect(responses(r.text).map((x) => x.status)).toEqual([200]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
