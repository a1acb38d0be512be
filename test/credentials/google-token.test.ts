// Google access tokens minted on the host (secret: { google: KEY_FILE | adc }) through a real proxy
// with real TLS: a stand-in of Google's token endpoint (oauth2.googleapis.com, reached through the
// resolve override) that verifies the service account's JWT assertion with the key's public half
// (node:crypto here, not the library that signed it), and a stand-in of a Vertex AI endpoint that
// answers only the current real bearer. The session holds a placeholder; the token is refreshed on
// the host when it is about to expire; bad key files, refusals, 500s, garbage and a slow endpoint
// each give a clear error naming the credential, with no secret in any message.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type http from 'node:http';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { createTestPki, rmTmp, runCli, sleep, startAirlock, startHttpsUpstream, tmpDir, toResolveMap, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpsViaProxy } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory, SecretSourceError } from '../../src/credentials/sources.js';
import { googleSecret } from '../../src/credentials/google-token.js';
import { CredentialUnavailable } from '../../src/credentials/broker.js';
import { parsePolicy } from '../../src/policy/index.js';

const TOKEN_URL = 'https://oauth2.googleapis.com/token';
const VERTEX = 'us-central1-aiplatform.googleapis.com';
const EMAIL = 'vertex-runner@airlock-test.iam.gserviceaccount.com';

let pki: TestPki;
let dir: string;
let privateKey: string;
let publicKey: KeyObject;
let keyFile: string;

type Mode = 'ok' | 'invalid_grant' | 'error500' | 'garbage' | 'slow';

/** The token endpoint: a jwt-bearer grant with a valid assertion, or an ADC refresh_token grant. */
interface TokenStandIn {
  mode: Mode;
  expiresIn: number;
  issued: string[];
  requests: Array<Record<string, string>>;
  /** Why assertions were refused. */
  refused: string[];
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
}

const ADC = { client_id: 'adc-client.apps.googleusercontent.com', client_secret: `adc-secret-${randomBytes(8).toString('hex')}`, refresh_token: `1//adc-refresh-${randomBytes(16).toString('hex')}` };

function tokenStandIn(): TokenStandIn {
  const s: TokenStandIn = {
    mode: 'ok',
    expiresIn: 3600,
    issued: [],
    requests: [],
    refused: [],
    handler: (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
        s.requests.push(form);
        const json = (status: number, v: unknown) => {
          res.writeHead(status, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify(v));
        };
        if (req.method !== 'POST' || req.url !== '/token') return json(404, { error: 'not_found' });
        if (s.mode === 'slow') return;
        if (s.mode === 'error500') return json(500, { error: 'internal_failure' });
        if (s.mode === 'garbage') {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end('{"access_token": ');
          return;
        }
        const refuse = (why: string) => {
          s.refused.push(why);
          json(400, { error: 'invalid_grant', error_description: why });
        };
        if (s.mode === 'invalid_grant') return refuse('account disabled');
        if (form.grant_type === 'refresh_token') {
          if (form.client_id !== ADC.client_id || form.client_secret !== ADC.client_secret || form.refresh_token !== ADC.refresh_token) return refuse('bad adc');
        } else {
          if (form.grant_type !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return refuse('grant');
          const parts = (form.assertion ?? '').split('.');
          if (parts.length !== 3) return refuse('not a JWT');
          const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as { alg?: string };
          const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
          if (header.alg !== 'RS256') return refuse('alg');
          if (!verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, Buffer.from(parts[2]!, 'base64url'))) return refuse('Invalid JWT Signature.');
          const now = Math.floor(Date.now() / 1000);
          if (claims.iss !== EMAIL || claims.aud !== TOKEN_URL || claims.scope !== 'https://www.googleapis.com/auth/cloud-platform') return refuse('claims');
          if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number' || Math.abs(claims.iat - now) > 60 || claims.exp - claims.iat > 3600) return refuse('times');
        }
        const token = `ya29.REAL${randomBytes(24).toString('hex')}`;
        s.issued.push(token);
        json(200, { access_token: token, expires_in: s.expiresIn, token_type: 'Bearer' });
      });
    },
  };
  return s;
}

beforeAll(async () => {
  pki = await createTestPki();
  dir = tmpDir('airlock-google-');
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  privateKey = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  publicKey = pair.publicKey;
  keyFile = join(dir, 'sa.json');
  writeFileSync(keyFile, serviceAccount(privateKey), { mode: 0o600 });
});

afterAll(() => rmTmp(pki?.dir, dir));

