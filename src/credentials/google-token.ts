// Google access tokens minted on the host (secret: { google: KEY_FILE | adc }), for Vertex AI and
// other Google APIs: google-auth-library signs the service account's JWT assertion (or uses the
// user's ADC refresh token) and refreshes the access token before it expires; the session holds a
// placeholder bearer. Its token requests go through tokenRequest (the operator's upstream roots
// and --resolve), so they reach oauth2.googleapis.com the way the proxy's own requests would.
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { GoogleAuth } from 'google-auth-library';
import { KnownValues } from './known-values.js';
import type { SecretHandle } from './session-broker.js';
import { CredentialUnavailable } from './broker.js';
import { fetchOver } from './token-http.js';
import { loosePath } from './loose-path.js';
import type { TokenTransport } from './token-http.js';

/** A key or ADC file that cannot be used: names the file and the field, never a value. */
export class GoogleCredentialError extends Error {}

const BACKOFF_FIRST_MS = 5_000;
const BACKOFF_MAX_MS = 5 * 60_000;

/** Where the user's application default credentials are: the variable, else gcloud's file. */
export function adcPath(env: NodeJS.ProcessEnv): string {
  if (env.GOOGLE_APPLICATION_CREDENTIALS) return env.GOOGLE_APPLICATION_CREDENTIALS;
  return join(env.HOME || homedir(), '.config', 'gcloud', 'application_default_credentials.json');
}

