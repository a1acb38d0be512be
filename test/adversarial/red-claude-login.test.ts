// A Claude login kept on the host, from the attacker's side, through a real proxy with real TLS to
// local stand-ins of Claude's token endpoint and API: the refresh the proxy makes on the host for
// a session's request to the token endpoint is an outbound request like any other, so it is
// admitted in the session's audit log before it goes (write-ahead) and its end line says that
// the host's login was refreshed upstream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type http from 'node:http';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream, tmpDir, toResolveMap } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { claudeApiStandIn, claudeStore, claudeTokenStandIn, realAccess, realRefresh } from '../helpers/claude-login-standin.js';
import type { ClaudeTokenStandIn } from '../helpers/claude-login-standin.js';

let pki: TestPki;
let storeDir: string;
let token: ClaudeTokenStandIn;
let tokenServer: TestUpstream;
let apiServer: TestUpstream;
let airlock: AirlockHandle;
let ca: string;
let refreshPlaceholder: string;
/** The session's audit log as it stood when each grant reached the token endpoint. */
const auditAtGrant: string[] = [];

beforeAll(async () => {
  pki = await createTestPki();
  const first = { accessToken: realAccess(), refreshToken: realRefresh() };
  token = claudeTokenStandIn(first);
  const api = claudeApiStandIn(() => token.current.accessToken, 'hi');
  tokenServer = await startHttpsUpstream({
    pki,
    names: ['platform.claude.com'],
    handler: (req: http.IncomingMessage, res: http.ServerResponse) => {
      auditAtGrant.push(readFileSync(join(airlock.session.dir, 'audit.jsonl'), 'utf8'));
      token.handler(req, res);
    },
  });
  apiServer = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: api.handler });
  storeDir = tmpDir('airlock-red-claude-');
  const store = join(storeDir, '.credentials.json');
  // Expired: the session's refresh goes upstream.
  writeFileSync(store, claudeStore(first, Date.now() - 60_000), { mode: 0o600 });
  const resolve = { 'platform.claude.com:443': tokenServer.port, 'api.anthropic.com:443': apiServer.port };
  airlock = await startAirlock({
    policy: `version: 1
name: red-claude
allow:
  - host: api.anthropic.com
  - host: platform.claude.com
credentials:
  - preset: claude-login
    secret: { claude_login: ${store} }
`,
    resolve,
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({}, { ca: [pki.caPem], resolve: toResolveMap(resolve) }),
  });
  const files = airlock.session.credentials.sessionFiles ?? [];
  refreshPlaceholder = (JSON.parse(files.find((f) => f.path === '.claude/.credentials.json')!.content) as { claudeAiOauth: { refreshToken: string } }).claudeAiOauth.refreshToken;
  ca = readFileSync(airlock.bundlePath, 'utf8');
}, 60_000);

afterAll(async () => {
  await airlock?.close();
  await tokenServer?.close();
  await apiServer?.close();
  rmTmp(pki?.dir, storeDir);
});

