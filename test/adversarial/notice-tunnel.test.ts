// A hostile session and the notice tunnel of a denied host: nothing inside it reaches anything,
// it cannot be made to present a leaf for another host, the leaves it costs are bounded, and a
// reload that allows the host applies to the next CONNECT.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { parsePolicy } from '../../src/policy/index.js';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy, rawConnect, rawExchange } from '../helpers/clients.js';

const POLICY = `
version: 1
name: notice-hostile
allow:
  - host: api.allowed.test
`;

let pki: TestPki;
let denied: TestUpstream;
let allowed: TestUpstream;
let airlock: AirlockHandle;
let bundle: string;

beforeAll(async () => {
  pki = await createTestPki();
  denied = await startHttpsUpstream({ pki, names: ['blocked.example'] });
  allowed = await startHttpsUpstream({ pki, names: ['api.allowed.test'] });
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { 'blocked.example:443': denied.port, 'api.allowed.test:443': allowed.port },
    upstreamCa: [pki.caPem],
  });
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([denied?.close(), allowed?.close()]);
  rmTmp(pki?.dir);
});

/** A TLS session inside a CONNECT to `target`, verified against the bundle unless told not to. */
async function tunnel(target: string, servername: string, verify = true): Promise<tls.TLSSocket> {
  const c = await rawConnect({ proxyPort: airlock.port, target, proxyAuthorization: airlock.proxyAuthorization });
  expect(c.status).toBe(200);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ socket: c.socket, servername, ca: bundle, rejectUnauthorized: verify, ALPNProtocols: ['http/1.1'] });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

function untouched() {
  expect(denied.connections).toBe(0);
  expect(allowed.requests).toHaveLength(0);
}

describe('inside a notice tunnel', () => {
  it('a Host header or absolute URL naming an allowed host gets the same refusal; nothing is forwarded', async () => {
    for (const request of [
      'GET /x HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n',
      'GET https://api.allowed.test/x HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n',
      'POST /upload HTTP/1.1\r\nHost: blocked.example\r\nContent-Length: 5\r\n\r\nhello',
    ]) {
      const s = await tunnel('blocked.example:443', 'blocked.example');
      const answer = await rawExchange(s, request, /to ask for access|restart\.\n$/);
      expect(answer).toMatch(/^HTTP\/1\.1 403 /);
      expect(answer).toContain('Policy "notice-hostile"');
      s.destroy();
    }
    untouched();
  });

  it('a WebSocket upgrade or a CONNECT inside is refused with the same text', async () => {
    for (const request of [
      'GET /ws HTTP/1.1\r\nHost: blocked.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      'CONNECT api.allowed.test:443 HTTP/1.1\r\nHost: api.allowed.test:443\r\n\r\n',
    ]) {
      const s = await tunnel('blocked.example:443', 'blocked.example');
      const answer = await rawExchange(s, request, /restart\.\n$/);
      expect(answer).toMatch(/^HTTP\/1\.1 403 /);
      expect(answer).not.toMatch(/^HTTP\/1\.1 (101|200)/m);
      s.destroy();
    }
    untouched();
  });

  it('asking for another name (SNI) still gets only the CONNECT host\'s leaf', async () => {
    const s = await tunnel('blocked.example:443', 'api.allowed.test', false);
    const leaf = s.getPeerX509Certificate()!;
    expect(leaf.subjectAltName).toBe('DNS:blocked.example');
    expect(leaf.checkHost('api.allowed.test')).toBeUndefined();
    expect(s.authorized).toBe(false); // a verifying client would refuse it for api.allowed.test
    s.destroy();
    untouched();
  });

  it('leaves for ever new denied hosts are bounded (the oldest is minted again)', async () => {
    const notice = airlock.session.notice!;
    for (let i = 0; i < 70; i++) {
      const r = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: `https://h${i}.flood.example/`, ca: bundle });
      expect(r.status).toBe(403);
    }
    // 64 kept: the first hosts were evicted, the last ones are ready.
    expect(notice.contextFor('h0.flood.example')).toBeInstanceOf(Promise);
    expect(notice.contextFor('h69.flood.example')).not.toBeInstanceOf(Promise);
  }, 60_000);

  it('a reload that allows the host applies to the next CONNECT; a notice tunnel opened before keeps refusing', async () => {
    const before = await tunnel('blocked.example:443', 'blocked.example');
    const policy = parsePolicy(`${POLICY}  - host: blocked.example\n    inspect: false\n`, 'reloaded.yaml');
    airlock.runtime.sessions.setPolicy(airlock.session.id, policy, { ...airlock.session.policyStatus, version: policy.digest });
    try {
      const r = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://blocked.example/now', ca: pki.caPem });
      expect(r.status).toBe(200);
      expect(denied.requests.at(-1)?.url).toBe('/now');
      const old = await rawExchange(before, 'GET /old HTTP/1.1\r\nHost: blocked.example\r\n\r\n', /restart\.\n$/);
      expect(old).toMatch(/^HTTP\/1\.1 403 /);
      expect(denied.requests.some((q) => q.url === '/old')).toBe(false);
    } finally {
      before.destroy();
      const original = parsePolicy(POLICY, 'test-policy.yaml');
      airlock.runtime.sessions.setPolicy(airlock.session.id, original, { ...airlock.session.policyStatus, version: original.digest });
    }
  });

  it('the leaf served is from the notice CA, not the session CA', async () => {
    const s = await tunnel('blocked.example:443', 'blocked.example');
    const leaf = s.getPeerX509Certificate()!;
    expect(leaf.checkIssued(new X509Certificate(airlock.session.notice!.certPem))).toBe(true);
    expect(leaf.checkIssued(new X509Certificate(airlock.session.ca.certPem))).toBe(false);
    s.destroy();
  });
});
