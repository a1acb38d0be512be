// A Claude subscription login kept on the host (secret: { claude_login: PATH }). The real access
// and refresh tokens stay in the user's own login store (Claude Code's `.credentials.json`); the
// session gets a copy of it holding placeholders. The proxy swaps the access placeholder for the
// real access token on the credential's hosts, refreshes the real pair on the host when it is
// about to expire, and answers the session's own refresh requests to Claude's token endpoint
// itself: a refresh whose refresh token is the session's current placeholder gets new placeholders
// (the real pair is refreshed, or found already fresh); any other request there is refused and
// never forwarded.
//
// The rotated real pair is written back to the user's store (atomically, 0600, its owner kept):
// refresh tokens rotate, so keeping the new pair anywhere else would leave the user's own Claude
// Code on the host holding a dead refresh token.
//
// Past 500 lines on purpose: the shared store (one per login file: refresh, coalescing, backoff,
// write-back, what the upstream refused) and the per-session token endpoint it answers (placeholders,
// one use each, races) are one protocol; split, each half would need the other's state.
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { KnownValues } from './known-values.js';
import type { OutgoingRequest } from './broker.js';
import { CredentialUnavailable } from './broker.js';
import type { HostAnswer, SessionFile } from './broker.js';
import type { TokenTransport } from './token-http.js';
import { TokenEndpointError, tokenRequest } from './token-http.js';
import { loosePath } from './loose-path.js';

/** Where Claude Code refreshes its login (current versions; older ones used the console host). */
export const CLAUDE_TOKEN_URL = 'https://platform.claude.com/v1/oauth/token';
export const CLAUDE_TOKEN_HOSTS: readonly string[] = Object.freeze(['platform.claude.com', 'console.anthropic.com']);
const TOKEN_PATH = '/v1/oauth/token';
/** Claude Code's OAuth client, used when the store names none. */
const DEFAULT_CLIENT_ID = '9d1c250a-e61b-44d9-88ed-5944d1962f5e';
/** Refreshed this long before it expires (Claude Code does the same). */
const REFRESH_MARGIN_MS = 5 * 60_000;
/** A session's refresh within this long of the last one is answered from it, not upstream. */
const MIN_REFRESH_INTERVAL_MS = 30_000;
const BACKOFF_FIRST_MS = 5_000;
const BACKOFF_MAX_MS = 5 * 60_000;
const MAX_REQUEST_BYTES = 64 * 1024;
/**
 * A refresh placeholder just used gets the same answer for this long (requests that raced the
 * first, from other processes of the session): no new refresh, no new placeholder. After it,
 * the used placeholder is refused.
 */
const REUSE_GRACE_MS = 5_000;
const TOKEN_RE = /^[A-Za-z0-9_.~+/=-]{8,4096}$/;
const SCOPE_RE = /^[A-Za-z0-9_.:/-]{1,100}$/;

export interface ClaudeLogin {
  readonly accessToken: string;
  readonly refreshToken: string;
  /** Milliseconds since the epoch. */
  readonly expiresAt: number;
  readonly scopes: readonly string[];
  readonly subscriptionType: string | null;
  readonly rateLimitTier: string | null;
  readonly clientId: string | null;
}

/**
 * Claude Code's global settings with its onboarding marked done: without it an interactive
 * session asks for a theme and a login first, even with a token in CLAUDE_CODE_OAUTH_TOKEN.
 */
export const CLAUDE_ONBOARDING_FILE: SessionFile = Object.freeze({ path: '.claude.json', content: JSON.stringify({ hasCompletedOnboarding: true }), mode: 0o600, mergeJson: true });
/** The variable Claude Code reads a login token from (`claude setup-token` prints one). */
export const CLAUDE_TOKEN_ENV = 'CLAUDE_CODE_OAUTH_TOKEN';

/** A store that cannot be used at start: the message names the file and field, never a value. */
export class ClaudeLoginError extends Error {}

