// The in-session endpoint http://airlock.internal/ (and over https through CONNECT): answered by
// the proxy for the session whose credential the request carries, never resolved or dialled;
// its rules page names credentials but never their values; `why` gives the same decision a real
// request gets; request-access lands in the operator's inbox and holds up against hostile input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { parsePolicy } from '../../src/policy/index.js';
import { createTestPki, rmTmp, runProcess, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { basicAuth, httpViaProxy, httpsViaProxy } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const SECRET = 'ghs_InternalEndpointSecret0123456789abcXYZ';
const POLICY = `
version: 1
name: endpoint
allow:
  - host: api.allowed.test
    methods: [GET]
    paths: ["/v1/*"]
credentials:
  - name: allowed-token
    env: [ALLOWED_TOKEN]
    secret: { env: AIRLOCK_ENDPOINT_SECRET }
    hosts: [api.allowed.test]
`;

let pki: TestPki;
let allowed: TestUpstream;
let airlock: AirlockHandle;
let bundle: string;
const dialled: string[] = [];

beforeAll(async () => {
  pki = await createTestPki();
  allowed = await startHttpsUpstream({ pki, names: ['api.allowed.test'] });
  airlock = await startAirlock({
    policy: POLICY,
    // Even an override naming the reserved name must never be dialled.
    resolve: { 'api.allowed.test:443': allowed.port, 'airlock.internal:80': allowed.port, 'airlock.internal:443': allowed.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_ENDPOINT_SECRET: SECRET }),
    beforeDial: (_endpoint, host) => dialled.push(host),
    lookup: async (host) => {
      dialled.push(`lookup ${host}`);
      throw new Error('no DNS in tests');
    },
  });
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  await airlock?.close();
  await allowed?.close();
  rmTmp(pki?.dir);
});

function get(path: string, auth = airlock.proxyAuthorization) {
  return httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: auth, url: `http://airlock.internal${path}` });
}

function post(body: string, contentType = 'application/x-www-form-urlencoded') {
  return httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'http://airlock.internal/request-access', method: 'POST', body, headers: { 'Content-Type': contentType } });
}

