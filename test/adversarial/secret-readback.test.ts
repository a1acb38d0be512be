// A hostile session that wants the real secret back from a bound upstream that reflects what it
// receives. Each case: the upstream records what arrived (the swap really happened), the client
// keeps everything it was given, and nothing it got holds the secret in any form the proxy
// writes, even after decoding, reassembling ranges or timing what it sees.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import { gunzipSync, gzipSync } from 'node:zlib';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type http from 'node:http';
import { createTestPki, isolatedGitEnv, rmTmp, runProcess, startAirlock, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { TunnelAgent } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory } from '../../src/credentials/sources.js';

// Characters that percent-encoding, JSON and base64 all treat differently.
const SECRET = 'ghs_Re4l/Secret+Value=0123456789abcdefXYZ';
const PLACEHOLDER = 'ghp_airlockReadbackPlaceholder00000000000';
const API_SECRET = 'sk-RealApiSecretValue0123456789abcdefQ';
const API_PLACEHOLDER = 'sk-ant-api03-airlock-readback-0000000000';

const POLICY = `
version: 1
name: readback
allow:
  - host: api.github.com
  - host: alias.example
credentials:
  - name: github
    env: [GH_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_GITHUB_TOKEN }
    hosts: [api.github.com]
    in: [header, basic, query, body]
    body: { types: [application/json, application/x-www-form-urlencoded], max_bytes: 65536 }
  - preset: anthropic
    placeholder: ${API_PLACEHOLDER}
    secret: { env: AIRLOCK_API_KEY }
    hosts: [api.github.com]
`;

/** Serves `body` honouring a single or multiple byte Range, as file servers and object stores do. */
function serveRanges(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
  const range = /^bytes=(.+)$/.exec(String(req.headers.range ?? ''));
  if (!range) {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Accept-Ranges': 'bytes' });
    res.end(body);
    return;
  }
  const parts = range[1]!.split(',').map((p) => p.trim().split('-').map(Number) as [number, number]);
  if (parts.length === 1) {
    const [a, b] = parts[0]!;
    res.writeHead(206, { 'Content-Type': 'text/plain', 'Content-Range': `bytes ${a}-${b}/${body.length}` });
    res.end(body.subarray(a, b + 1));
    return;
  }
  const boundary = 'BYTERANGES';
  const pieces = parts.map(([a, b]) => `--${boundary}\r\nContent-Range: bytes ${a}-${b}/${body.length}\r\n\r\n${body.subarray(a, b + 1).toString('latin1')}\r\n`);
  res.writeHead(206, { 'Content-Type': `multipart/byteranges; boundary=${boundary}` });
  res.end(Buffer.from(pieces.join('') + `--${boundary}--\r\n`, 'latin1'));
}