/** Reads the login out of a store's text; throws ClaudeLoginError naming the field. */
export function parseClaudeStore(text: string, file: string): { login: ClaudeLogin; doc: Record<string, unknown> } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ClaudeLoginError(`${file} is not JSON; it should be Claude Code's login store (log in on the host with \`claude\`, then /login)`);
  }
  const o = (doc as { claudeAiOauth?: unknown } | null)?.claudeAiOauth;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    throw new ClaudeLoginError(`${file} has no claudeAiOauth login (log in on the host with \`claude\`, then /login)`);
  }
  const f = o as Record<string, unknown>;
  const field = (name: string, ok: boolean) => {
    if (!ok) throw new ClaudeLoginError(`${file}: claudeAiOauth.${name} is missing or malformed (log in again on the host with \`claude\`, then /login)`);
  };
  field('accessToken', typeof f.accessToken === 'string' && TOKEN_RE.test(f.accessToken));
  field('refreshToken', typeof f.refreshToken === 'string' && TOKEN_RE.test(f.refreshToken));
  field('expiresAt', typeof f.expiresAt === 'number' && Number.isFinite(f.expiresAt));
  const scopes = Array.isArray(f.scopes) ? f.scopes : [];
  field('scopes', scopes.every((s) => typeof s === 'string' && SCOPE_RE.test(s)));
  const optional = (name: string) => {
    const v = f[name];
    field(name, v === undefined || v === null || (typeof v === 'string' && /^[\w.:-]{1,100}$/.test(v)));
    return (v as string | undefined) ?? null;
  };
  return {
    doc: doc as Record<string, unknown>,
    login: Object.freeze({
      accessToken: f.accessToken as string,
      refreshToken: f.refreshToken as string,
      expiresAt: f.expiresAt as number,
      scopes: Object.freeze(scopes as string[]),
      subscriptionType: optional('subscriptionType'),
      rateLimitTier: optional('rateLimitTier'),
      clientId: optional('clientId'),
    }),
  };
}

/**
 * One login store, shared by every session that uses it (refresh tokens rotate: two refreshes of
 * one pair would leave one of them with a dead token). Refreshes are coalesced, failures back off.
 */
export class ClaudeLoginStore {
  private login: ClaudeLogin;
  /** The store file's stamp when last read or written: a change means the host's CLI wrote it. */
  private stamp: string;
  private running: Promise<ClaudeLogin> | null = null;
  private lastRefresh = 0;
  /** When the current real pair became known here (read from the store or refreshed). */
  private currentSince: number;
  private failure: { error: CredentialUnavailable; until: number; backoff: number } | null = null;
  private readonly seen = new KnownValues();
  /** An access token the upstream answered 401 for, as seen by the proxy (see refresh()). */
  private rejected: string | null = null;
  /** Upstream refreshes made (for tests and the operator). */
  refreshes = 0;

  constructor(
    readonly credential: string,
    readonly file: string,
    private readonly transport: TokenTransport,
    private readonly now: () => number = Date.now,
    /** For the operator's log: what went wrong that the session need not wait for. */
    private readonly warn: (message: string) => void = () => {},
  ) {
    this.login = this.read();
    this.stamp = this.stampOf();
    this.currentSince = now();
  }

  private stampOf(): string {
    try {
      const st = statSync(this.file);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return '';
    }
  }

