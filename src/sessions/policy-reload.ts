// Hot reload: sessions follow their policy files. A new version is read, parsed and checked in
// full before it replaces the old one, and only new requests see it (the proxy reads
// session.policy once per request or tunnel, when it decides). A file that does not parse, or a
// version a running session cannot take, leaves the old policy in force: the reload fails loudly
// (its caller gets the error, the log gets it, and the session's policyStatus shows it) and never
// opens anything.
import type pino from 'pino';
import { inspectedHostPatterns, parsePolicy, PolicyError } from '../policy/index.js';
import type { CredentialSpec, Policy } from '../policy/index.js';
import type { SessionRegistry } from './registry.js';
import type { PolicyStatus, PolicyStatusError, Session } from './session.js';

/**
 * The file operations reload and approve need, given by the command line (the one part of
 * Airlock that touches configuration files).
 */
export interface PolicyFiles {
  read(file: string): Promise<string>;
  /** Replaces the file's content at once (a temporary file renamed over it), keeping its mode. */
  write(file: string, text: string): Promise<void>;
  /**
   * Calls `changed` whenever the file may have changed, including when an editor replaces it by
   * renaming another file over it. Calls may come in bursts: the caller debounces. `failed` is
   * told when the watch stops working (its directory went away, say).
   */
  watch(file: string, changed: () => void, failed: (err: Error) => void): { close(): void };
}

export interface ReloadResult {
  readonly session: string;
  readonly file: string;
  readonly ok: boolean;
  /** The version in force after the reload (the old one when it failed). */
  readonly version: string;
  readonly previous: string;
  readonly error?: PolicyStatusError;
  readonly warnings: readonly string[];
}

/** What the operator can change in a running session without restarting it. */
const RESTART_HINT =
  'A running session keeps the credentials it started with: a reload cannot add a secret source, change where a secret comes from or widen where it may be sent. ' +
  'Put the credentials: section back as it was, or start a new session with the new policy';

function meaning(value: unknown): string {
  return JSON.stringify(value, (key, v: unknown) => (key === 'line' ? undefined : v));
}

function sourceOf(c: CredentialSpec): string {
  const s = c.secret;
  if (s.kind === 'github_app') return `github_app ${s.appId} installation ${s.installationId}`;
  if (s.kind === 'aws') return `aws ${s.profile ? `profile ${s.profile}` : 'environment'}`;
  if (s.kind === 'claude_login') return `claude_login ${s.path}`;
  if (s.kind === 'google') return `google ${s.keyFile ?? 'adc'} ${s.scopes.join(' ')}`;
  return s.kind === 'env' ? `env ${s.name}` : s.kind === 'file' ? `file ${s.path}` : `command ${s.argv.join(' ')}`;
}

/** Does the DNS subtree list `scope` (a CA's name constraints) cover `name`? */
function covers(scope: readonly string[], name: string): boolean {
  return scope.some((base) => name === base || name.endsWith(`.${base}`));
}

/**
 * Checks that `next` can replace `current` in a running session. Refuses (PolicyError naming the
 * file, line and field) any change to credentials: the session's broker holds the secrets
 * resolved when it started, and a policy file that a reload reads is a weaker gate than the
 * operator who started the session (a new secret source could name any file or variable of this
 * host). Returns what the new policy cannot do in this session.
 */
