// The tunnel fast path's head reader: what it accepts it must read exactly as Node's parser does
// (checked against a real Node server, byte for byte, on a seeded stream of mutated heads), and
// everything doubtful must be left to Node (null).
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRequestHead } from '../../../src/proxy/http1/request-head.js';

function parse(text: string) {
  const buf = Buffer.from(text, 'latin1');
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) throw new Error('test head has no end');
  return parseRequestHead(buf, end);
}

const BASE = 'GET /path?q=1 HTTP/1.1\r\nHost: api.github.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n';

describe('parseRequestHead: accepted heads', () => {
  it('reads method, target, headers in order with their case, and the head length', () => {
    const head = parse(BASE + 'next');
    expect(head).toMatchObject({
      method: 'GET',
      url: '/path?q=1',
      rawHeaders: ['Host', 'api.github.com', 'User-Agent', 't', 'Accept', '*/*'],
      headers: { host: 'api.github.com' },
      contentLength: 0,
      close: false,
      headBytes: BASE.length,
    });
  });

  it('trims the whitespace after the colon; reads Content-Length and Connection: close', () => {
    const head = parse('POST /u HTTP/1.1\r\nHost:\t x.test\r\ncontent-length: 12\r\nConnection: keep-alive, close\r\n\r\n');
    expect(head).toMatchObject({ method: 'POST', contentLength: 12, close: true, headers: { host: 'x.test', 'content-length': '12' } });
    expect(head!.rawHeaders).toEqual(['Host', 'x.test', 'content-length', '12', 'Connection', 'keep-alive, close']);
  });

  it('keeps repeated ordinary headers (they are forwarded as sent)', () => {
    expect(parse('GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n')!.rawHeaders).toEqual(['Host', 'a', 'Cookie', 'a=1', 'Cookie', 'b=2']);
  });
});

describe('parseRequestHead: left to Node (null)', () => {
  const CASES: Record<string, string> = {
    'Transfer-Encoding': 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n',
    'Upgrade': 'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    'Connection: upgrade alone': 'GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n',
    'Expect: 100-continue': 'PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n',
    'TE': 'GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n',
    'two Content-Lengths (even equal)': 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n',
    'Content-Length +1': 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n',
    'Content-Length with a leading zero': 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 01\r\n\r\n',
    'Content-Length list': 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n',
    'two Host headers': 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
    'two Connection headers': 'GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n',
    'obs-fold': 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n',
    'space before the colon': 'GET / HTTP/1.1\r\nHost : a\r\n\r\n',
    'empty header name': 'GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n',
    'line without a colon': 'GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n',
    'bare LF in a value': 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\nX-B: 2\r\n\r\n',
    'bare CR in a value': 'GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n',
    'NUL in a value': 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n',
    'obs-text in a value': 'GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9\r\n\r\n',
    'trailing whitespace in a value': 'GET / HTTP/1.1\r\nHost: a \r\n\r\n',
    'HTTP/1.0': 'GET / HTTP/1.0\r\nHost: a\r\n\r\n',
    'HTTP/2.0 in the request line': 'GET / HTTP/2.0\r\nHost: a\r\n\r\n',
    'absolute-form target': 'GET https://a/ HTTP/1.1\r\nHost: a\r\n\r\n',
    'asterisk-form target': 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
    'fragment in the target': 'GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n',
    'two spaces in the request line': 'GET /  HTTP/1.1\r\nHost: a\r\n\r\n',
    'lower-case method': 'get / HTTP/1.1\r\nHost: a\r\n\r\n',
    'CONNECT': 'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n',
    'an unusual method': 'PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n',
    'a leading empty line': '\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n',
    '101 headers': 'GET / HTTP/1.1\r\n' + Array.from({ length: 101 }, (_, i) => `X-${i}: v\r\n`).join('') + '\r\n',
  };
  for (const [name, text] of Object.entries(CASES)) {
    it(name, () => expect(parse(text)).toBeNull());
  }
});

// ---- differential: every head the fast path accepts, Node's own parser reads the same way

interface NodeView {
  method?: string;
  url?: string;
  rawHeaders?: string[];
  error?: string;
}

let server: http.Server;
let port: number;
const seen = new Map<string, (view: NodeView) => void>();

beforeAll(async () => {
  // The inner server's settings in the proxy.
  // A missing Host is not a parse difference (both paths refuse it with 400), so Node's own check is off here.
  server = http.createServer({ insecureHTTPParser: false, maxHeaderSize: 32 * 1024, requireHostHeader: false }, (req, res) => {
    seen.get(req.headers['x-case'] as string)?.({ method: req.method, url: req.url, rawHeaders: req.rawHeaders });
    res.end();
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const id = (socket as net.Socket & { caseId?: string }).caseId;
    if (id) seen.get(id)?.({ error: err.code });
    socket.destroy();
  });
  server.on('connection', (socket: net.Socket & { caseId?: string }) => {
    socket.once('data', (d: Buffer) => (socket.caseId = /X-Case: (c\d+)/.exec(d.toString('latin1'))?.[1]));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function nodeReads(id: string, bytes: Buffer): Promise<NodeView> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ error: 'no answer' }), 2_000);
    seen.set(id, (view) => {
      clearTimeout(timer);
      resolve(view);
    });
    const socket = net.connect(port, '127.0.0.1', () => socket.end(bytes));
    socket.on('error', () => {});
    socket.resume();
  });
}

/** A small seeded generator (mulberry32), so a failure can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING = [' ', '\t', ':', '\r', '\n', '\x00', '\x7f', '\x80', '\xff', ',', '"', '/', '?', '#', 'a', 'Z', '0', '-', '\x0b', '\x0c'];

describe('parseRequestHead agrees with Node on every head it accepts', () => {
  it('400 seeded mutants of ordinary heads: accepted ones parse identically in Node, and none Node refuses', async () => {
    const random = rng(20261123);
    const base = [
      'GET /repos/o/r?per_page=100 HTTP/1.1\r\nHost: api.github.com\r\nAuthorization: Bearer airlock-github\r\nAccept: application/json\r\n',
      'POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: keep-alive\r\n',
    ];
    let accepted = 0;
    for (let i = 0; i < 400; i++) {
      const id = `c${i}`;
      let text = base[i % base.length]!;
      const edits = 1 + Math.floor(random() * 3);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(random() * text.length);
        const ch = INTERESTING[Math.floor(random() * INTERESTING.length)]!;
        text = random() < 0.5 ? text.slice(0, at) + ch + text.slice(at) : text.slice(0, at) + ch + text.slice(at + 1);
      }
      const full = `${text}X-Case: ${id}\r\n\r\n`;
      const bytes = Buffer.from(full, 'latin1');
      const end = bytes.indexOf('\r\n\r\n');
      const ours = parseRequestHead(bytes, end);
      if (!ours || end + 4 !== bytes.length) continue;
      accepted++;
      const node = await nodeReads(id, bytes);
      expect({ case: JSON.stringify(full), ...node }).toEqual({ case: JSON.stringify(full), method: ours.method, url: ours.url, rawHeaders: ours.rawHeaders });
    }
    // The mutants must exercise both sides: some accepted, most refused.
    expect(accepted).toBeGreaterThan(40);
    expect(accepted).toBeLessThan(400);
  }, 60_000);
});
