// The credential broker through the real proxy, real TLS, real curl: swap only on bound hosts
// over TLS, refuse misuse, scrub echoes, never leak the real value.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { gzipSync, brotliCompressSync } from 'node:zlib';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import {
  createTestPki,
  startHttpsUpstream,
  startHttpUpstream,
  startAirlock,
  runProcess,
  tmpDir,
  rmTmp,
} from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { credentialsFactory } from '../../src/credentials/sources.js';

const SECRET = 'ghs_RealSecretValue0123456789abcdefXYZ';
const PLACEHOLDER = 'ghp_airlockPlaceholder0000000000000000';

const POLICY = `
version: 1
name: creds-test
allow:
  - host: api.github.com
  - host: other.example
  - host: plain.example
    ports: [80]
credentials:
  - name: github
    env: [GH_TOKEN, GITHUB_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_GITHUB_TOKEN }
    hosts: [api.github.com]
    in: [header, basic, query, body]
    body: { types: [application/json, application/x-www-form-urlencoded], max_bytes: 65536 }
`;

/** Every file under dir, recursively, as text. */
function allFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...allFiles(path));
    else out.push(readFileSync(path, 'latin1'));
  }
  return out;
}

describe('credential broker through the proxy', () => {
  let pki: TestPki;
  let github: TestUpstream;
  let other: TestUpstream;
  let plain: TestUpstream;
  let airlock: AirlockHandle;
  let logDir: string;
  let logFile: string;

  beforeAll(async () => {
    pki = await createTestPki();
    github = await startHttpsUpstream({
      pki,
      names: ['api.github.com'],
      handler: (req, res) => {
        const url = new URL(req.url ?? '/', 'https://x');
        if (url.pathname === '/echo-split') {
          // The secret (taken from the request) echoed in a header and split across two chunks.
          const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
          res.writeHead(200, { 'X-Echo': `token=${token}`, 'Content-Type': 'text/plain' });
          res.write(`start ${token.slice(0, 10)}`);
          setTimeout(() => res.end(`${token.slice(10)} end`), 30);
          return;
        }
        if (url.pathname === '/echo-head') {
          const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
          res.writeHead(req.method === 'HEAD' ? 200 : 204, { 'X-Echo': token, Location: `https://api.github.com/x?t=${token}` });
          res.end();
          return;
        }
        if (url.pathname === '/zstd') {
          const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
          res.writeHead(200, { 'Content-Encoding': 'zstd', 'X-Accept-Encoding-Seen': String(req.headers['accept-encoding']) });
          res.end(`not really zstd: ${token}`);
          return;
        }
        if (url.pathname === '/echo-small') {
          const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
          const body = `{"token":"${token}"}`;
          res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
          res.end(body);
          return;
        }
        if (url.pathname === '/echo-gzip' || url.pathname === '/echo-br') {
          const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
          const body = Buffer.from(JSON.stringify({ token }));
          const br = url.pathname === '/echo-br';
          res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': br ? 'br' : 'gzip' });
          res.end(br ? brotliCompressSync(body) : gzipSync(body));
          return;
        }
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          // Report what arrived without echoing the secret back verbatim.
          const seen = JSON.stringify({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ sawSecret: seen.includes(SECRET), sawPlaceholder: seen.includes(PLACEHOLDER) }));
        });
      },
    });
    other = await startHttpsUpstream({ pki, names: ['other.example'] });
    plain = await startHttpUpstream();
    logDir = tmpDir();
    logFile = join(logDir, 'proxy.log');
    airlock = await startAirlock({
      policy: POLICY,
      resolve: {
        'api.github.com:443': github.port,
        'other.example:443': other.port,
        'plain.example:80': plain.port,
        'api.github.com:80': plain.port,
      },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
      log: pino({ level: 'debug' }, pino.destination({ dest: logFile, sync: true })),
    });
  });

  afterAll(async () => {
    await airlock?.close();
    await Promise.all([github?.close(), other?.close(), plain?.close()]);
    rmTmp(pki?.dir, logDir);
  });

  async function curl(args: string[]) {
    const r = await runProcess('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args], {
      env: { PATH: process.env.PATH, HTTPS_PROXY: airlock.proxyUrl, http_proxy: airlock.proxyUrl, CURL_CA_BUNDLE: airlock.bundlePath },
    });
    const lines = r.stdout.split('\n');
    const status = Number(lines.pop());
    return { status, body: lines.join('\n'), stderr: r.stderr };
  }

  it('swaps a Bearer placeholder for the real token on the bound host', async () => {
    const r = await curl(['-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/user']);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ sawSecret: true, sawPlaceholder: false });
    const line = await airlock.waitForAudit((l) => l.path === '/user');
    expect(line.credentials).toEqual(['github']);
    expect(line.action).toBe('allow');
  });

  it('refuses the placeholder to another allowed host: 403, credential_misuse, upstream untouched', async () => {
    const before = other.requests.length;
    const r = await curl(['-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://other.example/steal']);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'credential_misuse', host: 'other.example:443' });
    expect(other.requests.length).toBe(before);
    const line = await airlock.waitForAudit((l) => l.path === '/steal');
    expect(line).toMatchObject({ action: 'deny', reason: 'credential_misuse', host: 'other.example', detail: 'github in header authorization' });
  });

  it('refuses the placeholder over plain http, even to the bound host', async () => {
    const before = plain.requests.length;
    const r = await curl(['-H', `Authorization: token ${PLACEHOLDER}`, 'http://api.github.com/plain']);
    expect(r.status).toBe(403);
    expect(r.body).toContain('plain http');
    expect(plain.requests.length).toBe(before);
    const line = await airlock.waitForAudit((l) => l.path === '/plain');
    expect(line.reason).toBe('credential_misuse');
  });

  it('lets a request without a placeholder through untouched, to any allowed host', async () => {
    const r = await curl(['-H', 'Authorization: Bearer something-else', 'https://other.example/fine']);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).headers.authorization).toBe('Bearer something-else');
  });

  it('swaps inside Authorization: Basic (git style x-access-token:<token>)', async () => {
    const r = await curl(['-u', `x-access-token:${PLACEHOLDER}`, 'https://api.github.com/basic']);
    expect(JSON.parse(r.body)).toEqual({ sawSecret: false, sawPlaceholder: false }); // base64 on the wire
    const seen = github.requests.find((q) => q.url === '/basic')!;
    const decoded = Buffer.from(String(seen.headers.authorization).slice(6), 'base64').toString();
    expect(decoded).toBe(`x-access-token:${SECRET}`);
  });

  it('swaps in the query string when query is listed', async () => {
    const r = await curl([`https://api.github.com/q?access_token=${PLACEHOLDER}&x=1`]);
    expect(JSON.parse(r.body)).toEqual({ sawSecret: true, sawPlaceholder: false });
    const line = await airlock.waitForAudit((l) => l.path.startsWith('/q?'));
    expect(line.path).toBe('/q?access_token=redacted&x=redacted');
  });

  it('swaps in a JSON body (opt-in) and a form body, streamed', async () => {
    const json = await curl(['-H', 'Content-Type: application/json', '--data', JSON.stringify({ token: PLACEHOLDER }), 'https://api.github.com/json']);
    expect(JSON.parse(json.body)).toEqual({ sawSecret: true, sawPlaceholder: false });
    const form = await curl(['--data', `token=${PLACEHOLDER}&a=b`, 'https://api.github.com/form']);
    expect(JSON.parse(form.body)).toEqual({ sawSecret: true, sawPlaceholder: false });
    const text = await curl(['-H', 'Content-Type: text/plain', '--data', PLACEHOLDER, 'https://api.github.com/text']);
    expect(JSON.parse(text.body)).toEqual({ sawSecret: false, sawPlaceholder: true });
  });

  it('leaves a header that merely resembles the placeholder alone', async () => {
    const lookalike = `${PLACEHOLDER}X`;
    await curl(['-H', `X-Token: ${lookalike}`, '-H', `X-Other: pre${PLACEHOLDER}`, 'https://api.github.com/resemble']);
    const seen = github.requests.find((q) => q.url === '/resemble')!;
    expect(seen.headers['x-token']).toBe(lookalike);
    expect(seen.headers['x-other']).toBe(`pre${PLACEHOLDER}`);
  });

  it('scrubs an echoed secret from a header and from a body split across chunks', async () => {
    const r = await runProcess('curl', ['-sS', '-i', '-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/echo-split'], {
      env: { PATH: process.env.PATH, HTTPS_PROXY: airlock.proxyUrl, CURL_CA_BUNDLE: airlock.bundlePath },
    });
    expect(r.stdout).not.toContain(SECRET);
    expect(r.stdout).toMatch(new RegExp(`x-echo: token=${PLACEHOLDER}`, 'i'));
    expect(r.stdout).toContain(`start ${PLACEHOLDER} end`);
    const line = await airlock.waitForAudit((l) => l.path === '/echo-split');
    expect(line.detail).toBe('secret_scrubbed');
  });

  it('scrubs a small echo whole and sends it with its corrected Content-Length', async () => {
    const r = await runProcess('curl', ['-sS', '-i', '-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/echo-small'], {
      env: { PATH: process.env.PATH, HTTPS_PROXY: airlock.proxyUrl, CURL_CA_BUNDLE: airlock.bundlePath },
    });
    const body = `{"token":"${PLACEHOLDER}"}`;
    expect(r.stdout).not.toContain(SECRET);
    expect(r.stdout).toMatch(new RegExp(`content-length: ${Buffer.byteLength(body)}\\r?\\n`, 'i'));
    expect(r.stdout).not.toMatch(/transfer-encoding/i);
    expect(r.stdout.endsWith(body)).toBe(true);
    const line = await airlock.waitForAudit((l) => l.path === '/echo-small');
    expect(line.detail).toBe('secret_scrubbed');
  });

  it('scrubs echoed secrets from the headers of HEAD and 204 responses too', async () => {
    for (const args of [['-I'], ['-X', 'DELETE']]) {
      const r = await runProcess('curl', ['-sS', '-i', ...args, '-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/echo-head'], {
        env: { PATH: process.env.PATH, HTTPS_PROXY: airlock.proxyUrl, CURL_CA_BUNDLE: airlock.bundlePath },
      });
      expect(r.stdout).not.toContain(SECRET);
      expect(r.stdout).toMatch(new RegExp(`x-echo: ${PLACEHOLDER}`, 'i'));
    }
  });

  it('asks bound hosts only for encodings it can inspect, and refuses a body it cannot', async () => {
    const before = github.requests.length;
    const r = await curl(['-H', 'Accept-Encoding: zstd, br;q=0.9, gzip', '-H', `Authorization: Bearer ${PLACEHOLDER}`, 'https://api.github.com/zstd']);
    expect(github.requests.length).toBe(before + 1);
    expect(github.requests.at(-1)!.headers['accept-encoding']).toBe('br, gzip');
    expect(r.status).toBe(502);
    expect(r.body).toContain('cannot inspect');
    expect(r.body).not.toContain(SECRET);
  });

  it('scrubs an echoed secret inside gzip- and br-encoded bodies', async () => {
    for (const path of ['/echo-gzip', '/echo-br']) {
      const r = await curl(['--compressed', '-H', `Authorization: Bearer ${PLACEHOLDER}`, `https://api.github.com${path}`]);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ token: PLACEHOLDER });
      const line = await airlock.waitForAudit((l) => l.path === path);
      expect(line.detail).toBe('secret_scrubbed');
    }
  });

  it('never writes the real value to the audit log, the proxy log or the state dir', async () => {
    await airlock.auditLines();
    for (const text of allFiles(airlock.stateDir)) expect(text).not.toContain(SECRET);
    expect(readFileSync(logFile, 'utf8')).not.toContain(SECRET);
    expect(airlock.session.credentials.sessionEnv).toEqual({ GH_TOKEN: PLACEHOLDER, GITHUB_TOKEN: PLACEHOLDER });
    expect(airlock.session.credentials.secretSourceEnv).toEqual(['AIRLOCK_GITHUB_TOKEN']);
  });
});

