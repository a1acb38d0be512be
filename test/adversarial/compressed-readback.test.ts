// A hostile session that wants the real token back from a bound registry that echoes the request
// into compressed answers: a gzip-encoded body, a gzip body inside a gzip Content-Encoding (a
// .tgz as Verdaccio sends it), Content-Encoding headers that are duplicated, listed or wrong, cut-off
// streams and a compression bomb. Whatever it receives is decoded every way it could be (gzip,
// zlib, brotli, nested, cut-off streams included) and searched for the secret in every form the
// proxy writes; the proxy keeps serving this and another session throughout.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import { brotliCompressSync, brotliDecompressSync, constants, createGzip, deflateSync, gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import type http from 'node:http';
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { basicAuth, TunnelAgent } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { parsePolicy } from '../../src/policy/index.js';
import { proxyUrl } from '../../src/sessions/registry.js';
import { INNER_FREE } from '../../src/credentials/compressed-body.js';

const SECRET = 'npm_Re4l/Registry+Token=0123456789abcdefXY';
const PLACEHOLDER = 'npm_airlock-npm-compressedreadback00000';
const HOST = 'registry.example.test';

const POLICY = `
version: 1
name: compressed-readback
allow:
  - host: ${HOST}
credentials:
  - preset: npm
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_NPM_TOKEN }
    hosts: [${HOST}]
    # Basic too, so the proxy writes (and the scrubber looks for) base64 forms of the token.
    in: [header, basic]
`;

/** Lines shaped like a package's files, with `echo` on line `at`. */
function files(lines: number, echo: string, at: number): Buffer {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) out.push(i === at ? `// request: ${echo}` : `exports.f${i} = (a) => a * ${i}; // ${(i * 2654435761) % 4294967296}`);
  return Buffer.from(out.join('\n') + '\n');
}

/** Streams `body` gzip-encoded (chunked, no length), as a compression middleware does. */
function gzipEncoded(res: http.ServerResponse, body: Buffer, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip', ...headers });
  const gz = createGzip();
  gz.pipe(res);
  for (let i = 0; i < body.length; i += 16 * 1024) gz.write(body.subarray(i, i + 16 * 1024));
  gz.end();
}

/** Every way a session could read `data`: as is, and gzip/zlib/brotli-decoded, nested, cut-off streams too. */
function readings(data: Buffer, depth = 0): string[] {
  const out = [data.toString('latin1')];
  if (depth >= 3 || data.length === 0) return out;
  const decoders = [
    () => gunzipSync(data, { finishFlush: constants.Z_SYNC_FLUSH }),
    () => inflateSync(data, { finishFlush: constants.Z_SYNC_FLUSH }),
    () => brotliDecompressSync(data),
  ];
  for (const decode of decoders) {
    try {
      out.push(...readings(decode(), depth + 1));
    } catch {
      // not this encoding
    }
  }
  return out;
}

interface Got {
  readonly status: number;
  readonly head: string;
  readonly body: Buffer;
  /** The body arrived whole (not cut off). */
  readonly complete: boolean;
}

