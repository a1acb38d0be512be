// Secret sources: the only code that reads real secret values, from the environment (the object
// the caller passes in, never process.env itself), a file or a command. Errors name the credential
// and the source, never the value.
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import type { CredentialSpec, Policy } from '../policy/index.js';
import type { CredentialBroker } from './broker.js';
import { NO_CREDENTIALS } from './broker.js';
import { SessionBroker } from './session-broker.js';
import type { SecretHandle } from './session-broker.js';
import { secretValueProblem } from './secret-forms.js';
import { ClaudeLoginError, ClaudeLoginSession, ClaudeLoginStore } from './claude-oauth.js';
import type { TokenTransport } from './token-http.js';
import { GoogleCredentialError, googleSecret } from './google-token.js';
import { homedir } from 'node:os';
import { join } from 'node:path';

import { SecretSourceError } from './minting.js';
import { githubAppSecret } from './github-app.js';
import { awsSigner } from './sigv4.js';
import { KnownValues } from './known-values.js';

export { SecretSourceError };


function clean(raw: string): string {
  return raw.replace(/\r?\n$/, '');
}

function envSecret(spec: CredentialSpec, name: string, env: NodeJS.ProcessEnv): SecretHandle {
  const value = env[name];
  if (!value) {
    throw new SecretSourceError(`credential "${spec.name}": its secret comes from the environment variable ${name}, which is not set. Export it before starting airlock.`);
  }
  const problem = secretValueProblem(value.trim());
  if (problem) throw new SecretSourceError(`credential "${spec.name}": the secret in ${name} ${problem}. Set it to the token alone.`);
  const known = new KnownValues();
  known.add(value);
  return { current: async () => value, known: () => known.list() };
}

function fileSecret(spec: CredentialSpec, path: string): SecretHandle {
  const known = new KnownValues();
  let stamp = '';
  let value = '';
  // Re-read when the file changes (rotation without restart); a stat per use is cheap.
  const load = (atStart: boolean): string => {
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      const message = `credential "${spec.name}": cannot read its secret file ${path} (${(err as NodeJS.ErrnoException).code})`;
      if (atStart) throw new SecretSourceError(message);
      if (value) return value; // keep the last good value while a rotation is mid-way
      throw new Error(message);
    }
    const next = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (next !== stamp) {
      const fresh = clean(readFileSync(path, 'utf8'));
      const problem = fresh ? secretValueProblem(fresh.trim()) : null;
      if (problem && atStart) throw new SecretSourceError(`credential "${spec.name}": the secret in ${path} ${problem}. The file must hold the token alone (one line).`);
      if (!fresh) {
        const message = `credential "${spec.name}": secret file ${path} is empty`;
        if (atStart) throw new SecretSourceError(message);
        if (!value) throw new Error(message);
      } else {
        value = known.add(fresh);
      }
      stamp = next;
    }
    return value;
  };
  load(true);
  return { current: async () => load(false), known: () => known.list() };
}

function commandSecret(spec: CredentialSpec, argv: readonly string[], ttlSeconds: number): SecretHandle {
  const known = new KnownValues();
  let cached: { value: string; until: number } | null = null;
  let running: Promise<string> | null = null;
  const run = () =>
    new Promise<string>((resolve, reject) => {
      execFile(argv[0]!, argv.slice(1), { timeout: 30_000, maxBuffer: 64 * 1024, windowsHide: true }, (err, stdout) => {
        // Never include the command's output in an error: it may be the secret.
        if (err) {
          const how = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'command not found' : `exit code ${String((err as { code?: unknown }).code ?? '?')}`;
          reject(new Error(`credential "${spec.name}": secret command ${argv[0]} failed (${how})`));
          return;
        }
        const value = clean(stdout.toString());
        if (!value) reject(new Error(`credential "${spec.name}": secret command ${argv[0]} printed nothing`));
        else resolve(known.add(value));
      });
    });
  return {
    current: async () => {
      if (cached && cached.until > Date.now()) return cached.value;
      running ??= run().finally(() => (running = null));
      const value = await running;
      cached = { value, until: Date.now() + ttlSeconds * 1000 };
      return value;
    },
    known: () => known.list(),
  };
}