function serviceAccount(key: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    type: 'service_account',
    project_id: 'airlock-test',
    private_key_id: randomBytes(8).toString('hex'),
    private_key: key,
    client_email: EMAIL,
    client_id: '1234567890',
    token_uri: TOKEN_URL,
    ...extra,
  });
}

interface Rig {
  airlock: AirlockHandle;
  token: TokenStandIn;
  tokenServer: TestUpstream;
  vertexSeen: Array<string | undefined>;
  placeholder: string;
  logs: string[];
  call(bearer?: string): Promise<{ status: number; body: string }>;
  everything(): Promise<string>;
}

const rigs: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (rigs.length) await rigs.pop()!();
});

async function rig(secret: string, env: NodeJS.ProcessEnv = {}): Promise<Rig> {
  const token = tokenStandIn();
  const tokenServer = await startHttpsUpstream({ pki, names: ['oauth2.googleapis.com'], handler: token.handler });
  const vertexSeen: Array<string | undefined> = [];
  const vertex = await startHttpsUpstream({
    pki,
    names: [VERTEX],
    handler: (req, res) => {
      const bearer = /^Bearer (.*)$/.exec(String(req.headers.authorization ?? ''))?.[1];
      vertexSeen.push(bearer);
      const ok = bearer !== undefined && bearer === token.issued.at(-1);
      res.writeHead(ok ? 200 : 401, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(ok ? { candidates: [{ content: 'hi from vertex' }] } : { error: { code: 401, status: 'UNAUTHENTICATED' } }));
      req.resume();
    },
  });
  const resolve = { 'oauth2.googleapis.com:443': tokenServer.port, [`${VERTEX}:443`]: vertex.port };
  const logs: string[] = [];
  const airlock = await startAirlock({
    policy: `version: 1
name: vertex
allow:
  - host: ${VERTEX}
credentials:
  - preset: vertex
    secret: ${secret}
`,
    resolve,
    upstreamCa: [pki.caPem],
    log: pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (logs.push(c.toString('utf8')), cb()) })),
    credentials: credentialsFactory(env, { ca: [pki.caPem], resolve: toResolveMap(resolve) }),
  });
  rigs.push(async () => {
    await airlock.close();
    await Promise.all([tokenServer.close(), vertex.close()]);
  });
  const placeholder = airlock.session.credentials.sessionEnv.GOOGLE_OAUTH_ACCESS_TOKEN!;
  const ca = readFileSync(airlock.bundlePath, 'utf8');
  return {
    airlock,
    token,
    tokenServer,
    vertexSeen,
    placeholder,
    logs,
    call: (bearer = placeholder) =>
      httpsViaProxy({
        proxyPort: airlock.port,
        proxyAuthorization: airlock.proxyAuthorization,
        url: `https://${VERTEX}/v1/projects/airlock-test/locations/us-central1/publishers/anthropic/models/claude:rawPredict`,
        ca,
        method: 'POST',
        headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
        body: '{}',
      }),
    everything: async () => {
      await airlock.auditLines();
      let out = logs.join('');
      for (const f of readdirSync(airlock.stateDir, { recursive: true }) as string[]) {
        const p = join(airlock.stateDir, f);
        if (statSync(p).isFile()) out += readFileSync(p, 'latin1');
      }
      return out;
    },
  };
}

function expectNoSecret(text: string, secrets: readonly string[], where: string): void {
  for (const s of secrets) expect(secretLeaks(text, s), where).toEqual([]);
}

