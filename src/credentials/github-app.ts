// GitHub App installation tokens, one per session: the App's private key (read on the host) signs
// a short RS256 JWT, which GitHub exchanges for an installation token narrowed to the policy's
// repositories and permissions. The token lasts an hour; it is renewed before it expires, and the
// session only ever holds the stable placeholder it is swapped for.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { CredentialSpec, GithubAppSource } from '../policy/index.js';
import { KnownValues } from './known-values.js';
import type { SecretHandle } from './session-broker.js';
import { DEFAULT_RETRY, MintingFailed, SecretSourceError, withRetry } from './minting.js';
import type { RetryOptions } from './minting.js';
import { tokenRequest } from './token-http.js';
import type { TokenTransport } from './token-http.js';

// Renew this long before expiry (or at half the lifetime, for tokens issued for less).
const RENEW_BEFORE_MS = 5 * 60_000;
// After a failed mint, requests within this time get the same answer instead of a new attempt.
const FAILURE_HOLD_MS = 2_000;
const TOKEN_RE = /^[A-Za-z0-9_.-]{16,512}$/;

export interface GithubAppOptions {
  readonly retry?: RetryOptions;
  readonly now?: () => number;
}

/** Reads and checks the App's private key at start: a bad file is the user's to fix, named. */
function readAppKey(spec: CredentialSpec, path: string): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SecretSourceError(`credential "${spec.name}": cannot read the GitHub App private key file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    // Node's own message may quote the file's content; say what is wrong without it.
    throw new SecretSourceError(
      `credential "${spec.name}": the GitHub App private key file ${path} is not a PEM private key. Download a private key from the App's settings page (a .pem file starting with "-----BEGIN RSA PRIVATE KEY-----") and point private_key at it.`,
    );
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new SecretSourceError(`credential "${spec.name}": the private key in ${path} is a ${key.asymmetricKeyType ?? 'non-RSA'} key; GitHub App keys are RSA. Point private_key at the .pem file GitHub generated for the App.`);
  }
  return key;
}

/** GitHub's error message, made safe to print (it never holds a secret, but may hold anything). */
function githubMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === 'string') return `: ${parsed.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200)}`;
  } catch {
    // not JSON
  }
  return '';
}

