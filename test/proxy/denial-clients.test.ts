// A denied HTTPS host, as real clients see it through a real session: curl, git (libcurl with
// GnuTLS), Node fetch through undici's ProxyAgent, Python urllib and requests (OpenSSL). Each
// must show the host, the policy and how to ask for access, and the denied host's server must
// never see a connection.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ProxyAgent, fetch as undiciFetch } from 'undici';
import { createTestPki, isolatedGitEnv, rmTmp, runProcess, startAirlock, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { rawConnect } from '../helpers/clients.js';

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
    const ca = readFileSync(airlock.bundlePath, 'utf8');
    const dispatcher = new ProxyAgent({ uri: airlock.proxyUrl, requestTls: { ca } });
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