describe('http://airlock.internal/', () => {
  it('the index says what this is and how to use it', async () => {
    const r = await get('/');
    expect(r.status).toBe(200);
    expect(r.body).toContain('policy "endpoint"');
    expect(r.body).toContain('/request-access');
  });

  it('rules: the effective rules with credential names and hosts, never the secret', async () => {
    const r = await get('/rules');
    expect(r.status).toBe(200);
    const rules = JSON.parse(r.body);
    expect(rules).toMatchObject({ session: airlock.session.id, policy: { name: 'endpoint', version: airlock.session.policy.digest, mode: 'enforce' } });
    expect(rules.allow).toEqual([{ rule: 'allow[0] api.allowed.test', host: 'api.allowed.test', ports: [80, 443], methods: ['GET'], paths: ['/v1/*'], inspect: true }]);
    expect(rules.credentials).toEqual([expect.objectContaining({ name: 'allowed-token', hosts: ['api.allowed.test'] })]);
    expect(secretLeaks(r.body, SECRET)).toEqual([]);
    expect(r.body).not.toContain('AIRLOCK_ENDPOINT_SECRET'); // not even where the secret comes from
  });

  it('why: the same decision a real request gets, at CONNECT and inside', async () => {
    const cases: [string, string, string, string][] = [
      ['GET', 'https://api.allowed.test/v1/x', 'allow', 'allowed'],
      ['POST', 'https://api.allowed.test/v1/x', 'deny', 'method_not_allowed'],
      ['GET', 'https://api.allowed.test/v2/x', 'deny', 'path_not_allowed'],
      ['GET', 'https://api.allowed.test/v1/../v2/x', 'deny', 'path_not_allowed'],
      ['GET', 'https://elsewhere.example/', 'deny', 'no_rule'],
    ];
    for (const [method, url, decision, reason] of cases) {
      const r = await get(`/why?method=${method}&url=${encodeURIComponent(url)}`);
      expect(r.status).toBe(200);
      const why = JSON.parse(r.body);
      expect(why, url).toMatchObject({ decision, reason, policy: 'endpoint' });
      // The real request agrees.
      const real = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url, method, ca: bundle });
      expect(real.status, url).toBe(decision === 'allow' ? 200 : 403);
      if (decision !== 'allow') expect(why.how_to_ask).toContain('request-access');
    }
  });

  it('over https through CONNECT too, under a notice leaf the bundle verifies', async () => {
    const r = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://airlock.internal/rules', ca: bundle });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).policy.name).toBe('endpoint');
    const curl = await runProcess('curl', ['-sS', '--cacert', airlock.bundlePath, '-x', airlock.proxyUrl, 'https://airlock.internal/why?url=https://x.example/']);
    expect(JSON.parse(curl.stdout)).toMatchObject({ decision: 'deny', reason: 'no_rule' });
  });

  it('is never resolved or dialled, and each request is audited as answered by the proxy', async () => {
    await get('/rules');
    expect(dialled.filter((h) => h.includes('airlock.internal'))).toEqual([]);
    const line = await airlock.waitForAudit((l) => l.host === 'airlock.internal' && l.path === '/rules');
    expect(line).toMatchObject({ kind: 'request', action: 'allow', rule: 'airlock.internal', status: 200 });
    expect(allowed.connections).toBeGreaterThan(0); // only the real requests of the why test
    expect(allowed.requests.every((q) => q.headers.host === 'api.allowed.test')).toBe(true);
  });

  it('the upstream client refuses to dial the reserved name, whatever resolves it', async () => {
    // A policy allowing *.internal and a WebSocket or a blind tunnel would otherwise get here.
    await expect(airlock.runtime.upstream.endpointFor('airlock.internal', 443)).rejects.toThrow(/never dialled/);
    await expect(airlock.runtime.upstream.endpointFor('x.airlock.internal', 80)).rejects.toThrow(/never dialled/);
  });

  it('needs the session credential: without it 407, and another session sees only its own rules', async () => {
    expect((await get('/rules', '')).status).toBe(407);
    expect((await get('/rules', basicAuth(airlock.session.id, 'wrong'))).status).toBe(407);
    const other = await airlock.runtime.sessions.create(parsePolicy('version: 1\nname: other\nallow:\n  - host: other.test\n', 'other.yaml'));
    try {
      const r = await get('/rules', basicAuth(other.id, other.token));
      const rules = JSON.parse(r.body);
      expect(rules).toMatchObject({ session: other.id, policy: { name: 'other' } });
      expect(r.body).not.toContain('api.allowed.test');
    } finally {
      await airlock.runtime.sessions.remove(other.id);
    }
  });
});

describe('POST http://airlock.internal/request-access', () => {
  it('files the request in the operator inbox (form and JSON)', async () => {
    const r = await post('host=api.allowed.test&method=POST&path=/v1/things&reason=need+to+create+things');
    expect(r.status).toBe(201);
    const { id } = JSON.parse(r.body);
    const item = airlock.runtime.inbox.get(id)!;
    expect(item).toMatchObject({ kind: 'requested', session: airlock.session.id, host: 'api.allowed.test', method: 'POST', path: '/v1/things', note: 'need to create things' });
    const j = await post(JSON.stringify({ host: 'new.example', method: 'GET', path: '/', reason: 'docs' }), 'application/json');
    expect(j.status).toBe(201);
    const line = await airlock.waitForAudit((l) => l.host === 'airlock.internal' && l.path === '/request-access' && l.status === 201);
    expect(line).toMatchObject({ method: 'POST', action: 'allow', rule: 'airlock.internal' });
  });

  it('refuses hostile input with a clear answer and keeps serving', async () => {
    expect((await post('host=a.example', 'text/plain')).status).toBe(415);
    expect((await post('x'.repeat(5000))).status).toBe(413);
    expect((await post('{nope', 'application/json')).status).toBe(400);
    expect((await post('[1,2]', 'application/json')).status).toBe(400);
    const bad = await post('host=exa%0d%0ample&method=GET');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toMatch(/^host:/);
    expect((await get('/request-access')).status).toBe(405);
    expect((await get('/rules')).status).toBe(200);
  });

  it('is rate limited per session', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 14; i++) statuses.push((await post(`host=r${i}.example&reason=flood`)).status);
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 201).length).toBeLessThanOrEqual(10);
  });
});
