// Tokens the host keeps, used by a hostile session to mint new credentials of its own: Google's
// IAM Credentials API (generateAccessToken, signJwt, ...) and IAM's service-account keys answer a
// request carrying an access token with a new token or a new private key, and Anthropic's
// create_api_key answers a Console login's access token with an API key. Each would hand the
// session a real credential in the clear (no scrubber knows it). Through a real proxy with real TLS
// to stand-ins that mint only for the real token: the placeholder is refused there (403,
// credential_misuse), nothing reaches them, and the session's other requests still work.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream, tmpDir, toResolveMap } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy } from '../helpers/clients.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { claudeStore, realAccess, realRefresh } from '../helpers/claude-login-standin.js';
import { startGithubAppStandIn } from '../helpers/github-app-standin.js';

let pki: TestPki;
let dir: string;
let airlock: AirlockHandle;
let ca: string;
const servers: TestUpstream[] = [];
/** Requests that reached a minting stand-in. */
const minted: string[] = [];
const issued: string[] = [];
const claudeAccess = realAccess();
/** The session's audit log as it stood when each Google token request arrived. */
const auditAtMint: string[] = [];

/** Mints for the bearer `real()` only: a new token (or key, or API key) in the answer. */
function minter(real: () => string, what: string) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    req.on('end', () => {
      const ok = req.headers.authorization === `Bearer ${real()}`;
      if (ok) minted.push(`${req.headers.host} ${req.url}`);
      const value = `${what}-MINTED-${randomBytes(16).toString('hex')}`;
      if (ok) issued.push(value);
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify(ok ? { accessToken: value, privateKeyData: value, raw_key: value } : { error: 'unauthenticated' }));
    });
  };
}

beforeAll(async () => {
  pki = await createTestPki();
  dir = tmpDir('airlock-red-mint-');
  const adc = join(dir, 'adc.json');
  writeFileSync(adc, JSON.stringify({ type: 'authorized_user', client_id: 'c.apps.googleusercontent.com', client_secret: 'adc-secret-x', refresh_token: `1//adc-${randomBytes(8).toString('hex')}` }), { mode: 0o600 });
  const store = join(dir, '.credentials.json');
  writeFileSync(store, claudeStore({ accessToken: claudeAccess, refreshToken: realRefresh() }, Date.now() + 3_600_000), { mode: 0o600 });
  let googleToken = '';
  const oauth = await startHttpsUpstream({
    pki,
    names: ['oauth2.googleapis.com'],
    handler: (req, res) => {
      auditAtMint.push(readFileSync(join(airlock.session.dir, 'audit.jsonl'), 'utf8'));
      req.resume();
      req.on('end', () => {
        googleToken = `ya29.REAL${randomBytes(16).toString('hex')}`;
        issued.push(googleToken);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: googleToken, expires_in: 3600, token_type: 'Bearer' }));
      });
    },
  });
  const iamcred = await startHttpsUpstream({ pki, names: ['iamcredentials.googleapis.com', 'iamcredentials.mtls.googleapis.com'], handler: minter(() => googleToken, 'ya29') });
  const iam = await startHttpsUpstream({ pki, names: ['iam.googleapis.com'], handler: minter(() => googleToken, 'sa-key') });
  const vertex = await startHttpsUpstream({ pki, names: ['us-east5-aiplatform.googleapis.com'], handler: minter(() => googleToken, 'vertex-answer') });
  const api = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: minter(() => claudeAccess, 'sk-ant-api03') });
  servers.push(oauth, iamcred, iam, vertex, api);
  const resolve = {
    'oauth2.googleapis.com:443': oauth.port,
    'iamcredentials.googleapis.com:443': iamcred.port,
    'iam.googleapis.com:443': iam.port,
    'iamcredentials.mtls.googleapis.com:443': iamcred.port,
    'us-east5-aiplatform.googleapis.com:443': vertex.port,
    'api.anthropic.com:443': api.port,
  };
  airlock = await startAirlock({
    policy: `version: 1
name: red-mint
allow:
  - host: "*.googleapis.com"
  - host: api.anthropic.com
credentials:
  - preset: vertex
    secret: { google: adc }
  - preset: claude-login
    secret: { claude_login: ${store} }
`,
    resolve,
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ GOOGLE_APPLICATION_CREDENTIALS: adc }, { ca: [pki.caPem], resolve: toResolveMap(resolve) }),
  });
  ca = readFileSync(airlock.bundlePath, 'utf8');
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  for (const s of servers) await s.close();
  rmTmp(pki?.dir, dir);
});