/** Checks a service-account key or ADC file; returns its JSON. */
export function readGoogleCredentials(file: string, adc: boolean): Record<string, unknown> {
  const fix = adc ? 'run `gcloud auth application-default login` on the host, or point GOOGLE_APPLICATION_CREDENTIALS at a key file' : 'download a new JSON key for the service account';
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new GoogleCredentialError(`cannot read ${adc ? 'the application default credentials ' : 'the service-account key '}${file} (${(err as NodeJS.ErrnoException).code}); ${fix}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new GoogleCredentialError(`${file} is not JSON; ${fix}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new GoogleCredentialError(`${file} is not a JSON object; ${fix}`);
  const o = json as Record<string, unknown>;
  const bad = (field: string) => new GoogleCredentialError(`${file}: ${field} is missing or malformed; ${fix}`);
  if (o.type === 'service_account') {
    if (typeof o.client_email !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(o.client_email)) throw bad('client_email');
    if (typeof o.private_key !== 'string') throw bad('private_key');
    try {
      const key = createPrivateKey(o.private_key);
      if (key.asymmetricKeyType !== 'rsa') throw new Error('not rsa');
    } catch {
      throw bad('private_key (not an RSA private key in PEM)');
    }
    return o;
  }
  if (o.type === 'authorized_user' && adc) {
    for (const field of ['client_id', 'client_secret', 'refresh_token']) if (typeof o[field] !== 'string' || o[field] === '') throw bad(field);
    return o;
  }
  throw new GoogleCredentialError(
    `${file}: type ${JSON.stringify(String(o.type ?? '')).slice(0, 40)} is not supported (${adc ? 'service_account or authorized_user' : 'a service-account key has type service_account'}); ${fix}`,
  );
}

interface TokenClient {
  getAccessToken(): Promise<{ token?: string | null }>;
}

/**
 * The handle for one credential: the token google-auth-library keeps (refreshed five minutes
 * before expiry), coalesced, with a bounded backoff after failures.
 */
export function googleSecret(name: string, keyFile: string | null, scopes: readonly string[], env: NodeJS.ProcessEnv, transport: TokenTransport, now: () => number = Date.now): SecretHandle {
  const file = keyFile ?? adcPath(env);
  const json = readGoogleCredentials(file, keyFile === null);
  // The library sends a token request only when its token is missing or about to expire: just
  // before it does, the request that needs the token is admitted in the session's audit.
  const send = fetchOver({ timeoutMs: 10_000, ...transport });
  let beforeUpstream: (() => boolean) | null = null;
  let refusedToSend = false;
  const guarded = (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    if (beforeUpstream && !beforeUpstream()) {
      refusedToSend = true;
      throw new Error('the token request was not admitted');
    }
    return send(input, init);
  }) as typeof fetch;
  // google-auth-library loads at the first token: a session without a google: credential never
  // pays for it at start.
  let client: Promise<TokenClient> | null = null;
  const clientOf = () =>
    (client ??= import('google-auth-library').then(({ GoogleAuth, gaxios }) => {
      const auth = new GoogleAuth({ scopes: [...scopes] });
      // Every token request through tokenRequest: the operator's roots and --resolve, a deadline.
      // google-auth-library retries a token request that failed or timed out (at most 3 more
      // times): 10 s each bounds the wait.
      const transporter = new gaxios.Gaxios({ fetchImplementation: guarded });
      return auth.fromJSON(json as Parameters<GoogleAuth['fromJSON']>[0], { transporter }) as unknown as TokenClient;
    }).catch((err: unknown) => {
      client = null; // tried again at the next token, under the same backoff
      throw err;
    }));
  const known = new KnownValues();
  let running: Promise<string> | null = null;
  let failure: { error: CredentialUnavailable; until: number; backoff: number } | null = null;
  const what = `credential "${name}" (Google ${keyFile === null ? 'application default credentials' : 'service-account key'} ${file})`;
  const sessionMessage = (why: string) =>
    `Airlock: credential "${name}" (Google access token minted on the host) cannot be used: ${why}. ` +
    `Ask the operator to check the proxy log and ${keyFile === null ? 'the host\'s application default credentials' : 'the service-account key'}; the session needs no change.`;
  const mint = async (): Promise<string> => {
    try {
      const { token } = await (await clientOf()).getAccessToken();
      if (typeof token !== 'string' || token === '') throw new Error('no access_token in the answer');
      known.add(token);
      failure = null;
      return token;
    } catch (err) {
      // Not sent because the request needing it was refused: no failure of the source.
      if (refusedToSend) throw new Error('the token request was not admitted');
      const e = err as { response?: { status?: number; data?: { error?: unknown } }; message?: string };
      const status = e.response?.status;
      const code = typeof e.response?.data?.error === 'string' && /^[a-z_]{1,64}$/.test(e.response.data.error) ? e.response.data.error : null;
      const refused = status === 400 || status === 401 || status === 403;
      const error = refused
        ? new CredentialUnavailable(401, sessionMessage('Google refused the host\'s credentials (expired, revoked or deleted)'), `${what}: the token endpoint refused it (${status}${code ? ` ${code}` : ''}); ${keyFile === null ? 'run `gcloud auth application-default login` on the host' : 'create a new key for the service account'}`)
        : new CredentialUnavailable(502, sessionMessage('the token endpoint failed'), `${what}: token request failed (${status ?? 'no answer'}${code ? ` ${code}` : ''})`);
      const backoff = failure ? Math.min(failure.backoff * 2, BACKOFF_MAX_MS) : BACKOFF_FIRST_MS;
      failure = { error, until: now() + backoff, backoff };
      throw error;
    }
  };
  return {
    // IAM Credentials mints tokens and signs JWTs and blobs for service accounts, and IAM creates
    // service-account keys: either answers a request bearing the token with a new credential,
    // which the session would then hold in the clear.
    refuses: (request) => {
      // Their mTLS and regional names too (iamcredentials.mtls.googleapis.com, ...).
      const credentials = request.host.startsWith('iamcredentials.');
      const keys = request.host.startsWith('iam.') && /\/keys(?:[/:]|$)/.test(loosePath(request.pathWithQuery));
      return credentials || keys
        ? `credential "${name}" (Google access token minted on the host) is not sent to ${request.host}${keys ? "'s service-account keys" : ''}: the token or key it mints would be in the session in the clear; mint it on the host and give the session its own credential if it needs one`
        : null;
    },
    current: (admit) => {
      if (running) return running;
      if (failure && now() < failure.until) return Promise.reject(failure.error);
      beforeUpstream = admit ?? null;
      refusedToSend = false;
      running = mint().finally(() => {
        running = null;
        beforeUpstream = null;
      });
      return running;
    },
    known: () => known.list(),
    // Nothing is minted to check the session's environment: a value never minted cannot be in it.
    values: async () => known.list(),
  };
}
