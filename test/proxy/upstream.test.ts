// The proxy as a TLS client: it verifies upstream certificates against the name asked for, dials
// exactly what the resolve map says, and reports unreachable upstreams as 502 with the reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createTestPki, freePort, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy, rawConnect, tunnelThrough } from '../helpers/clients.js';

const POLICY = `
version: 1
name: upstream-test
allow:
  - host: good.example.com
  - host: untrusted.example.com
  - host: wrongname.example.com
  - host: down.example.com
  - host: blind-down.example.com
    inspect: false
`;

let pki: TestPki;
let otherPki: TestPki;
let good: TestUpstream;
let untrusted: TestUpstream;
let wrongName: TestUpstream;
let airlock: AirlockHandle;
let bundle: string;

beforeAll(async () => {
  pki = await createTestPki();
  otherPki = await createTestPki(); // not given to the proxy
  good = await startHttpsUpstream({ pki, names: ['good.example.com'] });
  untrusted = await startHttpsUpstream({ pki: otherPki, names: ['untrusted.example.com'] });
  wrongName = await startHttpsUpstream({ pki, names: ['something-else.example.com'] });
  const closedPort = await freePort();
  airlock = await startAirlock({
    policy: POLICY,
    resolve: {
      'good.example.com:443': good.port,
      'untrusted.example.com:443': untrusted.port,
      'wrongname.example.com:443': wrongName.port,
      'down.example.com:443': closedPort,
      'blind-down.example.com:443': closedPort,
    },
    upstreamCa: [pki.caPem],
  });
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([good?.close(), untrusted?.close(), wrongName?.close()]);
  rmTmp(pki?.dir, otherPki?.dir);
});

const via = (url: string) => httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url, ca: bundle });

describe('upstream TLS is verified', () => {
  it('a certificate from an untrusted CA → 502, and no request is sent over it', async () => {
    const res = await via('https://untrusted.example.com/x');
    expect(res.connectStatus).toBe(200); // the policy allowed it; the upstream failed
    expect(res.status).toBe(502);
    expect(untrusted.requests).toHaveLength(0);
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.host === 'untrusted.example.com');
    expect(line).toMatchObject({ status: 502, reason: 'upstream_error' });
    expect(line.detail).toMatch(/CERT|SIGNATURE|ISSUER|SELF_SIGNED/i);
  });

  it('a certificate for another name → 502', async () => {
    const res = await via('https://wrongname.example.com/x');
    expect(res.status).toBe(502);
    expect(wrongName.requests).toHaveLength(0);
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.host === 'wrongname.example.com');
    expect(line.detail).toMatch(/ALTNAME|HOSTNAME|CERT/i);
  });

  it('the trusted upstream works (control)', async () => {
    const res = await via('https://good.example.com/ok');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ path: '/ok', host: 'good.example.com' });
  });
});

describe('unreachable upstreams', () => {
  it('inspected: connection refused → 502 upstream_error with the code', async () => {
    const res = await via('https://down.example.com/x');
    expect(res.status).toBe(502);
    expect(res.body).toContain('down.example.com:443');
    const line = await airlock.waitForAudit((l) => l.kind === 'request' && l.host === 'down.example.com');
    expect(line).toMatchObject({ status: 502, action: 'allow', reason: 'upstream_error', detail: 'ECONNREFUSED' });
  });

  it('blind tunnel: connection refused → CONNECT answered 502', async () => {
    const r = await rawConnect({ proxyPort: airlock.port, target: 'blind-down.example.com:443', proxyAuthorization: airlock.proxyAuthorization });
    expect(r.status).toBe(502);
    const line = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'blind-down.example.com');
    expect(line).toMatchObject({ status: 502, reason: 'upstream_error', detail: 'ECONNREFUSED' });
  });
});

describe('keep-alive inside a tunnel', () => {
  it('several requests on one tunnel each reach the upstream and are audited separately', async () => {
    const tls = await tunnelThrough(airlock, 'good.example.com');
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    // One socket for all three requests: createConnection hands out the same tunnel.
    (agent as unknown as { createConnection: () => unknown }).createConnection = () => tls;
    const get = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request({ host: 'good.example.com', port: 443, path, agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const before = good.requests.length;
    for (const path of ['/ka/1', '/ka/2', '/ka/3']) {
      const r = await get(path);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).path).toBe(path);
    }
    agent.destroy();
    tls.destroy();
    expect(good.requests.length).toBe(before + 3);
    for (const path of ['/ka/1', '/ka/2', '/ka/3']) await airlock.waitForAudit((l) => l.path === path && l.status === 200);
    const tunnel = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'good.example.com' && l.bytes_down > 0);
    expect(tunnel.status).toBe(200);
  });
});