describe('reading the secret back through compressed answers of a bound upstream', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  let ca: string;
  let bomb: Buffer;
  const logLines: string[] = [];

  beforeAll(async () => {
    pki = await createTestPki();
    // A gzip stream that decodes to more zeros than the proxy will search.
    bomb = await new Promise<Buffer>((resolve) => {
      const gz = createGzip({ level: 1 });
      const parts: Buffer[] = [];
      gz.on('data', (c: Buffer) => parts.push(c));
      gz.on('end', () => resolve(Buffer.concat(parts)));
      const zeros = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < INNER_FREE / zeros.length + 200; i++) gz.write(zeros);
      gz.end();
    });
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      req.resume();
      const path = new URL(req.url ?? '/', 'https://x').pathname;
      const auth = String(req.headers.authorization ?? '');
      const echo = Buffer.from(`{"authorization":"${auth}"}\n`);
      switch (path) {
        case '/gzip-echo':
          return gzipEncoded(res, echo);
        case '/tgz-echo':
          return gzipEncoded(res, gzipSync(files(200, auth, 100)));
        case '/tgz-echo-late':
          return gzipEncoded(res, gzipSync(files(40_000, auth, 35_000)));
        case '/tgz-clean':
          return gzipEncoded(res, gzipSync(files(40_000, 'nothing here', 35_000)));
        case '/tgz-echo-stored':
          return gzipEncoded(res, gzipSync(files(50, auth, 25), { level: 0 }));
        case '/tgz-echo-base64':
          return gzipEncoded(res, gzipSync(files(200, Buffer.from(`_auth=${auth.slice(7)}`).toString('base64'), 100)));
        case '/tgz-echo-br':
        case '/tgz-clean-br':
        case '/tgz-echo-deflate':
        case '/tgz-clean-deflate': {
          // The same .tgz under the other codings the proxy decodes.
          const tgz = gzipSync(files(2000, path.includes('echo') ? auth : 'nothing here', 1000));
          const br = path.endsWith('-br');
          res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Encoding': br ? 'br' : 'deflate' });
          res.end(br ? brotliCompressSync(tgz) : deflateSync(tgz));
          return;
        }
        case '/duplicate-ce':
          // Two Content-Encoding headers: two codings applied, whichever one the proxy took.
          res.writeHead(200, [['Content-Type', 'text/plain'], ['Content-Encoding', 'gzip'], ['Content-Encoding', 'gzip']]);
          res.end(gzipSync(gzipSync(echo)));
          return;
        case '/listed-ce':
          res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip, gzip' });
          res.end(gzipSync(gzipSync(echo)));
          return;
        case '/br-says-gzip':
          res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'br' });
          res.end(gzipSync(echo));
          return;
        case '/gzip-says-plain':
          res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip' });
          res.end(echo);
          return;
        case '/identity-and-gzip':
          res.writeHead(200, [['Content-Type', 'text/plain'], ['Content-Encoding', 'identity'], ['Content-Encoding', 'gzip']]);
          res.end(gzipSync(gzipSync(echo)));
          return;
        case '/outer-cut': {
          // The Content-Encoding stream ends in the middle of the echoed secret.
          const full = gzipSync(gzipSync(files(2000, auth, 1000)));
          res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip' });
          res.end(full.subarray(0, Math.floor(full.length / 2)));
          return;
        }
        case '/inner-cut': {
          // Complete Content-Encoding around a .tgz cut just after the secret begins.
          const text = files(2000, auth, 1000);
          const inner = gzipSync(text, { level: 0 });
          const at = inner.indexOf(Buffer.from(SECRET.slice(0, 6))) + 8;
          return gzipEncoded(res, inner.subarray(0, at));
        }
        // Streams joined so the echo sits where a decoder might stop reading.
        case '/tgz-second-member':
          return gzipEncoded(res, Buffer.concat([gzipSync(files(200, 'nothing here', 100)), gzipSync(files(200, auth, 100))]));
        case '/tgz-zero-then-member':
          return gzipEncoded(res, Buffer.concat([gzipSync(files(200, 'nothing here', 100)), Buffer.alloc(1), gzipSync(files(200, auth, 100))]));
        case '/zlib-then-zlib':
          return gzipEncoded(res, Buffer.concat([deflateSync(files(200, 'nothing here', 100)), deflateSync(files(200, auth, 100))]));
        case '/zlib-dictionary':
          return gzipEncoded(res, deflateSync(files(200, 'see dictionary', 100), { dictionary: Buffer.from(`request: ${auth}`) }));
        case '/bomb':
          return gzipEncoded(res, bomb);
        default:
          res.writeHead(404);
          res.end();
      }
    };
    upstream = await startHttpsUpstream({ pki, names: [HOST], handler });
    airlock = await startAirlock({
      policy: POLICY,
      resolve: { [`${HOST}:443`]: upstream.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_NPM_TOKEN: SECRET }),
      log: pino({ level: 'debug' }, { write: (line: string) => logLines.push(line) }),
    });
    ca = readFileSync(airlock.bundlePath, 'utf8');
  }, 60_000);

  afterAll(async () => {
    await airlock?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  /** GETs `path` with the placeholder as an npm client sends it, keeping every byte received. */
  function get(path: string, via: { proxyAuthorization: string; ca: string } = { proxyAuthorization: airlock.proxyAuthorization, ca }): Promise<Got> {
    const agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: via.proxyAuthorization, ca: via.ca });
    return new Promise((resolve, reject) => {
      const req = https.get(`https://${HOST}${path}`, { agent, headers: { authorization: `Bearer ${PLACEHOLDER}`, 'accept-encoding': 'gzip' } }, (res) => {
        const parts: Buffer[] = [];
        const head = `${res.statusCode}\n${res.rawHeaders.join('\n')}`;
        const done = (complete: boolean) => resolve({ status: res.statusCode ?? 0, head, body: Buffer.concat(parts), complete });
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => done(res.complete));
        res.on('error', () => done(false));
        res.on('aborted', () => done(false));
      });
      req.on('error', reject);
      req.setTimeout(30_000, () => req.destroy(new Error(`timed out: ${path}`)));
    });
  }

  const leaks = (g: Got) => secretLeaks([g.head, ...readings(g.body)].join('\n'), SECRET, 8);
  const upstreamSawSecret = () => upstream.requests.some((r) => r.headers.authorization === `Bearer ${SECRET}`);

  it('a gzip-encoded echo comes back decoded, with the placeholder', async () => {
    const g = await get('/gzip-echo');
    expect(g.status).toBe(200);
    expect(upstreamSawSecret()).toBe(true);
    expect(g.body.toString()).toBe(`{"authorization":"Bearer ${PLACEHOLDER}"}\n`);
    expect(g.head.toLowerCase()).not.toContain('content-encoding');
    expect(leaks(g)).toEqual([]);
  });

  it('a clean .tgz under Content-Encoding: gzip arrives as the .tgz, complete and unchanged', async () => {
    const g = await get('/tgz-clean');
    expect(g.status).toBe(200);
    expect(g.complete).toBe(true);
    expect(g.head.toLowerCase()).not.toContain('content-encoding');
    expect(gunzipSync(g.body).equals(files(40_000, 'nothing here', 35_000))).toBe(true);
  });

  it('a clean .tgz under Content-Encoding: br or deflate arrives as the .tgz too', async () => {
    for (const path of ['/tgz-clean-br', '/tgz-clean-deflate']) {
      const g = await get(path);
      expect(g.status).toBe(200);
      expect(g.complete).toBe(true);
      expect(gunzipSync(g.body).equals(files(2000, 'nothing here', 1000))).toBe(true);
    }
  });

  for (const [path, what] of [
    ['/tgz-echo', 'the echo inside a .tgz under Content-Encoding: gzip'],
    ['/tgz-echo-br', 'the echo inside a .tgz under Content-Encoding: br'],
    ['/tgz-echo-deflate', 'the echo inside a .tgz under Content-Encoding: deflate'],
    ['/tgz-echo-stored', 'the echo in a stored (uncompressed) block of the .tgz'],
    ['/tgz-echo-base64', 'the echo base64-encoded inside the .tgz'],
    ['/duplicate-ce', 'two Content-Encoding: gzip headers over a doubly gzipped echo'],
    ['/listed-ce', 'Content-Encoding: gzip, gzip over a doubly gzipped echo'],
    ['/identity-and-gzip', 'Content-Encoding identity and gzip over a doubly gzipped echo'],
    ['/tgz-second-member', 'the echo in a second gzip member after a clean one'],
    ['/tgz-zero-then-member', 'the echo in a gzip member after a zero byte, where a decoder stops'],
    ['/zlib-then-zlib', 'the echo in a zlib stream after the end of a clean one'],
    ['/zlib-dictionary', 'the echo only in the preset dictionary of a zlib stream'],
    ['/br-says-gzip', 'a gzip body declared brotli'],
    ['/gzip-says-plain', 'a plain body declared gzip'],
  ] as const) {
    it(`${what}: refused (502), nothing of the secret received`, async () => {
      const g = await get(path);
      expect(leaks(g)).toEqual([]);
      expect(g.status).toBe(502);
      const line = await airlock.waitForAudit((l) => l.path === path);
      expect(line.reason).toBe('upstream_error');
    });
  }

  it('an echo deep inside a large .tgz: the response is cut off before any of the secret', async () => {
    const g = await get('/tgz-echo-late');
    expect(leaks(g)).toEqual([]);
    expect(g.status).toBe(200);
    expect(g.complete).toBe(false);
    // What came before was passed on as it streamed.
    expect(readings(g.body).some((r) => r.includes('exports.f30000 '))).toBe(true);
    expect(leaks(g)).toEqual([]);
    const line = await airlock.waitForAudit((l) => l.path === '/tgz-echo-late');
    expect(line.reason).toBe('upstream_error');
  });

  for (const path of ['/outer-cut', '/inner-cut']) {
    it(`a stream cut off in the middle of the echo (${path}) gives none of it`, async () => {
      const g = await get(path);
      expect(leaks(g)).toEqual([]);
      expect(g.complete && g.status === 200).toBe(false);
    });
  }

  it('a compression bomb inside the Content-Encoding is cut off, and this and another session are served meanwhile', async () => {
    const other = await airlock.runtime.sessions.create(parsePolicy(POLICY, 'other.yaml'));
    const otherUrl = new URL(proxyUrl(other, '127.0.0.1', airlock.port));
    const otherVia = { proxyAuthorization: basicAuth(otherUrl.username, otherUrl.password), ca: readFileSync(other.bundlePath, 'utf8') };
    const before = process.memoryUsage().rss;
    const [bombed, mine, theirs] = await Promise.all([get('/bomb'), get('/gzip-echo'), get('/gzip-echo', otherVia)]);
    expect(bombed.complete).toBe(false);
    expect(bombed.body.length).toBeLessThan(bomb.length);
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * 1024 * 1024);
    for (const g of [mine, theirs]) {
      expect(g.status).toBe(200);
      expect(g.body.toString()).toBe(`{"authorization":"Bearer ${PLACEHOLDER}"}\n`);
    }
    const line = await airlock.waitForAudit((l) => l.path === '/bomb');
    expect(line.reason).toBe('upstream_error');
    const after = await get('/tgz-clean');
    expect(after.complete).toBe(true);
  }, 60_000);

  it('the proxy log and the audit log name each refusal and hold no secret', async () => {
    await airlock.auditLines(); // flushed
    const audit = readFileSync(`${airlock.session.dir}/audit.jsonl`, 'latin1');
    expect(audit).toContain('carries a secret inside compressed content');
    expect(secretLeaks(audit + logLines.join(''), SECRET, 8)).toEqual([]);
  });
});
