// A denied HTTPS host, as real clients see it through a real session: curl, git (libcurl with
// GnuTLS), Node fetch through undici's ProxyAgent, Python urllib and requests (OpenSSL). Each
// must show the host, the policy and how to ask for access, and the denied host's server must
// never see a connection. Then a hostile session and the notice tunnel: nothing inside it
// reaches anything, it cannot be made to present a leaf for another host, the leaves it costs
// are bounded, and a reload that allows the host applies to the next CONNECT.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { ProxyAgent, fetch as undiciFetch } from 'undici';
import { parsePolicy } from '../../src/policy/index.js';
import { createTestPki, isolatedGitEnv, rmTmp, runProcess, startAirlock, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy, rawConnect, rawExchange } from '../helpers/clients.js';

const POLICY = `
version: 1
name: denial-clients
allow:
  - host: api.allowed.test
`;

let pki: TestPki;
let denied: TestUpstream;
let allowed: TestUpstream;
let airlock: AirlockHandle;
let home: string;
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
  home = tmpDir('airlock-denial-home-');
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([denied?.close(), allowed?.close()]);
  rmTmp(pki?.dir, home);
});

function proxyEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    HTTPS_PROXY: airlock.proxyUrl,
    https_proxy: airlock.proxyUrl,
    HTTP_PROXY: airlock.proxyUrl,
    http_proxy: airlock.proxyUrl,
    NO_PROXY: '',
    SSL_CERT_FILE: airlock.bundlePath,
    CURL_CA_BUNDLE: airlock.bundlePath,
    REQUESTS_CA_BUNDLE: airlock.bundlePath,
    GIT_SSL_CAINFO: airlock.bundlePath,
  };
}

/** What every client must show: host, policy, that it is a policy decision, and how to ask. */
function expectReadable(output: string) {
  expect(output).toContain('blocked.example');
  expect(output).toContain('denial-clients');
  expect(output).toMatch(/airlock\.internal\/(request-access|why|)/);
}

function expectUntouched() {
  expect(denied.connections).toBe(0);
  expect(denied.requests).toHaveLength(0);
  expect(allowed.requests).toHaveLength(0);
}