describe('secret sources', () => {
  it('re-reads a file secret when it changes (rotation without restart)', async () => {
    const dir = tmpDir();
    const file = join(dir, 'token');
    writeFileSync(file, 'first-secret-value\n');
    const { secretHandle } = await import('../../src/credentials/sources.js');
    const spec = { name: 'f', secret: { kind: 'file', path: file } } as never;
    const handle = secretHandle(spec, {});
    expect(await handle.current()).toBe('first-secret-value');
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(file, 'second-secret-value-longer\n');
    expect(await handle.current()).toBe('second-secret-value-longer');
    expect(handle.known()).toEqual(['first-secret-value', 'second-secret-value-longer']);
    rmTmp(dir);
  });

  it('runs a command secret once and caches it for its TTL', async () => {
    const dir = tmpDir();
    const counter = join(dir, 'count');
    const { secretHandle } = await import('../../src/credentials/sources.js');
    const argv = ['sh', '-c', `echo x >> ${counter}; echo cmd-secret`];
    const handle = secretHandle({ name: 'c', secret: { kind: 'command', argv, ttlSeconds: 60 } } as never, {});
    expect(await Promise.all([handle.current(), handle.current()])).toEqual(['cmd-secret', 'cmd-secret']);
    expect(await handle.current()).toBe('cmd-secret');
    expect(readFileSync(counter, 'utf8')).toBe('x\n');
    rmTmp(dir);
  });

  it('names the credential (never a value) when a secret is missing or its command fails', async () => {
    const { secretHandle } = await import('../../src/credentials/sources.js');
    expect(() => secretHandle({ name: 'github', secret: { kind: 'env', name: 'NOPE_TOKEN' } } as never, {})).toThrow(
      /credential "github".*NOPE_TOKEN.*not set/,
    );
    expect(() => secretHandle({ name: 'npm', secret: { kind: 'file', path: '/nonexistent/token' } } as never, {})).toThrow(
      /credential "npm".*\/nonexistent\/token/,
    );
    const failing = secretHandle({ name: 'cmd', secret: { kind: 'command', argv: ['sh', '-c', 'echo leaked-secret; exit 3'], ttlSeconds: 1 } } as never, {});
    const err = await failing.current().catch((e: Error) => e);
    expect(String(err)).toMatch(/credential "cmd".*exit code 3/);
    expect(String(err)).not.toContain('leaked-secret');
  });
});