describe('reading the secret back through a reflecting bound upstream', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  let ca: string;
  const store = new Map<string, string>();
  const received: string[] = [];

  beforeAll(async () => {
    pki = await createTestPki();
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const url = new URL(req.url ?? '/', 'https://x');
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('latin1');
        received.push(JSON.stringify({ url: req.url, headers: req.headers, body }));
        const auth = String(req.headers.authorization ?? '');
        switch (url.pathname.startsWith('/reflect') ? '/reflect' : url.pathname) {
          case '/reflect': {
            if (url.pathname.endsWith('/info/refs') && !auth) {
              // git sends its credentials only after being asked.
              res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="reflect"' });
              res.end();
              return;
            }
            // What a debugging echo endpoint does: everything back, in headers and body, and a
            // redirect that carries the query along.
            const everything = Buffer.from(JSON.stringify({ url: req.url, headers: req.headers, body }));
            for (const [name, value] of Object.entries(req.headers)) res.setHeader(`x-echo-${name}`, String(value));
            res.setHeader('Location', `https://api.github.com/next${url.search}`);
            serveRanges(req, res, everything);
            return;
          }
          case '/auth':
            serveRanges(req, res, Buffer.from(auth));
            return;
          case '/header-name': {
            res.writeHead(200, { [`x-key-${String(req.headers['x-api-key'])}`]: '1', 'Content-Type': 'text/plain' });
            res.end('ok\n');
            return;
          }
          case '/store': {
            const key = url.searchParams.get('k') ?? '';
            if (req.method === 'PUT') {
              store.set(key, String(req.headers['x-meta'] ?? body));
              res.end('stored\n');
            } else {
              const value = Buffer.from(store.get(key) ?? '');
              serveRanges(req, res, url.searchParams.has('b64') ? Buffer.from(value.toString('base64')) : value);
            }
            return;
          }
          case '/stream': {
            // Reflects the session's own text without a line end, then ends the line later.
            res.writeHead(200, { 'Content-Type': 'text/event-stream' });
            res.write(`data: ${url.searchParams.get('g')}`);
            setTimeout(() => res.end('\n\n'), 400);
            return;
          }
          case '/double-gzip': {
            res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip' });
            res.end(gzipSync(gzipSync(Buffer.from(`token: ${auth}\n`))));
            return;
          }
          case '/partial': {
            // A server that answers 206 without being asked.
            res.writeHead(206, { 'Content-Type': 'text/plain', 'Content-Range': `bytes 7-14/${auth.length}` });
            res.end(auth.slice(7, 15));
            return;
          }
          default:
            res.writeHead(404);
            res.end();
        }
      });
    };
    upstream = await startHttpsUpstream({ pki, names: ['api.github.com', 'alias.example'], handler });
    airlock = await startAirlock({
      policy: POLICY,
      resolve: { 'api.github.com:443': upstream.port, 'alias.example:443': upstream.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET, AIRLOCK_API_KEY: API_SECRET }),
    });
    ca = readFileSync(airlock.bundlePath, 'utf8');
  });

  afterAll(async () => {
    await airlock?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  /** curl through the proxy: status, the body alone, and everything curl printed (headers too). */
  async function curl(args: string[]) {
    const dir = tmpDir();
    try {
      const r = await runProcess('curl', ['-sS', '--max-time', '10', '-D', join(dir, 'headers'), '-w', '\n%{http_code}', ...args], {
        env: { PATH: process.env.PATH, HTTPS_PROXY: airlock.proxyUrl, CURL_CA_BUNDLE: airlock.bundlePath },
      });
      const lines = r.stdout.split('\n');
      const status = Number(lines.pop());
      const body = lines.join('\n');
      const headers = existsSync(join(dir, 'headers')) ? readFileSync(join(dir, 'headers'), 'latin1') : '';
      return { status, body, all: headers + body + r.stderr };
    } finally {
      rmTmp(dir);
    }
  }

  const upstreamSawSecret = () => received.some((r) => r.includes(SECRET) || r.includes(encodeURIComponent(SECRET)) || r.includes(Buffer.from(`x-access-token:${SECRET}`).toString('base64')));

  it('Basic credentials (git-style x-access-token) echoed in headers and body come back without the secret', async () => {
    const r = await curl(['-u', `x-access-token:${PLACEHOLDER}`, 'https://api.github.com/reflect']);
    expect(r.status).toBe(200);
    expect(upstreamSawSecret()).toBe(true);
    expect(secretLeaks(r.all, SECRET)).toEqual([]);
    // The echo reads as what the session sent.
    expect(r.all).toContain(Buffer.from(`x-access-token:${PLACEHOLDER}`).toString('base64'));
  });

  it('a real git client tracing the responses of a reflecting server sees no secret', async () => {
    const home = tmpDir();
    try {
      const r = await runProcess('git', ['ls-remote', `https://x-access-token:${PLACEHOLDER}@api.github.com/reflect`], {
        env: isolatedGitEnv(home, { HTTPS_PROXY: airlock.proxyUrl, GIT_SSL_CAINFO: airlock.bundlePath, GIT_TRACE_CURL: '1', GIT_TRACE_CURL_NO_DATA: '1' }),
        timeoutMs: 30_000,
      });
      // The server's reflected headers are in git's trace (it only hides the request's own).
      expect(r.stderr).toMatch(/x-echo-authorization: Basic /i);
      expect(secretLeaks(r.stdout + r.stderr, SECRET)).toEqual([]);
    } finally {
      rmTmp(home);
    }
  });

  it('a query swap echoed in a redirect Location and the body comes back without the secret', async () => {
    const r = await curl([`https://api.github.com/reflect?access_token=${PLACEHOLDER}&x=1`]);
    expect(r.status).toBe(200);
    expect(received.at(-1)).toContain(encodeURIComponent(SECRET));
    expect(r.all).toMatch(/location: https:\/\/api\.github\.com\/next\?access_token=/i);
    expect(secretLeaks(r.all, SECRET)).toEqual([]);
  });

  it('form and JSON body swaps echoed back come back without the secret', async () => {
    const form = await curl(['--data', `token=${PLACEHOLDER}&a=b`, 'https://api.github.com/reflect']);
    expect(received.at(-1)).toContain(encodeURIComponent(SECRET));
    const json = await curl(['-H', 'Content-Type: application/json', '--data', JSON.stringify({ t: PLACEHOLDER }), 'https://api.github.com/reflect']);
    expect(received.at(-1)).toContain(SECRET.replace(/\//g, '/'));
    expect(secretLeaks(form.all, SECRET)).toEqual([]);
    expect(secretLeaks(json.all, SECRET)).toEqual([]);
  });

  it('a response header named after the secret does not reach the session', async () => {
    const r = await curl(['-H', `x-api-key: ${API_PLACEHOLDER}`, 'https://api.github.com/header-name']);
    expect(r.status).toBe(200);
    expect(received.at(-1)).toContain(API_SECRET);
    expect(secretLeaks(r.all, API_SECRET)).toEqual([]);
  });

  it('byte ranges shorter than the secret, one per request, do not reassemble into it', async () => {
    let assembled = '';
    for (let at = 0; at < 400; at += 8) {
      const r = await curl(['-r', `${at}-${at + 7}`, '-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/reflect']);
      assembled += r.body;
      expect(secretLeaks(r.all, SECRET, 12)).toEqual([]);
    }
    // Whatever came back, the pieces in order hold no secret either.
    expect(assembled.length).toBeGreaterThan(100);
    expect(secretLeaks(assembled, SECRET)).toEqual([]);
    expect(upstreamSawSecret()).toBe(true);
  });

  it('a multipart/byteranges answer cannot slice the secret past the scrubber', async () => {
    const ranges = Array.from({ length: 12 }, (_, i) => `${i * 5}-${i * 5 + 4}`).join(',');
    const r = await curl(['-r', ranges, '-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/auth']);
    const joined = r.body.replace(/--BYTERANGES[^]*?\r?\n\r?\n/g, '').replace(/\r?\n/g, '');
    expect(secretLeaks(r.all, SECRET, 12)).toEqual([]);
    expect(secretLeaks(joined, SECRET)).toEqual([]);
  });

  it('an unasked-for 206 from a bound host is refused', async () => {
    const r = await curl(['-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/partial']);
    expect(r.status).toBe(502);
    expect(secretLeaks(r.all, SECRET, 6)).toEqual([]);
  });

  it('the secret cannot be stored through an arbitrary header and read back (base64, ranges, an unbound alias)', async () => {
    const put = await curl(['-X', 'PUT', '-H', `X-Meta: ${PLACEHOLDER}`, 'https://api.github.com/store?k=meta']);
    expect(put.status).toBe(403);
    expect(put.all).toContain('credential_misuse');
    expect(store.get('meta') ?? '').not.toContain(SECRET);
    const reads = await Promise.all([
      curl(['https://api.github.com/store?k=meta&b64']),
      curl(['-r', '0-9', 'https://api.github.com/store?k=meta']),
      curl(['https://alias.example/store?k=meta']),
      curl(['https://alias.example/store?k=meta&b64']),
    ]);
    for (const r of reads) expect(secretLeaks(r.all, SECRET, 10)).toEqual([]);
    const line = await airlock.waitForAudit((l) => l.path === '/store?k=redacted' && l.method === 'PUT');
    expect(line).toMatchObject({ action: 'deny', reason: 'credential_misuse' });
  });

  it('what the proxy holds back does not depend on the secret (no timing oracle on a reflected guess)', async () => {
    const agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca });
    /** Milliseconds until the reflected guess itself reached the client. */
    const firstSight = (guess: string) =>
      new Promise<number>((resolve, reject) => {
        const started = Date.now();
        const req = https.get(`https://api.github.com/stream?g=${encodeURIComponent(guess)}`, { agent }, (res) => {
          let seen = '';
          res.on('data', (c: Buffer) => {
            seen += c.toString('latin1');
            if (seen.includes(guess)) resolve(Date.now() - started);
          });
          res.on('end', () => reject(new Error(`guess never seen: ${JSON.stringify(seen)}`)));
        });
        req.on('error', reject);
      });
    const right = SECRET.slice(0, 10);
    const wrong = 'ghs_Xq7zPm';
    const times: { right: number; wrong: number }[] = [];
    for (let i = 0; i < 3; i++) times.push({ right: await firstSight(right), wrong: await firstSight(wrong) });
    // Either both are held until the line ends (~400 ms) or both pass at once: the same answer
    // for a right and a wrong guess.
    for (const t of times) expect(t.right >= 300, JSON.stringify(times)).toBe(t.wrong >= 300);
  });

  it('a body compressed twice under one Content-Encoding is refused, not passed on compressed', async () => {
    const dir = tmpDir();
    const out = `${dir}/body`;
    await runProcess('curl', ['-sS', '--max-time', '10', '-o', out, '-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/double-gzip'], {
      env: { PATH: process.env.PATH, HTTPS_PROXY: airlock.proxyUrl, CURL_CA_BUNDLE: airlock.bundlePath },
    });
    const got = existsSync(out) ? readFileSync(out) : Buffer.alloc(0);
    rmTmp(dir);
    let inner = '';
    try {
      inner = gunzipSync(got).toString('latin1');
    } catch {
      // not gzip: fine
    }
    expect(secretLeaks(got.toString('latin1') + inner, SECRET)).toEqual([]);
    const line = await airlock.waitForAudit((l) => l.path === '/double-gzip');
    expect(line.reason).toBe('upstream_error');
  });
});