/** What sources that talk to token endpoints share across sessions: how to reach them, and the stores. */
export interface SourceContext {
  readonly transport: TokenTransport;
  /** One store per login file: every session using it refreshes through the same one. */
  readonly claudeLogins: Map<string, ClaudeLoginStore>;
  /** The operator's log, for failures no request waits for. */
  readonly warn?: (message: string) => void;
}

/** `~/x` is the host user's home (HOME in `env`, else the OS's). */
function hostPath(path: string, env: NodeJS.ProcessEnv): string {
  return path === '~' || path.startsWith('~/') ? join(env.HOME || homedir(), path.slice(1)) : path;
}

function claudeLogin(spec: CredentialSpec, path: string, env: NodeJS.ProcessEnv, ctx: SourceContext): SecretHandle {
  const file = hostPath(path, env);
  let store = ctx.claudeLogins.get(file);
  if (!store) {
    try {
      store = new ClaudeLoginStore(spec.name, file, ctx.transport, Date.now, ctx.warn);
    } catch (err) {
      if (err instanceof ClaudeLoginError) throw new SecretSourceError(`credential "${spec.name}": ${err.message}`);
      throw err;
    }
    ctx.claudeLogins.set(file, store);
  }
  const session = new ClaudeLoginSession(store);
  return {
    current: (beforeUpstream) => session.current(beforeUpstream),
    known: () => session.known(),
    values: async () => session.known(),
    sessionFiles: (placeholder) => session.sessionFiles(placeholder),
    intercepts: (request) => session.intercepts(request),
    refuses: (request) => session.refuses(request),
    observe: (value, status) => session.observe(value, status),
    answer: (request, body, placeholder, admit) => session.answer(request, body, placeholder, admit),
  };
}

const DEFAULT_CONTEXT: SourceContext = { transport: {}, claudeLogins: new Map() };

export function secretHandle(spec: CredentialSpec, env: NodeJS.ProcessEnv, ctx: SourceContext = DEFAULT_CONTEXT): SecretHandle {
  const source = spec.secret;
  switch (source.kind) {
    case 'claude_login':
      return claudeLogin(spec, source.path, env, ctx);
    case 'google':
      try {
        return googleSecret(spec.name, source.keyFile === null ? null : hostPath(source.keyFile, env), source.scopes, env, ctx.transport);
      } catch (err) {
        if (err instanceof GoogleCredentialError) throw new SecretSourceError(`credential "${spec.name}": ${err.message}`);
        throw err;
      }
    case 'env':
      return envSecret(spec, source.name, env);
    case 'file':
      return fileSecret(spec, source.path);
    case 'command':
      return commandSecret(spec, source.argv, source.ttlSeconds);
    case 'github_app':
      return githubAppSecret(spec, { ...source, privateKey: hostPath(source.privateKey, env) }, ctx.transport);
    case 'aws':
      return awsSigner(spec, source, env);
  }
}

/** Builds each session's broker; a missing secret is a start-up error naming the credential. */
export function credentialsFactory(
  env: NodeJS.ProcessEnv,
  transport: TokenTransport = {},
  warn?: (message: string) => void,
): (policy: Policy, sessionId: string) => Promise<CredentialBroker> {
  const ctx: SourceContext = { transport, claudeLogins: new Map(), warn };
  return async (policy) => {
    if (policy.credentials.length === 0) return NO_CREDENTIALS;
    const handles = new Map<string, SecretHandle>();
    for (const spec of policy.credentials) handles.set(spec.name, secretHandle(spec, env, ctx));
    return new SessionBroker(policy.credentials, handles);
  };
}