describe('a hostile upstream bound to a credential', () => {
  it('a header Node would refuse to write (a control character) is a 502, and the proxy keeps serving', async () => {
    const { startScriptedServer } = await import('../helpers/servers.js');
    const { httpViaProxy } = await import('../helpers/clients.js');
    // Small body with a bound credential: scrubbed whole, so the head is written late, after the
    // client has parsed it. A control byte there used to throw outside any handler.
    const hostile = await startScriptedServer((socket, text) => {
      if (text.includes('\r\n\r\n')) socket.end(`HTTP/1.1 200 OK\r\nX-A: a\u0001b\r\nContent-Length: 2\r\n\r\nok`);
    });
    const good = await startHttpUpstream();
    const handle = await startAirlock({
      policy: `
version: 1
name: hostile
allow:
  - host: bad.example
    ports: [80]
  - host: good.example
    ports: [80]
credentials:
  - name: bound
    env: [BOUND_TOKEN]
    secret: { env: AIRLOCK_BOUND_TOKEN }
    hosts: [bad.example]
`,
      resolve: { 'bad.example:80': hostile.port, 'good.example:80': good.port },
      credentials: credentialsFactory({ AIRLOCK_BOUND_TOKEN: SECRET }),
    });
    try {
      const res = await httpViaProxy({ proxyPort: handle.port, proxyAuthorization: handle.proxyAuthorization, url: 'http://bad.example/' });
      expect(res.status).toBe(502);
      const line = await handle.waitForAudit((l) => l.host === 'bad.example');
      expect(line).toMatchObject({ status: 502, reason: 'upstream_error', detail: 'UPSTREAM_BAD_RESPONSE' });
      const after = await httpViaProxy({ proxyPort: handle.port, proxyAuthorization: handle.proxyAuthorization, url: 'http://good.example/ok' });
      expect(after.status).toBe(200);
    } finally {
      await handle.close();
      await hostile.close();
      await good.close();
    }
  });
});