describe('a denied HTTPS host, as real clients show it', () => {
  it('curl prints the text answer (status 403) and verifies the notice leaf against the bundle', async () => {
    const r = await runProcess('curl', ['-sS', '-w', '\nstatus=%{http_code}\n', 'https://blocked.example/v1/things?x=1'], { env: proxyEnv() });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('status=403');
    expect(r.stdout).toContain('refused GET https://blocked.example:443/v1/things');
    expect(r.stdout).toContain('curl -s http://airlock.internal/request-access -d host=blocked.example');
    expectReadable(r.stdout);
    expectUntouched();
  });

  it('git clone prints the answer as remote: lines', async () => {
    const dir = tmpDir('airlock-denial-git-');
    try {
      const env = isolatedGitEnv(home, { ...proxyEnv(), GIT_TERMINAL_PROMPT: '0' });
      const r = await runProcess('git', ['clone', 'https://blocked.example/org/repo.git', `${dir}/repo`], { env });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/remote: Airlock, the egress proxy of this session, refused GET https:\/\/blocked\.example:443\/org\/repo\.git\/info\/refs/);
      expect(r.stderr).toMatch(/remote: .*request-access/);
      expectReadable(r.stderr);
      expectUntouched();
    } finally {
      rmTmp(dir);
    }
  });

  it('Node fetch through undici ProxyAgent gets status 403 and the text', async () => {
    const dispatcher = new ProxyAgent({ uri: airlock.proxyUrl, requestTls: { ca: bundle } });
    try {
      const res = await undiciFetch('https://blocked.example/api', { dispatcher });
      expect(res.status).toBe(403);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      expectReadable(text);
      expectUntouched();
    } finally {
      await dispatcher.close();
    }
  });

  it('Python urllib shows the answer (HTTPError 403 with the body)', async () => {
    const script = `
import urllib.request, urllib.error
try:
    urllib.request.urlopen('https://blocked.example/data')
except urllib.error.HTTPError as e:
    print('status', e.code)
    print(e.read().decode())
`;
    const r = await runProcess('python3', ['-c', script], { env: proxyEnv() });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('status 403');
    expectReadable(r.stdout);
    expectUntouched();
  });

  it('Python requests shows the answer', async () => {
    const script = `
import requests
r = requests.get('https://blocked.example/data')
print('status', r.status_code)
print(r.text)
`;
    const r = await runProcess('python3', ['-c', script], { env: proxyEnv() });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('status 403');
    expectReadable(r.stdout);
    expectUntouched();
  });

  it('a bare refused CONNECT (no notice possible) names host, policy and where to ask in its reason phrase', async () => {
    // An IP literal is outside what the notice CA may ever speak for.
    const r = await rawConnect({ proxyPort: airlock.port, target: '192.0.2.1:443', proxyAuthorization: airlock.proxyAuthorization });
    expect(r.status).toBe(403);
    const statusLine = r.head.split('\r\n')[0]!;
    expect(statusLine).toMatch(/^HTTP\/1\.1 403 Forbidden by Airlock policy "denial-clients": 192\.0\.2\.1:443 no_rule; see http:\/\/airlock\.internal\//);
    expect(statusLine).toMatch(/^[\x20-\x7e]+$/);
  });

  it('the denied CONNECT is audited once as denied, and nothing inside it is forwarded or audited apart', async () => {
    const before = (await airlock.auditLines()).filter((l) => l.host === 'blocked.example').length;
    const r = await runProcess('curl', ['-sS', 'https://blocked.example/a', 'https://blocked.example/b'], { env: proxyEnv() });
    expect(r.stdout.match(/refused GET/g)).toHaveLength(2);
    // Each answer closes its connection, so curl opened one tunnel per URL: one line each.
    await airlock.waitForAudit(() => true);
    let after = (await airlock.auditLines()).filter((l) => l.host === 'blocked.example');
    for (let i = 0; i < 40 && after.length - before < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = (await airlock.auditLines()).filter((l) => l.host === 'blocked.example');
    }
    expect(after.length - before).toBe(2);
    for (const line of after.slice(before)) {
      expect(line).toMatchObject({ kind: 'tunnel', method: 'CONNECT', status: 403, action: 'deny', reason: 'no_rule', detail: 'answered inside the tunnel (1 requests)' });
    }
    expectUntouched();
  });
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

describe('a hostile session and the notice tunnel', () => {
  it('a Host header or absolute URL naming an allowed host gets the same refusal; nothing is forwarded', async () => {
    for (const request of [
      'GET /x HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n',
      'GET https://api.allowed.test/x HTTP/1.1\r\nHost: api.allowed.test\r\n\r\n',
      'POST /upload HTTP/1.1\r\nHost: blocked.example\r\nContent-Length: 5\r\n\r\nhello',
    ]) {
      const s = await tunnel('blocked.example:443', 'blocked.example');
      const answer = await rawExchange(s, request, /to ask for access|restart\.\n$/);
      expect(answer).toMatch(/^HTTP\/1\.1 403 /);
      expect(answer).toContain('Policy "denial-clients"');
      s.destroy();
    }
    expectUntouched();
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
    expectUntouched();
  });

  it('asking for another name (SNI) still gets only the CONNECT host\'s leaf', async () => {
    const s = await tunnel('blocked.example:443', 'api.allowed.test', false);
    const leaf = s.getPeerX509Certificate()!;
    expect(leaf.subjectAltName).toBe('DNS:blocked.example');
    expect(leaf.checkHost('api.allowed.test')).toBeUndefined();
    expect(s.authorized).toBe(false); // a verifying client would refuse it for api.allowed.test
    s.destroy();
    expectUntouched();
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