export function checkReplacement(current: Policy, next: Policy, caScope: readonly string[] | null): string[] {
  if (meaning(current.credentials) !== meaning(next.credentials)) {
    const before = new Map(current.credentials.map((c) => [c.name, c]));
    next.credentials.forEach((c, i) => {
      const old = before.get(c.name);
      const field = `credentials[${i}]`;
      if (!old) throw new PolicyError(next.source, c.line, field, `credential "${c.name}" (secret from ${sourceOf(c)}) is not one this session started with`, RESTART_HINT);
      if (meaning(old.secret) !== meaning(c.secret)) {
        throw new PolicyError(next.source, c.line, `${field}.secret`, `credential "${c.name}" would take its secret from ${sourceOf(c)} instead of ${sourceOf(old)}`, RESTART_HINT);
      }
      if (meaning(old) !== meaning(c)) throw new PolicyError(next.source, c.line, field, `credential "${c.name}" differs from the one this session started with`, RESTART_HINT);
    });
    const gone = current.credentials.find((c) => !next.credentials.some((n) => n.name === c.name));
    throw new PolicyError(next.source, null, 'credentials', gone ? `credential "${gone.name}" was removed` : 'the credentials changed order', RESTART_HINT);
  }
  const warnings: string[] = [];
  if (caScope !== null && next.mode === 'report' && current.mode !== 'report') {
    warnings.push(`mode: report lets every host through inspected, but this session's CA was issued for ${caScope.length > 0 ? caScope.join(', ') : 'no host'} only: TLS to any other host fails until the session is restarted`);
  } else if (caScope !== null) {
    const { dns, ips } = inspectedHostPatterns(next);
    const outside = [...dns.filter((name) => !covers(caScope, name)), ...ips];
    if (outside.length > 0) {
      warnings.push(
        `this session's CA was issued for ${caScope.length > 0 ? caScope.join(', ') : 'no host'} only, so TLS to ${outside.join(', ')} cannot be inspected in it: ` +
          'clients will reject the certificate until the session is restarted (a rule with inspect: false tunnels such a host without inspection)',
      );
    }
  }
  if (meaning(current.limits) !== meaning(next.limits)) warnings.push('limits: changes apply to sessions started from now on, not to this one');
  if (meaning(current.container) !== meaning(next.container)) warnings.push('container: changes apply to containers started from now on');
  return warnings;
}

export interface PolicyManagerOptions {
  readonly files: PolicyFiles;
  readonly log: pino.Logger;
  /** Quiet time after the last change event before a watched file is read (default 150 ms). */
  readonly debounceMs?: number;
}

interface Watched {
  readonly handle: { close(): void };
  readonly sessions: Set<string>;
  timer?: NodeJS.Timeout;
}

/** The sessions' policy files: who follows which, the watches, and reloads. */
export class PolicyManager {
  private readonly fileOf = new Map<string, string>();
  private readonly watched = new Map<string, Watched>();
  /** One reload of a file at a time: a watch event and a `policy reload` never interleave. */
  private readonly queue = new Map<string, Promise<unknown>>();
  private readonly listeners = new Set<(result: ReloadResult) => void>();

  constructor(
    private readonly sessions: SessionRegistry,
    private readonly options: PolicyManagerOptions,
  ) {}

  get files(): PolicyFiles {
    return this.options.files;
  }

  /** The session follows `file`: `policy reload` and approve work on it, and with `watch` every change is loaded. */
  follow(session: Session, file: string, watch: boolean): void {
    this.fileOf.set(session.id, file);
    if (watch) {
      let w = this.watched.get(file);
      if (!w) {
        const entry: Watched = {
          sessions: new Set(),
          handle: this.options.files.watch(
            file,
            () => {
              clearTimeout(entry.timer);
              entry.timer = setTimeout(() => void this.reloadFile(file), this.options.debounceMs ?? 150);
            },
            (err) => {
              this.options.log.error({ file, sessions: [...entry.sessions] }, `no longer watching ${file} (${err.message}): changes load only with \`airlock policy reload\``);
              for (const id of entry.sessions) {
                const status = this.sessions.get(id)?.policyStatus;
                if (status) this.sessions.setPolicy(id, null, { ...status, watching: false });
              }
            },
          ),
        };
        w = entry;
        this.watched.set(file, w);
      }
      w.sessions.add(session.id);
    }
    this.sessions.setPolicy(session.id, null, { ...session.policyStatus, file, watching: watch });
  }

  /** Forgets a removed session; the file's watch ends with its last session. */
  unfollow(id: string): void {
    const file = this.fileOf.get(id);
    this.fileOf.delete(id);
    const w = file === undefined ? undefined : this.watched.get(file);
    if (!w || !file) return;
    w.sessions.delete(id);
    if (w.sessions.size === 0) {
      clearTimeout(w.timer);
      w.handle.close();
      this.watched.delete(file);
    }
  }