describe('Google access tokens minted on the host', () => {
  it('a service-account key: the token endpoint gets a JWT it verifies with the public key, Vertex gets the real bearer, the session only its placeholder', async () => {
    const r = await rig(`{ google: ${keyFile} }`);
    expect(r.placeholder).toMatch(/^ya29\.airlock-vertex-/);
    expect(r.airlock.session.credentials.sessionEnv.CLOUDSDK_AUTH_ACCESS_TOKEN).toBe(r.placeholder);
    // Nothing is minted before a request needs it.
    expect(r.token.requests).toHaveLength(0);
    const res = await r.call();
    expect(res.status, res.body).toBe(200);
    expect(res.body).toContain('hi from vertex');
    expect(r.token.refused).toEqual([]);
    expect(r.token.issued).toHaveLength(1);
    expect(r.vertexSeen).toEqual([r.token.issued[0]]);
    // The next request reuses the token.
    expect((await r.call()).status).toBe(200);
    expect(r.token.issued).toHaveLength(1);
    await waitFor(async () => (await r.airlock.auditLines()).filter((l) => l.kind === 'request').length === 2 || null);
    const audit = (await r.airlock.auditLines()).filter((l) => l.kind === 'request');
    for (const l of audit) expect(l).toMatchObject({ host: VERTEX, action: 'allow', status: 200, credentials: ['vertex'] });
    expectNoSecret(await r.everything(), [...r.token.issued, privateKey.split('\n')[5]!], 'the proxy log and state dir');
  });

  it('refreshed on the host when it is about to expire: a new token, the session unchanged', async () => {
    const r = await rig(`{ google: ${keyFile} }`);
    // Lives 302 s: google-auth-library renews 5 minutes before expiry, so it is stale after 2 s.
    r.token.expiresIn = 302;
    expect((await r.call()).status).toBe(200);
    expect((await r.call()).status).toBe(200);
    expect(r.token.issued).toHaveLength(1);
    await sleep(2_500);
    expect((await r.call()).status).toBe(200);
    expect(r.token.issued).toHaveLength(2);
    expect(r.vertexSeen).toEqual([r.token.issued[0], r.token.issued[0], r.token.issued[1]]);
  });

  it("the user's ADC (authorized_user) works the same: its refresh token stays on the host", async () => {
    const adcFile = join(dir, 'adc.json');
    writeFileSync(adcFile, JSON.stringify({ type: 'authorized_user', ...ADC }), { mode: 0o600 });
    const r = await rig('{ google: adc }', { GOOGLE_APPLICATION_CREDENTIALS: adcFile });
    const res = await r.call();
    expect(res.status, res.body).toBe(200);
    expect(r.token.requests[0]).toMatchObject({ grant_type: 'refresh_token', refresh_token: ADC.refresh_token });
    expectNoSecret(await r.everything(), [ADC.refresh_token, ADC.client_secret, ...r.token.issued], 'the proxy log and state dir');
  });

  it('a bearer the session made itself reaches Vertex unchanged (401 there); nothing is minted for it', async () => {
    const r = await rig(`{ google: ${keyFile} }`);
    const own = await r.call('ya29.made-up-by-the-session');
    expect(own.status).toBe(401);
    expect(r.vertexSeen).toEqual(['ya29.made-up-by-the-session']);
    expect(r.token.requests).toHaveLength(0);
  });
});

