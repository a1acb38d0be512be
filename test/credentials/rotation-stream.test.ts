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
import { openTunnelTls } from '../helpers/clients.js';
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

beforeAll(async () => {
  pki = await createTestPki();
  dir = tmpDir();
  secretFile = join(dir, 'token');
  writeFileSync(secretFile, FIRST + '\n');
  upstream = await startHttpsUpstream({
    pki,
    names: ['api.github.com'],
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