  /** The policy file `id` follows, if any. */
  file(id: string): string | undefined {
    return this.fileOf.get(id);
  }

  /** Told about every reload, successful or not (a view's banner). */
  subscribe(listener: (result: ReloadResult) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Reloads the policy file of one session, or of every session that follows one. A session
   * that follows no file is an error when named.
   */
  async reload(id?: string): Promise<ReloadResult[]> {
    if (id !== undefined) {
      if (!this.sessions.get(id)) throw new ReloadError(`no session ${id}`, 404);
      const file = this.fileOf.get(id);
      if (!file) throw new ReloadError(`session ${id} follows no policy file (it was given its policy as text)`, 409);
      return (await this.reloadFile(file)).filter((r) => r.session === id);
    }
    const files = [...new Set(this.fileOf.values())];
    return (await Promise.all(files.map((file) => this.reloadFile(file)))).flat();
  }

  /** Reads `file` once and puts it in force in every session that follows it. */
  reloadFile(file: string): Promise<ReloadResult[]> {
    const previous = this.queue.get(file) ?? Promise.resolve();
    const run = previous.then(() => this.load(file));
    const settled = run.catch(() => undefined);
    this.queue.set(file, settled);
    void settled.then(() => {
      if (this.queue.get(file) === settled) this.queue.delete(file);
    });
    return run;
  }

  private async load(file: string): Promise<ReloadResult[]> {
    const ids = [...this.fileOf].filter(([, f]) => f === file).map(([id]) => id);
    let policy: Policy | null = null;
    let failure: PolicyStatusError | null = null;
    const at = new Date().toISOString();
    try {
      policy = parsePolicy(await this.options.files.read(file), file);
    } catch (err) {
      failure = errorOf(err, file, at);
    }
    const results: ReloadResult[] = [];
    for (const id of ids) {
      const session = this.sessions.get(id);
      if (!session) continue;
      const old = session.policyStatus;
      let error = failure;
      let warnings = old.warnings;
      if (policy && !error) {
        try {
          warnings = checkReplacement(session.policy, policy, session.caScope);
        } catch (err) {
          error = errorOf(err, file, at);
        }
      }
      if (error || !policy) {
        // The old policy stays in force; only the status says what went wrong.
        this.sessions.setPolicy(id, null, { ...old, error: error ?? undefined });
        this.options.log.error({ session: id, file, line: error?.line, field: error?.field, version: old.version }, `policy reload failed, version ${old.version} stays in force: ${error?.message}`);
        results.push({ session: id, file, ok: false, version: old.version, previous: old.version, error: error ?? undefined, warnings: old.warnings });
        continue;
      }
      const changed = policy.digest !== session.policy.digest;
      const status: PolicyStatus = changed
        ? { version: policy.digest, source: file, loadedAt: at, file, watching: old.watching, warnings }
        : { ...old, warnings, error: undefined };
      // An unchanged meaning (a comment edit) keeps the very policy object in force.
      this.sessions.setPolicy(id, changed ? policy : null, status);
      if (changed) this.options.log.info({ session: id, file, version: policy.digest, previous: old.version }, `policy ${policy.name} reloaded: version ${policy.digest} in force for new requests`);
      for (const warning of warnings) this.options.log.warn({ session: id, file, version: policy.digest }, warning);
      results.push({ session: id, file, ok: true, version: policy.digest, previous: old.version, warnings });
    }
    for (const result of results) for (const listener of this.listeners) listener(result);
    return results;
  }

  close(): void {
    for (const id of [...this.fileOf.keys()]) this.unfollow(id);
  }
}

/** A reload that could not start: no such session, or it follows no file. */
export class ReloadError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

function errorOf(err: unknown, file: string, at: string): PolicyStatusError {
  if (err instanceof PolicyError) return { message: err.message, at, file: err.file, line: err.line, field: err.field };
  const code = (err as NodeJS.ErrnoException).code;
  return { message: `${file}: cannot read the policy file (${code ?? (err as Error).message})`, at, file, line: null, field: null };
}