describe('Google access tokens: failures and bad input', () => {
  for (const [mode, status] of [
    ['invalid_grant', 401],
    ['error500', 502],
    ['garbage', 502],
  ] as const) {
    it(`the token endpoint answers ${mode}: ${status} naming the credential and the fix, an audit line, a log error, then a backoff`, async () => {
      const r = await rig(`{ google: ${keyFile} }`);
      r.token.mode = mode;
      const res = await r.call();
      expect(res.status, res.body).toBe(status);
      expect(res.body).toContain('credential "vertex"');
      expect(res.body).toMatch(status === 401 ? /Google refused the host's credentials/ : /the token endpoint failed/);
      const tries = r.token.requests.length;
      console.log(`Google token endpoint ${mode}: ${tries} request(s) for the first failure`);
      // Bounded: google-auth-library's own retries of a 5xx (at most 3 more), none for a refusal.
      expect(tries).toBeLessThanOrEqual(status === 401 ? 1 : 4);
      expect(tries).toBeGreaterThanOrEqual(1);
      const again = await r.call();
      expect(again.status).toBe(status);
      expect(r.token.requests.length, 'no new try during the backoff').toBe(tries);
      expect(r.vertexSeen).toEqual([]);
      await waitFor(async () => (await r.airlock.auditLines()).filter((l) => l.kind === 'request').length === 2 || null);
      const audit = (await r.airlock.auditLines()).filter((l) => l.kind === 'request');
      for (const l of audit) expect(l).toMatchObject({ action: 'deny', reason: 'upstream_error', status });
      const errors = r.logs.filter((l) => l.includes('"level":50')).join('');
      expect(errors).toContain(keyFile);
      expectNoSecret(res.body + again.body + (await r.everything()), [privateKey.split('\n')[5]!, ...r.token.issued], 'answers, log, state dir');
    }, 30_000);
  }

  it('a key the token endpoint cannot verify (another key pair): refused there, 401 to the session', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const wrong = join(dir, 'wrong-key.json');
    writeFileSync(wrong, serviceAccount(other), { mode: 0o600 });
    const r = await rig(`{ google: ${wrong} }`);
    const res = await r.call();
    expect(res.status).toBe(401);
    expect(r.token.refused).toEqual(['Invalid JWT Signature.']);
  });

  it('a slow token endpoint: a bounded wait, then 502', async () => {
    const token = tokenStandIn();
    token.mode = 'slow';
    const server = await startHttpsUpstream({ pki, names: ['oauth2.googleapis.com'], handler: token.handler });
    try {
      const handle = googleSecret('vertex', keyFile, ['https://www.googleapis.com/auth/cloud-platform'], {}, {
        ca: [pki.caPem],
        resolve: toResolveMap({ 'oauth2.googleapis.com:443': server.port }),
        timeoutMs: 200,
      });
      const started = Date.now();
      const err = await handle.current().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CredentialUnavailable);
      expect((err as CredentialUnavailable).status).toBe(502);
      const took = Date.now() - started;
      console.log(`slow Google token endpoint: ${token.requests.length} request(s), gave up after ${took} ms`);
      expect(took).toBeLessThan(10_000);
      expect(token.requests.length).toBeGreaterThanOrEqual(1);
      expect(token.requests.length).toBeLessThanOrEqual(4);
      expect((err as CredentialUnavailable).message).toContain('no answer');
    } finally {
      await server.close();
    }
  }, 30_000);

  it('a malformed service-account file is a clear start error naming the file (and field), with no key material in it', async () => {
    const bad = join(dir, 'bad-sa.json');
    const policy = (secret: string) => parsePolicy(`version: 1\nname: x\ncredentials:\n  - preset: vertex\n    secret: ${secret}\n`, 'p.yaml');
    const keyLine = privateKey.split('\n')[3]!;
    const cases: Array<[string, RegExp]> = [
      ['{ not json', /is not JSON; download a new JSON key/],
      [serviceAccount('-----BEGIN PRIVATE KEY-----\n' + keyLine + '\n-----END PRIVATE KEY-----\n'), /private_key \(not an RSA private key in PEM\) is missing or malformed/],
      [serviceAccount(privateKey, { client_email: undefined }), /client_email is missing or malformed/],
      [serviceAccount(privateKey, { type: 'external_account' }), /type "external_account" is not supported/],
      ['[]', /is not a JSON object/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(bad, text, { mode: 0o600 });
      const err = await credentialsFactory({})(policy(`{ google: ${bad} }`), 's').catch((e: unknown) => e);
      expect(err, text.slice(0, 30)).toBeInstanceOf(SecretSourceError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).toContain(bad);
      expect((err as Error).message).toContain('credential "vertex"');
      expect(secretLeaks((err as Error).message, keyLine)).toEqual([]);
    }
    const missing = await credentialsFactory({ HOME: dir })(policy('{ google: adc }'), 's').catch((e: unknown) => e);
    expect((missing as Error).message).toMatch(/cannot read the application default credentials .*application_default_credentials\.json \(ENOENT\); run `gcloud auth application-default login`/);
  });

  it('airlock exec with a malformed key file: exits 2 naming the credential and the file, no stack trace, the command never runs', async () => {
    const bad = join(dir, 'exec-bad-sa.json');
    writeFileSync(bad, serviceAccount('not a key'), { mode: 0o600 });
    const policy = join(dir, 'exec-policy.yaml');
    writeFileSync(policy, `version: 1\nname: t\nallow: []\ncredentials:\n  - preset: vertex\n    secret: { google: ${bad} }\n`);
    const marker = join(dir, 'ran');
    const r = await runCli(['exec', '--policy', policy, '--state-dir', join(dir, 'exec-state'), '--', 'touch', marker]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('credential "vertex"');
    expect(r.stderr).toContain(`${bad}: private_key (not an RSA private key in PEM) is missing or malformed`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(marker)).toBe(false);
  });

  it('policy: google secrets take scopes; scopes elsewhere and bad scopes are refused with the field named', () => {
    const p = parsePolicy(`version: 1\nname: x\ncredentials:\n  - preset: vertex\n    secret: { google: adc, scopes: [https://www.googleapis.com/auth/cloud-platform.read-only] }\n`, 'p.yaml');
    expect(p.credentials[0]!.secret).toEqual({ kind: 'google', keyFile: null, scopes: ['https://www.googleapis.com/auth/cloud-platform.read-only'] });
    expect(() => parsePolicy(`version: 1\nname: x\ncredentials:\n  - preset: vertex\n    secret: { env: X, scopes: [a] }\n`, 'p.yaml')).toThrow(/scopes.*only applies to google secrets/);
    expect(() => parsePolicy(`version: 1\nname: x\ncredentials:\n  - preset: vertex\n    secret: { google: adc, scopes: [] }\n`, 'p.yaml')).toThrow(/is an empty list/);
    expect(() => parsePolicy(`version: 1\nname: x\ncredentials:\n  - preset: vertex\n    secret: { google: adc, file: /x }\n`, 'p.yaml')).toThrow(/gives both file and google/);
  });
});
