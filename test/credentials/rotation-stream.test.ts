// A secret that rotates while a response from its host is still streaming: an upstream that
// reflects one request into another's open response (a request log, a pub/sub stream) must not
// get the new value to the session through the older response. Real TLS, a real file secret the
// test rewrites, the proxy's own scrubbing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGzip, constants } from 'node:zlib';
import type { Gzip } from 'node:zlib';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import WebSocket, { WebSocketServer } from 'ws';
import { TunnelAgent, openTunnelTls } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory } from '../../src/credentials/sources.js';

const PLACEHOLDER = 'ghp_airlockRotationPlaceholder000000000000';
const FIRST = 'ghp_FirstRealValueBeforeRotation00000000';
const SECOND = 'ghp_SecondRealValueAfterRotation/Zz9876543210';

let pki: TestPki;
let upstream: TestUpstream;
let airlock: AirlockHandle;
let dir: string;
let secretFile: string;
/** The open stream the next /post request is reflected into. */
let stream: { write(text: string): void; end(): void } | null = null;
/** Open WebSockets, which the next /post request is reflected into too. */
const sockets = new Set<WebSocket>();

beforeAll(async () => {
  pki = await createTestPki();
  dir = tmpDir();
  secretFile = join(dir, 'token');
  writeFileSync(secretFile, FIRST + '\n');
  const wss = new WebSocketServer({ noServer: true });
  upstream = await startHttpsUpstream({
    pki,
    names: ['api.github.com'],
    onUpgrade: (req, socket, head) =>
      wss.handleUpgrade(req, socket, head, (ws) => {
        sockets.add(ws);
        ws.on('close', () => sockets.delete(ws));
        ws.send('open');
      }),
    handler: (req, res) => {
      if (req.url?.startsWith('/stream')) {
        const gzip = req.url.endsWith('gzip');
        res.writeHead(200, { 'content-type': 'text/plain', ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
        let z: Gzip | null = null;
        if (gzip) {
          z = createGzip({ flush: constants.Z_SYNC_FLUSH });
          z.pipe(res);
        }
        const out = z ?? res;
        stream = { write: (text) => out.write(text), end: () => out.end() };
        stream.write('open\n');
        return;
      }
      // A request reflected into the open stream, as a request log or pub/sub service would.
      stream?.write(`seen: ${String(req.headers.authorization)}\n`);
      for (const ws of sockets) ws.send(`seen: ${String(req.headers.authorization)}`);
      stream?.end();
      stream = null;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' });
      res.end('ok\n');
    },
  });
  airlock = await startAirlock({
    policy: `version: 1
name: rotation-stream
allow:
  - host: api.github.com
credentials:
  - name: github
    env: [GH_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { file: ${secretFile} }
    hosts: [api.github.com]
`,
    resolve: { 'api.github.com:443': upstream.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({}),
  });
});

afterAll(async () => {
  await airlock?.close();
  await upstream?.close();
  rmTmp(pki?.dir, dir);
});

/** A request through its own tunnel; `onData` sees the body as it streams in. */
async function get(path: string, onData?: (soFar: string) => void): Promise<{ status: number; body: string }> {
  const socket = await openTunnelTls({
    proxyPort: airlock.port,
    proxyAuthorization: airlock.proxyAuthorization,
    target: 'api.github.com:443',
    servername: 'api.github.com',
    ca: readFileSync(airlock.bundlePath, 'utf8'),
  });
  try {
    return await new Promise((resolve, reject) => {
      const req = http.request(
        { createConnection: () => socket, path, headers: { host: 'api.github.com', authorization: `Bearer ${PLACEHOLDER}` } },
        (res) => {
          let body = '';
          res.setEncoding('latin1');
          res.on('data', (c: string) => {
            body += c;
            onData?.(body);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
  } finally {
    socket.destroy();
  }
}

describe('a secret rotated while a response from its host streams', () => {
  it.each(['identity', 'gzip'])('(%s) the new value reflected into the older response is scrubbed', async (coding) => {
    writeFileSync(secretFile, FIRST + '\n');
    let opened = false;
    const streaming = get(`/stream-${coding}`, (soFar) => (opened ||= soFar.includes('open')));
    await waitFor(() => opened && stream !== null);
    // The secret rotates on the host (a new token written to the file) after the stream began.
    const second = `${SECOND}-${coding}`;
    writeFileSync(secretFile, second + '\n');
    const later = new Date(Date.now() + 5000);
    utimesSync(secretFile, later, later);
    const post = await get('/post');
    expect(post.status).toBe(200);
    // The upstream did get the new value: the reflection below is of a real secret.
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${second}`);
    const { body } = await streaming;
    expect(body).toContain('seen: Bearer ');
    expect(secretLeaks(body, second)).toEqual([]);
    expect(secretLeaks(body, FIRST)).toEqual([]);
    expect(body).toContain(`seen: Bearer ${PLACEHOLDER}`);
  });
});

describe('a secret rotated while a WebSocket to its host is open', () => {
  it('the new value reflected into a message is scrubbed', async () => {
    writeFileSync(secretFile, FIRST + '\n');
    const agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca: readFileSync(airlock.bundlePath, 'utf8') });
    const ws = new WebSocket('wss://api.github.com/socket', { agent, headers: { Authorization: `Bearer ${PLACEHOLDER}` }, perMessageDeflate: false });
    const messages: string[] = [];
    ws.on('message', (data) => messages.push(String(data)));
    await waitFor(() => messages.includes('open'));
    const second = `${SECOND}-websocket`;
    writeFileSync(secretFile, second + '\n');
    const later = new Date(Date.now() + 10_000);
    utimesSync(secretFile, later, later);
    expect((await get('/post')).status).toBe(200);
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${second}`);
    await waitFor(() => messages.some((m) => m.startsWith('seen: ')));
    ws.close();
    const text = messages.join('\n');
    expect(secretLeaks(text, second)).toEqual([]);
    expect(text).toContain(`seen: Bearer ${PLACEHOLDER}`);
  });
});