function send(url: string, bearer: string) {
  return httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url, ca, method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` }, body: '{}' });
}

describe('minting new credentials with the host\'s tokens', () => {
  it('Google: generateAccessToken, signJwt and a new service-account key are refused with the placeholder; Vertex still answers', async () => {
    const placeholder = airlock.session.credentials.sessionEnv.GOOGLE_OAUTH_ACCESS_TOKEN!;
    const sa = 'projects/-/serviceAccounts/owner@p.iam.gserviceaccount.com';
    for (const url of [
      `https://iamcredentials.googleapis.com/v1/${sa}:generateAccessToken`,
      `https://iamcredentials.googleapis.com/v1/${sa}:signJwt`,
      `https://iam.googleapis.com/v1/${sa}/keys`,
      `https://IAM.googleapis.com./v1/${sa}/keys`,
      `https://iamcredentials.mtls.googleapis.com/v1/${sa}:generateIdToken`,
    ]) {
      const res = await send(url, placeholder);
      expect(res.status, `${url}: ${res.body}`).toBe(403);
      expect(res.body).toContain('credential_misuse');
      expect(res.body).not.toContain('MINTED');
    }
    expect(minted).toEqual([]);
    const ok = await send('https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/google/models/m:predict', placeholder);
    expect(ok.status, ok.body).toBe(200);
    expect(minted).toHaveLength(1);
    minted.length = 0;
    // The token was minted for that request: admitted in the audit before the token request left.
    expect(auditAtMint).toHaveLength(1);
    const admits = auditAtMint[0]!.split('\n').filter((l) => l.includes('"event":"admit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(admits.map((a) => [a.host, a.credentials])).toEqual([['us-east5-aiplatform.googleapis.com', ['vertex']]]);
    const line = await airlock.waitForAudit((l) => l.host === 'us-east5-aiplatform.googleapis.com');
    expect(line).toMatchObject({ status: 200, credentials: ['vertex'], detail: 'vertex: refreshed upstream on the host for this request' });
  });

  it('Claude: create_api_key (any spelling) is refused with the login placeholder; Messages still answers', async () => {
    const files = airlock.session.credentials.sessionFiles ?? [];
    const access = (JSON.parse(files.find((f) => f.path === '.claude/.credentials.json')!.content) as { claudeAiOauth: { accessToken: string } }).claudeAiOauth.accessToken;
    for (const path of ['/api/oauth/claude_cli/create_api_key', '/api//oauth/claude_cli/create_api_key', '/API/oauth/claude_cli/%63reate_api_key']) {
      const res = await send(`https://api.anthropic.com${path}`, access);
      expect(res.status, `${path}: ${res.body}`).toBe(403);
      expect(res.body).toContain('credential_misuse');
    }
    expect(minted).toEqual([]);
    const ok = await send('https://api.anthropic.com/v1/messages', access);
    expect(ok.status, ok.body).toBe(200);
    expect(minted).toEqual(['api.anthropic.com /v1/messages']);
  });
});

describe('a token minted on the host for a request is admitted in its audit first', () => {
  it('GitHub App: with the session\'s audit log unwritable, a request needing a token gets 503 and no token is minted; then one is, noted on the line', async () => {
    const appDir = tmpDir('airlock-red-mint-app-');
    const app = await startGithubAppStandIn({ pki, dir: appDir, repositories: ['repo'] });
    const resolve = { 'api.github.com:443': app.upstream.port };
    const policy = `version: 1
name: red-mint-app
allow:
  - host: api.github.com
credentials:
  - preset: github-app
    secret:
      github_app:
        app_id: ${app.appId}
        private_key: ${app.keyFile}
        installation_id: ${app.installationId}
        repositories: [octo/repo]
`;
    const open = async () => {
      const handle = await startAirlock({ policy, resolve, upstreamCa: [pki.caPem], credentials: credentialsFactory({}, { ca: [pki.caPem], resolve: toResolveMap(resolve) }) });
      const placeholder = Object.values(handle.session.credentials.sessionEnv)[0]!;
      const get = () =>
        httpsViaProxy({ proxyPort: handle.port, proxyAuthorization: handle.proxyAuthorization, url: 'https://api.github.com/repos/octo/repo', ca: readFileSync(handle.bundlePath, 'utf8'), headers: { authorization: `token ${placeholder}` } });
      return { handle, get };
    };
    const closed = await open();
    const working = await open();
    try {
      await closed.handle.session.audit.close();
      const refused = await closed.get();
      expect(refused.status, refused.body).toBe(503);
      expect(app.tokenRequests).toEqual([]);
      const ok = await working.get();
      expect(ok.status, ok.body).not.toBe(503);
      expect(app.tokenRequests).toHaveLength(1);
      const line = await working.handle.waitForAudit((l) => l.host === 'api.github.com');
      expect(line.detail).toMatch(/refreshed upstream on the host for this request/);
    } finally {
      await closed.handle.close();
      await working.handle.close();
      await app.close();
      rmTmp(appDir);
    }
  });
});