function post(path: string, body: unknown) {
  return httpsViaProxy({
    proxyPort: airlock.port,
    proxyAuthorization: airlock.proxyAuthorization,
    url: `https://platform.claude.com${path}`,
    ca,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('Claude login: the host-side refresh in the session audit', () => {
  it('is admitted before the token endpoint sees it, and its end line says the login was refreshed upstream', async () => {
    const res = await post('/v1/oauth/token', { grant_type: 'refresh_token', refresh_token: refreshPlaceholder, client_id: '9d1c250a-e61b-44d9-88ed-5944d1962f5e' });
    expect(res.status, res.body).toBe(200);
    expect(token.grants).toHaveLength(1);
    // Write-ahead: when the grant arrived, the session's log already had the admit line.
    expect(auditAtGrant).toHaveLength(1);
    const admits = auditAtGrant[0]!
      .split('\n')
      .filter((l) => l.includes('"event":"admit"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(admits.find((a) => a.host === 'platform.claude.com' && a.path === '/v1/oauth/token')).toMatchObject({ method: 'POST', action: 'allow', credentials: ['claude-login'] });
    const line = await airlock.waitForAudit((l) => l.host === 'platform.claude.com' && l.kind === 'request');
    expect(line).toMatchObject({ action: 'allow', status: 200, credentials: ['claude-login'] });
    expect(line.detail).toMatch(/refreshed upstream/);
    // A second refresh within 30 s is answered from the pair just refreshed: nothing goes upstream, and the line says so.
    const next = (JSON.parse(res.body) as { refresh_token: string }).refresh_token;
    const again = await post('/v1/oauth/token', { grant_type: 'refresh_token', refresh_token: next });
    expect(again.status, again.body).toBe(200);
    expect(token.grants).toHaveLength(1);
    const lines = (await airlock.auditLines()).filter((l) => l.host === 'platform.claude.com' && l.kind === 'request');
    expect(lines).toHaveLength(2);
    expect(lines[1]!.detail).not.toMatch(/refreshed upstream/);
    const text = readFileSync(join(airlock.session.dir, 'audit.jsonl'), 'utf8');
    for (const pair of token.issued) for (const v of [pair.accessToken, pair.refreshToken]) expect(secretLeaks(text + res.body + again.body, v)).toEqual([]);
  });
});

describe('Claude login: other spellings of the token endpoint', () => {
  it('are refused by the proxy and never reach the token endpoint (servers that decode, merge slashes or drop ;params would serve them)', async () => {
    const before = token.bodies.length;
    for (const path of ['//v1/oauth/token', '/v1//oauth/token', '/v1/oauth/token;x', '/v1/oauth/%74oken', '/v1/oauth/%2574oken', '/V1/OAuth/Token', '/v1/oauth/token%2F', '/v1/oauth/token%3Bx', '/v1/oauth/token%20', '/v1/oauth//token/revoke']) {
      const res = await post(path, { grant_type: 'refresh_token', refresh_token: 'sk-ant-ort01-guessed0000000000', client_id: 'x' });
      expect(res.status, path).toBe(400);
      expect(res.body, path).toContain('claude-login');
    }
    expect(token.bodies.slice(before)).toEqual([]);
  });
});

describe('Claude login: a refresh the host makes for an API request', () => {
  it('is admitted in the audit (the API request, with the credential) before the token endpoint sees it; the line says the login was refreshed', async () => {
    const first = { accessToken: realAccess(), refreshToken: realRefresh() };
    const tok = claudeTokenStandIn(first);
    const seenAtGrant: string[] = [];
    let session: AirlockHandle | undefined;
    const tokSrv = await startHttpsUpstream({
      pki,
      names: ['platform.claude.com'],
      handler: (req, res) => {
        seenAtGrant.push(readFileSync(join(session!.session.dir, 'audit.jsonl'), 'utf8'));
        tok.handler(req, res);
      },
    });
    const apiSrv = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: claudeApiStandIn(() => tok.current.accessToken, 'hi').handler });
    const dir = tmpDir('airlock-red-claude-api-');
    const store = join(dir, '.credentials.json');
    writeFileSync(store, claudeStore(first, Date.now() - 60_000), { mode: 0o600 });
    const resolve = { 'platform.claude.com:443': tokSrv.port, 'api.anthropic.com:443': apiSrv.port };
    try {
      session = await startAirlock({
        policy: `version: 1\nname: red-claude-api\nallow:\n  - host: api.anthropic.com\ncredentials:\n  - preset: claude-login\n    secret: { claude_login: ${store} }\n`,
        resolve,
        upstreamCa: [pki.caPem],
        credentials: credentialsFactory({}, { ca: [pki.caPem], resolve: toResolveMap(resolve) }),
      });
      const files = session.session.credentials.sessionFiles ?? [];
      const access = (JSON.parse(files.find((f) => f.path === '.claude/.credentials.json')!.content) as { claudeAiOauth: { accessToken: string } }).claudeAiOauth.accessToken;
      const res = await httpsViaProxy({
        proxyPort: session.port,
        proxyAuthorization: session.proxyAuthorization,
        url: 'https://api.anthropic.com/v1/messages',
        ca: readFileSync(session.bundlePath, 'utf8'),
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${access}` },
        body: JSON.stringify({ model: 'm', messages: [] }),
      });
      expect(res.status, res.body).toBe(200);
      expect(tok.grants).toHaveLength(1);
      const admits = seenAtGrant[0]!
        .split('\n')
        .filter((l) => l.includes('"event":"admit"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(admits.find((a) => a.host === 'api.anthropic.com')).toMatchObject({ path: '/v1/messages', action: 'allow', credentials: ['claude-login'] });
      const line = await session.waitForAudit((l) => l.host === 'api.anthropic.com' && l.kind === 'request');
      expect(line).toMatchObject({ status: 200, credentials: ['claude-login'] });
      expect(line.detail).toBe('claude-login: refreshed upstream on the host for this request');
      const text = readFileSync(join(session.session.dir, 'audit.jsonl'), 'utf8');
      // One admit line for the one exchange.
      expect(text.split('\n').filter((l) => l.includes('"event":"admit"'))).toHaveLength(1);
      for (const pair of tok.issued) for (const v of [pair.accessToken, pair.refreshToken]) expect(secretLeaks(text + res.body, v)).toEqual([]);
    } finally {
      await session?.close();
      await tokSrv.close();
      await apiSrv.close();
      rmTmp(dir);
    }
  });
});

describe('Claude login: a session whose audit log cannot be written', () => {
  it('gets 503 for its refresh and for an API request needing one; nothing reaches the token endpoint', async () => {
    const first = { accessToken: realAccess(), refreshToken: realRefresh() };
    const tok = claudeTokenStandIn(first);
    const tokSrv = await startHttpsUpstream({ pki, names: ['platform.claude.com'], handler: tok.handler });
    const apiSrv = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: claudeApiStandIn(() => tok.current.accessToken, 'hi').handler });
    const dir = tmpDir('airlock-red-claude-closed-');
    const store = join(dir, '.credentials.json');
    writeFileSync(store, claudeStore(first, Date.now() - 60_000), { mode: 0o600 });
    const resolve = { 'platform.claude.com:443': tokSrv.port, 'api.anthropic.com:443': apiSrv.port };
    let session: AirlockHandle | undefined;
    try {
      session = await startAirlock({
        policy: `version: 1\nname: red-claude-closed\nallow:\n  - host: api.anthropic.com\n  - host: platform.claude.com\ncredentials:\n  - preset: claude-login\n    secret: { claude_login: ${store} }\n`,
        resolve,
        upstreamCa: [pki.caPem],
        credentials: credentialsFactory({}, { ca: [pki.caPem], resolve: toResolveMap(resolve) }),
      });
      const login = (JSON.parse((session.session.credentials.sessionFiles ?? []).find((f) => f.path === '.claude/.credentials.json')!.content) as { claudeAiOauth: { accessToken: string; refreshToken: string } }).claudeAiOauth;
      const sessionCa = readFileSync(session.bundlePath, 'utf8');
      // The log stops taking lines (as on a full disk): nothing may go upstream for the session.
      await session.session.audit.close();
      const via = (url: string, body: unknown, headers: Record<string, string> = {}) =>
        httpsViaProxy({ proxyPort: session!.port, proxyAuthorization: session!.proxyAuthorization, url, ca: sessionCa, method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
      const refresh = await via('https://platform.claude.com/v1/oauth/token', { grant_type: 'refresh_token', refresh_token: login.refreshToken });
      expect(refresh.status, refresh.body).toBe(503);
      const api = await via('https://api.anthropic.com/v1/messages', { model: 'm', messages: [] }, { authorization: `Bearer ${login.accessToken}` });
      expect(api.status, api.body).toBe(503);
      expect(tok.grants).toEqual([]);
      // The refresh placeholder was not spent.
      expect(readFileSync(store, 'utf8')).toContain(first.refreshToken);
    } finally {
      await session?.close();
      await tokSrv.close();
      await apiSrv.close();
      rmTmp(dir);
    }
  });
});
