// Streaming through the real proxy: server-sent events arrive while the upstream is still sending,
// a client that leaves makes the proxy drop the upstream request, and large bodies pass intact in
// both directions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { openTunnelTls } from '../helpers/clients.js';

const BIG = randomBytes(8 * 1024 * 1024);
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');

interface Held {
  res: http.ServerResponse;
  reqClosedAt: number | null;
  resClosedAt: number | null;
}
const held: Record<string, Held> = {};

function holdingHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path === '/events' || path === '/hang') {
    const entry: Held = { res, reqClosedAt: null, resClosedAt: null };
    held[path] = entry;
    req.on('close', () => (entry.reqClosedAt = Date.now()));
    res.on('close', () => (entry.resClosedAt = Date.now()));
    if (path === '/events') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      res.write('event: greeting\ndata: first\n\n');
    }
    return; // held open: never ended by the server
  }
  if (path === '/upload') {
    const hash = createHash('sha256');
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      hash.update(c);
    });
    req.on('end', () => {
      const body = JSON.stringify({ size, sha256: hash.digest('hex') });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  if (path === '/download') {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' }); // chunked, no length
    res.end(BIG);
    return;
  }
  res.writeHead(404);
  res.end();
}

let pki: TestPki;
let upstream: TestUpstream;
let airlock: AirlockHandle;
let bundle: string;

beforeAll(async () => {
  pki = await createTestPki();
  upstream = await startHttpsUpstream({ pki, names: ['stream.example.com'], handler: holdingHandler });
  airlock = await startAirlock({
    policy: 'version: 1\nname: streaming\nallow:\n  - host: stream.example.com\n',
    resolve: { 'stream.example.com:443': upstream.port },
    upstreamCa: [pki.caPem],
  });
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  for (const h of Object.values(held)) h.res.destroy();
  await airlock?.close();
  await upstream?.close();
  rmTmp(pki?.dir);
});

/** Starts a request through a fresh tunnel and resolves with the response as soon as headers arrive. */
async function start(method: string, path: string, body?: Buffer): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  const tls = await openTunnelTls({
    proxyPort: airlock.port,
    proxyAuthorization: airlock.proxyAuthorization,
    target: 'stream.example.com:443',
    servername: 'stream.example.com',
    ca: bundle,
  });
  return await new Promise((resolve, reject) => {
    const req = https.request({ host: 'stream.example.com', defaultPort: 443, method, path, createConnection: () => tls });
    req.once('error', reject);
    req.once('response', (res) => resolve({ req, res }));
    req.end(body);
  });
}

describe('server-sent events', () => {
  it('the first event reaches the client while the upstream response is still open', async () => {
    const { req, res } = await start('GET', '/events');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    const first = await new Promise<string>((resolve, reject) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        if (text.includes('\n\n')) resolve(text);
      });
      res.on('error', reject);
      setTimeout(() => reject(new Error(`no event within 5 s; got ${JSON.stringify(text)}`)), 5_000).unref();
    });
    expect(first).toBe('event: greeting\ndata: first\n\n');
    // The upstream has not finished: the event was relayed as it was written, not buffered.
    const upstreamSide = held['/events']!;
    expect(upstreamSide.res.writableEnded).toBe(false);
    expect(upstreamSide.resClosedAt).toBeNull();

    // A second event written later also arrives.
    const second = new Promise<string>((resolve) => res.once('data', (c: string) => resolve(c)));
    upstreamSide.res.write('data: second\n\n');
    expect(await second).toBe('data: second\n\n');

    // Client leaves: the proxy must abort the upstream request, not keep it streaming.
    const abortedAt = Date.now();
    req.destroy();
    await waitFor(() => upstreamSide.resClosedAt !== null && upstreamSide.reqClosedAt !== null, 3_000, 'upstream request to close');
    expect(upstreamSide.resClosedAt! - abortedAt).toBeLessThan(3_000);
    expect(upstreamSide.res.writableFinished).toBe(false); // closed under it, never ended

    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.path === '/events');
    expect(line).toMatchObject({ status: 200, action: 'allow', reason: 'allowed', detail: 'client_closed' });
    expect(line.bytes_down).toBeGreaterThan('event: greeting\ndata: first\n\ndata: second\n\n'.length);
  });

  it('a client that leaves before the upstream answers makes the proxy drop the upstream request', async () => {
    const tls = await openTunnelTls({
      proxyPort: airlock.port,
      proxyAuthorization: airlock.proxyAuthorization,
      target: 'stream.example.com:443',
      servername: 'stream.example.com',
      ca: bundle,
    });
    const req = https.request({ host: 'stream.example.com', defaultPort: 443, path: '/hang', createConnection: () => tls });
    req.on('error', () => {});
    req.end();
    const upstreamSide = await waitFor(() => held['/hang'], 3_000, 'upstream to receive /hang');
    req.destroy();
    await waitFor(() => upstreamSide.resClosedAt !== null, 3_000, 'upstream request to close');
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.path === '/hang');
    // No response was ever sent: the audit line must not claim a 200.
    expect(line.status).toBe(499);
    expect(line.detail).toBe('client_closed');
  });
});

describe('large bodies', () => {
  it('an 8 MiB upload arrives intact and is counted in bytes_up', async () => {
    const { res } = await start('POST', '/upload', BIG);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(Buffer.concat(chunks).toString())).toEqual({ size: BIG.length, sha256: BIG_SHA });
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.path === '/upload');
    expect(line.bytes_up).toBe(BIG.length);
  });

  it('an 8 MiB chunked download arrives intact and is counted in bytes_down', async () => {
    const { res } = await start('GET', '/download');
    const hash = createHash('sha256');
    let size = 0;
    for await (const c of res) {
      size += (c as Buffer).length;
      hash.update(c as Buffer);
    }
    expect(size).toBe(BIG.length);
    expect(hash.digest('hex')).toBe(BIG_SHA);
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.path === '/download');
    expect(line.bytes_down).toBeGreaterThanOrEqual(BIG.length);
  });
});