  private read(): ClaudeLogin {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      throw new ClaudeLoginError(`cannot read ${this.file} (${(err as NodeJS.ErrnoException).code}); log in on the host with \`claude\`, then /login`);
    }
    const { login } = parseClaudeStore(text, this.file);
    this.remember(login);
    return login;
  }

  private remember(login: ClaudeLogin): void {
    this.seen.add(login.accessToken);
    this.seen.add(login.refreshToken);
  }

  /** The login as last read or refreshed (for the session's placeholder store). */
  get snapshot(): ClaudeLogin {
    return this.login;
  }

  /** Real values seen so far (access and refresh tokens), for scrubbing echoes. */
  known(): readonly string[] {
    return this.seen.list();
  }

  /** Picks up a login the host's own CLI wrote meanwhile (it may have refreshed first). */
  private reloadIfChanged(): boolean {
    const stamp = this.stampOf();
    if (stamp === '' || stamp === this.stamp) return false;
    try {
      const fresh = this.read();
      this.stamp = stamp;
      if (fresh.refreshToken === this.login.refreshToken && fresh.accessToken === this.login.accessToken) return false;
      this.login = fresh;
      this.currentSince = this.now();
      return true;
    } catch {
      return false; // half-written or broken: keep what we have
    }
  }

  /** A usable access token: refreshed first when it expires within five minutes. */
  async access(beforeUpstream?: () => boolean): Promise<string> {
    this.reloadIfChanged();
    if (this.login.expiresAt - this.now() > REFRESH_MARGIN_MS) return this.login.accessToken;
    return (await this.refresh(0, beforeUpstream)).accessToken;
  }

  /** A response to a request the access token `value` went with: a 401 marks it refused. */
  observe(value: string, status: number): void {
    if (status === 401 && value === this.login.accessToken) this.rejected = value;
  }

  /**
   * A session's refresh: the real pair is refreshed upstream unless it is fresh and either newer
   * than what the session knows (`knownSince`, ms: the session only had a stale expiry), refreshed
   * within the last 30 s, or not refused by the upstream. A session that knows the current pair
   * and asks because the API answered it 401 (which the proxy saw, observe()) gets it refreshed;
   * one that merely asks gets the current pair again: a session cannot rotate the host's login at
   * will, nor push the values scrubbing remembers out with refreshes. Coalesced with a refresh
   * under way; during a backoff after a failure, fails at once. `beforeUpstream` runs just before
   * a refresh goes upstream (the session's audit admits it); false: nothing is sent and this
   * rejects.
   */
  refresh(knownSince: number, beforeUpstream?: () => boolean): Promise<ClaudeLogin> {
    if (this.running) return this.running;
    this.reloadIfChanged();
    const now = this.now();
    const fresh = this.login.expiresAt - now > REFRESH_MARGIN_MS;
    const refused = this.rejected === this.login.accessToken;
    if (fresh && (this.currentSince > knownSince || now - this.lastRefresh < MIN_REFRESH_INTERVAL_MS || !refused)) return Promise.resolve(this.login);
    if (this.failure && now < this.failure.until) return Promise.reject(this.failure.error);
    if (beforeUpstream && !beforeUpstream()) return Promise.reject(new Error('the refresh was not admitted'));
    this.running = this.refreshUpstream().finally(() => (this.running = null));
    return this.running;
  }

  private async refreshUpstream(): Promise<ClaudeLogin> {
    try {
      let next: ClaudeLogin;
      try {
        next = await this.exchange(this.login);
      } catch (err) {
        // The host's own CLI may have rotated the pair since we read it: try once with its pair.
        if (err instanceof CredentialUnavailable && err.status === 401 && this.reloadIfChanged()) next = await this.exchange(this.login);
        else throw err;
      }
      this.login = next;
      this.remember(next);
      this.lastRefresh = this.now();
      this.currentSince = this.lastRefresh;
      this.refreshes++;
      this.failure = null;
      try {
        this.writeBack(next);
      } catch (err) {
        // The new pair works here; only the host's own CLI is left with the rotated-out one.
        this.warn(`${this.what()}: cannot write the rotated login back (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); \`claude\` on the host will need /login again`);
      }
      return next;
    } catch (err) {
      const error =
        err instanceof CredentialUnavailable
          ? err
          : new CredentialUnavailable(502, this.sessionMessage('its refresh failed on the host'), `${this.what()}: refresh failed (${(err as Error).message})`);
      const backoff = this.failure ? Math.min(this.failure.backoff * 2, BACKOFF_MAX_MS) : BACKOFF_FIRST_MS;
      this.failure = { error, until: this.now() + backoff, backoff };
      throw error;
    }
  }

  private what(): string {
    return `credential "${this.credential}" (Claude login in ${this.file})`;
  }

  private sessionMessage(why: string): string {
    return (
      `Airlock: credential "${this.credential}" (the Claude login kept on the host) cannot be used: ${why}. ` +
      'Ask the operator to log in again on the host (`claude`, then /login) and to check the proxy log; the session needs no change.'
    );
  }

  /** One refresh_token grant at Claude's token endpoint; rotation kept (a missing refresh_token keeps the old). */
  private async exchange(login: ClaudeLogin): Promise<ClaudeLogin> {
    const body = JSON.stringify({
      grant_type: 'refresh_token',
      refresh_token: login.refreshToken,
      client_id: login.clientId ?? DEFAULT_CLIENT_ID,
      ...(login.scopes.length ? { scope: login.scopes.join(' ') } : {}),
    });
    let r;
    try {
      r = await tokenRequest(CLAUDE_TOKEN_URL, { headers: { 'content-type': 'application/json', accept: 'application/json' }, body }, this.transport);
    } catch (err) {
      const why = err instanceof TokenEndpointError && err.kind === 'slow' ? 'the token endpoint is too slow' : 'the token endpoint is unreachable';
      throw new CredentialUnavailable(502, this.sessionMessage(why), `${this.what()}: ${(err as Error).message}`);
    }
    let json: Record<string, unknown> | null = null;
    try {
      const parsed: unknown = JSON.parse(r.body.toString('utf8'));
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
    } catch {
      /* garbage: below */
    }
    const oauthError = typeof json?.error === 'string' && /^[a-z_]{1,64}$/.test(json.error) ? json.error : null;
    if (r.status === 400 || r.status === 401 || r.status === 403) {
      if (oauthError === 'invalid_grant' || r.status !== 400) {
        throw new CredentialUnavailable(
          401,
          this.sessionMessage('the token endpoint refused the host\'s login (expired or revoked)'),
          `${this.what()}: the token endpoint refused the refresh (${r.status}${oauthError ? ` ${oauthError}` : ''}); log in again on the host with \`claude\`, then /login`,
        );
      }
    }
    if (r.status !== 200 || !json) {
      throw new CredentialUnavailable(
        502,
        this.sessionMessage('the token endpoint failed'),
        `${this.what()}: the token endpoint answered ${r.status}${oauthError ? ` ${oauthError}` : ''}${json ? '' : ' (not JSON)'}`,
      );
    }
    const access = json.access_token;
    const refresh = json.refresh_token ?? login.refreshToken;
    const expiresIn = json.expires_in;
    if (typeof access !== 'string' || !TOKEN_RE.test(access) || typeof refresh !== 'string' || !TOKEN_RE.test(refresh) || typeof expiresIn !== 'number' || !(expiresIn > 0)) {
      throw new CredentialUnavailable(502, this.sessionMessage('the token endpoint answered garbage'), `${this.what()}: the token endpoint's answer has no usable access_token, refresh_token or expires_in`);
    }
    const scope = typeof json.scope === 'string' ? json.scope.split(/\s+/).filter((s) => SCOPE_RE.test(s)) : login.scopes;
    return Object.freeze({ ...login, accessToken: access, refreshToken: refresh, expiresAt: this.now() + expiresIn * 1000, scopes: Object.freeze(scope) });
  }

  /** Writes the rotated pair back into the user's store: atomically, 0600, other keys and the owner kept. */
  private writeBack(login: ClaudeLogin): void {
    let doc: Record<string, unknown> = {};
    let owner: { uid: number; gid: number } | null = null;
    try {
      const st = statSync(this.file);
      owner = { uid: st.uid, gid: st.gid };
      const parsed: unknown = JSON.parse(readFileSync(this.file, 'utf8'));
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) doc = parsed as Record<string, unknown>;
    } catch {
      /* written fresh */
    }
    const previous = (doc.claudeAiOauth ?? {}) as Record<string, unknown>;
    doc.claudeAiOauth = {
      ...previous,
      accessToken: login.accessToken,
      refreshToken: login.refreshToken,
      expiresAt: login.expiresAt,
      scopes: login.scopes,
      subscriptionType: login.subscriptionType,
      rateLimitTier: login.rateLimitTier,
      ...(login.clientId ? { clientId: login.clientId } : {}),
    };
    const tmp = `${this.file}.airlock-${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, JSON.stringify(doc), { mode: 0o600, flag: 'wx' });
    chmodSync(tmp, 0o600);
    if (owner && process.getuid?.() === 0) chownSync(tmp, owner.uid, owner.gid);
    renameSync(tmp, this.file);
    this.stamp = this.stampOf();
  }
}

const REFRESH_PREFIX = 'sk-ant-ort01-airlock-';

function refreshPlaceholder(): string {
  return `${REFRESH_PREFIX}${randomBytes(24).toString('hex')}`;
}

function oauthError(status: number, error: string, description: string, refused?: HostAnswer['refused']): HostAnswer {
  return { status, body: { error, error_description: description }, refused, detail: refused?.detail ?? error };
}

/**
 * One session's view of a login store: its refresh placeholder (single use: each refresh hands out
 * the next one, and a used one is refused), its placeholder store, and the answers to its
 * requests to the token endpoint.
 */
export class ClaudeLoginSession {
  private refreshToken = refreshPlaceholder();
  /** When the login the session holds was current: a refresh after it need not go upstream. */
  private issuedAt: number;
  private running: { token: string; answer: Promise<HostAnswer> } | null = null;
  /** The last refresh answered, for requests that raced it (REUSE_GRACE_MS). */
  private last: { token: string; answer: HostAnswer; at: number } | null = null;
  private readonly used = new Set<string>();

  constructor(
    private readonly store: ClaudeLoginStore,
    private readonly now: () => number = Date.now,
  ) {
    this.issuedAt = now();
  }

  current(beforeUpstream?: () => boolean): Promise<string> {
    return this.store.access(beforeUpstream);
  }

  known(): readonly string[] {
    return this.store.known();
  }

  /** The session's login store (~/.claude/.credentials.json) and Claude Code's onboarding flag. */
  sessionFiles(accessPlaceholder: string): SessionFile[] {
    const real = this.store.snapshot;
    const login = {
      accessToken: accessPlaceholder,
      refreshToken: this.refreshToken,
      expiresAt: real.expiresAt,
      scopes: real.scopes,
      subscriptionType: real.subscriptionType,
      rateLimitTier: real.rateLimitTier,
      ...(real.clientId ? { clientId: real.clientId } : {}),
    };
    return [
      { path: '.claude/.credentials.json', content: JSON.stringify({ claudeAiOauth: login }), mode: 0o600 },
      CLAUDE_ONBOARDING_FILE,
    ];
  }

  /** The status of a response to a request the real access token `value` went with. */
  observe(value: string, status: number): void {
    this.store.observe(value, status);
  }

  /**
   * Why the access token may not go with this request: Anthropic's create_api_key answers a
   * Console login's token with an API key, which the session would then hold in the clear.
   */
  refuses(request: OutgoingRequest): string | null {
    if (request.host !== 'api.anthropic.com' || !loosePath(request.pathWithQuery).startsWith('/api/oauth/claude_cli/create_api_key')) return null;
    return `credential "${this.store.credential}" (the Claude login kept on the host) is not sent to create_api_key: the API key it mints would be in the session in the clear; create one on the host if the session needs it`;
  }

  /**
   * True for requests to Claude's token endpoint, in any spelling a server might read as it
   * (percent-encoded, other case, merged slashes, ;params): the proxy answers those itself, and
   * refuses every one that is not exactly the endpoint.
   */
  intercepts(request: OutgoingRequest): boolean {
    return CLAUDE_TOKEN_HOSTS.includes(request.host) && loosePath(request.pathWithQuery).startsWith(TOKEN_PATH);
  }

  /** The answer to one request to the token endpoint, from its body. Never forwards anything. */
  async answer(request: OutgoingRequest, body: Buffer, accessPlaceholder: string, admit: () => boolean = () => true): Promise<HostAnswer> {
    const name = this.store.credential;
    const refuse = (error: string, why: string) =>
      oauthError(400, error, `Airlock: ${why}. Credential "${name}" is a Claude login kept on the host; the session can only refresh it with the refresh token it was given.`, {
        reason: 'credential_misuse',
        detail: `${name}: token endpoint ${why}`,
      });
    const path = request.pathWithQuery.split('?')[0]!;
    const params = parseParams(body, request.contentType);
    if (path === `${TOKEN_PATH}/revoke`) {
      // A logout in the session must not end the host's login: answered here, nothing revoked.
      const ours = params?.token === this.refreshToken || params?.token === accessPlaceholder;
      return ours ? { status: 200, body: {}, detail: `${name}: revoke answered by the proxy (the host's login is kept)` } : refuse('invalid_request', 'a revoke of a token the session was not given');
    }
    if (path !== TOKEN_PATH) return refuse('invalid_request', `the path ${path} is not served`);
    if (!params) return refuse('invalid_request', 'a request body that is neither JSON nor a form');
    if (params.grant_type !== 'refresh_token') {
      return refuse('unsupported_grant_type', `grant_type ${JSON.stringify(String(params.grant_type ?? '')).slice(0, 40)} is refused (only the login's own refresh is answered)`);
    }
    const token = params.refresh_token;
    if (this.running && token === this.running.token) return this.running.answer;
    if (this.last && token === this.last.token && this.now() - this.last.at < REUSE_GRACE_MS) {
      return { ...this.last.answer, detail: `${name}: a refresh that raced the last one, answered alike` };
    }
    if (typeof token !== 'string' || token !== this.refreshToken) {
      const why = typeof token === 'string' && this.used.has(token) ? 'a refresh token that was already used' : 'a refresh token the session was not given';
      return oauthError(400, 'invalid_grant', `Airlock: ${why}. Credential "${name}" is a Claude login kept on the host.`, { reason: 'credential_misuse', detail: `${name}: refresh with ${why}` });
    }
    const answer = this.refresh(token, accessPlaceholder, admit);
    this.running = { token, answer };
    void answer.finally(() => {
      if (this.running?.token === token) this.running = null;
    });
    return answer;
  }

  private async refresh(token: string, accessPlaceholder: string, admit: () => boolean): Promise<HostAnswer> {
    const name = this.store.credential;
    let login: ClaudeLogin;
    // Whether this answer made the host refresh upstream: the audit line says so.
    let upstream = false;
    try {
      login = await this.store.refresh(this.issuedAt, () => (upstream = true) && admit());
    } catch (err) {
      const e = err instanceof CredentialUnavailable ? err : new CredentialUnavailable(502, `Airlock: credential "${name}" cannot be refreshed right now.`, (err as Error).message);
      return {
        status: e.status,
        body: { error: e.status === 401 ? 'invalid_grant' : 'temporarily_unavailable', error_description: e.sessionMessage },
        refused: { reason: 'upstream_error', detail: `${name}: refresh failed on the host` },
        detail: `${name}: refresh failed on the host`,
        error: e.message,
      };
    }
    this.used.add(token);
    this.refreshToken = refreshPlaceholder();
    this.issuedAt = this.now();
    const answer: HostAnswer = {
      status: 200,
      body: {
        token_type: 'Bearer',
        access_token: accessPlaceholder,
        refresh_token: this.refreshToken,
        expires_in: Math.max(1, Math.floor((login.expiresAt - this.now()) / 1000)),
        scope: login.scopes.join(' '),
      },
      detail: `${name}: refresh answered by the proxy with placeholders${upstream ? "; the host's login was refreshed upstream" : ''}`,
    };
    this.last = { token, answer, at: this.now() };
    return answer;
  }
}

/** The parameters of a token request: a JSON object or a form; null when it is neither. */
function parseParams(body: Buffer, contentType: string | undefined): Record<string, unknown> | null {
  const text = body.toString('utf8');
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') return Object.fromEntries(new URLSearchParams(text));
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export { MAX_REQUEST_BYTES as CLAUDE_TOKEN_MAX_REQUEST_BYTES };