export function githubAppSecret(spec: CredentialSpec, source: GithubAppSource, transport: TokenTransport, options: GithubAppOptions = {}): SecretHandle {
  const key = readAppKey(spec, source.privateKey);
  const pkcs8 = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  const now = options.now ?? Date.now;
  const endpoint = `${source.api}/app/installations/${encodeURIComponent(source.installationId)}/access_tokens`;
  const what = `credential "${spec.name}" (GitHub App ${source.appId}, installation ${source.installationId})`;
  const known = new KnownValues();
  let token: { value: string; renewAt: number; expiresAt: number } | null = null;
  let running: Promise<string> | null = null;
  let failed: { error: Error; until: number } | null = null;

  const unavailable = (why: string, fix: string, transient: boolean) =>
    new MintingFailed(
      `${what}: ${why}. ${fix}`,
      spec.name,
      `Airlock: credential "${spec.name}" (a GitHub App installation token) is unavailable: ${why}. ${fix} The operator can see details in the proxy log.`,
      transient,
    );

  const mintOnce = async (): Promise<string> => {
    const seconds = Math.floor(now() / 1000);
    // jose loads at the first token minted, not with every session (ARCHITECTURE.md, Start-up).
    const { importPKCS8, SignJWT } = await import('jose');
    const signingKey = await importPKCS8(pkcs8, 'RS256');
    // Backdated a minute for clock drift; GitHub refuses JWTs that live over ten minutes.
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuedAt(seconds - 60)
      .setExpirationTime(seconds + 540)
      .setIssuer(source.appId)
      .sign(signingKey);
    const request: Record<string, unknown> = {};
    if (source.repositories.length > 0) request.repositories = source.repositories;
    if (Object.keys(source.permissions).length > 0) request.permissions = source.permissions;
    let res;
    try {
      res = await tokenRequest(endpoint, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${jwt}`,
          accept: 'application/vnd.github+json',
          'x-github-api-version': '2022-11-28',
          'user-agent': 'airlock',
          'content-type': 'application/json',
        },
        body: JSON.stringify(request),
      }, transport);
    } catch (err) {
      throw unavailable(`the token endpoint ${endpoint} could not be reached (${(err as Error).message})`, 'Check the network and the api: setting of the github_app source.', true);
    }
    const status = res.status;
    const body = res.body.toString('utf8');
    if (status === 401) {
      // A JWT from a host whose clock is off is refused like one signed with the wrong key.
      const theirs = typeof res.headers.date === 'string' ? Date.parse(res.headers.date) : NaN;
      const skew = Number.isFinite(theirs) ? Math.round((theirs - now()) / 1000) : 0;
      if (Math.abs(skew) > 60) {
        throw unavailable(`GitHub refused the App's signed request (401${githubMessage(body)}); this host's clock is ${Math.abs(skew)} s ${skew > 0 ? 'behind' : 'ahead of'} GitHub's`, "Set this host's clock right (NTP); GitHub refuses App JWTs from a clock more than a minute off.", false);
      }
      throw unavailable(`GitHub refused the App's signed request (401${githubMessage(body)})`, `Check that app_id ${source.appId} is the App the private key ${source.privateKey} belongs to, that the key has not been deleted from the App's settings (else generate a new one), and that this host's clock is right.`, false);
    }
    if (status === 404) {
      throw unavailable(`installation ${source.installationId} of App ${source.appId} was not found (404)`, 'Check installation_id (the number in the installation\'s settings URL) and that the App is still installed there.', false);
    }
    if (status === 403 || status === 422) {
      throw unavailable(`GitHub refused to narrow the token (${status}${githubMessage(body)})`, 'Check that every repository under repositories: belongs to the installation and that permissions: asks for no more than the App was granted.', false);
    }
    if (status >= 500) {
      throw unavailable(`the token endpoint answered ${status}`, 'GitHub may be having trouble; the next request will try again.', true);
    }
    if (status !== 201 && status !== 200) {
      throw unavailable(`the token endpoint answered ${status}${githubMessage(body)}`, 'Check the api: setting of the github_app source.', false);
    }
    let parsed: { token?: unknown; expires_at?: unknown };
    try {
      parsed = JSON.parse(body) as typeof parsed;
    } catch {
      parsed = {};
    }
    const expiresAt = typeof parsed.expires_at === 'string' ? Date.parse(parsed.expires_at) : NaN;
    if (typeof parsed.token !== 'string' || !TOKEN_RE.test(parsed.token) || !Number.isFinite(expiresAt)) {
      throw unavailable(`the token endpoint ${endpoint} answered ${status} with something that is not an installation token`, 'Check the api: setting of the github_app source (it must be the GitHub REST API base).', false);
    }
    const value = parsed.token;
    known.add(value);
    const minted = now();
    const lifetime = Math.max(0, expiresAt - minted);
    token = { value, expiresAt, renewAt: expiresAt - Math.min(RENEW_BEFORE_MS, lifetime / 2) };
    return value;
  };

  const current = async (beforeUpstream?: () => boolean): Promise<string> => {
    const at = now();
    if (token && at < token.renewAt) return token.value;
    if (failed && at < failed.until) {
      // A token that is due for renewal but still valid keeps serving while GitHub is unreachable.
      if (token && at < token.expiresAt - 30_000) return token.value;
      throw failed.error;
    }
    // The request that needs the token is admitted in the session's audit before it is minted.
    if (!running && beforeUpstream && !beforeUpstream()) throw new Error('the token request was not admitted');
    running ??= withRetry(mintOnce, options.retry ?? DEFAULT_RETRY)
      .then(
        (value) => {
          failed = null;
          return value;
        },
        (err: Error) => {
          failed = { error: err, until: now() + FAILURE_HOLD_MS };
          if (token && now() < token.expiresAt - 30_000) return token.value;
          throw err;
        },
      )
      .finally(() => (running = null));
    return running;
  };

  // The session's token dies with it rather than an hour later; a failure here only means the
  // token lives out its hour.
  const close = async (): Promise<void> => {
    const live = token;
    token = null;
    if (!live || live.expiresAt <= now()) return;
    await tokenRequest(
      `${source.api}/installation/token`,
      { method: 'DELETE', headers: { authorization: `token ${live.value}`, accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28', 'user-agent': 'airlock' } },
      { ...transport, timeoutMs: 5_000 },
    ).catch(() => undefined);
  };

  // A minted value is new: no copy of it can be in the host's environment (nothing to mint for that).
  return { current, known: () => known.list(), values: async () => known.list(), close };
}
