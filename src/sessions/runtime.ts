// One proxy process: the upstream client, the proxy listeners and the session registry, wired.
import type pino from 'pino';
import { ProxyServer } from '../proxy/server.js';
import type { ProxyLimits } from '../proxy/server.js';
import { Upstream } from '../proxy/upstream.js';
import type { Endpoint, UpstreamOptions } from '../proxy/upstream.js';
import { SessionRegistry } from './registry.js';
import type { SessionRegistryOptions } from './registry.js';
import { AccessRequestError, Inbox } from './inbox.js';
import { PolicyManager } from './policy-reload.js';
import type { PolicyFiles } from './policy-reload.js';
import { Approvals } from './approve.js';

export interface RuntimeOptions extends SessionRegistryOptions {
  /** Resolve overrides, "host:port" → endpoint. */
  readonly resolve: ReadonlyMap<string, Endpoint>;
  /** Roots for verifying upstream TLS (PEM). Empty = Node's defaults. */
  readonly upstreamCa: readonly string[];
  readonly log: pino.Logger;
  readonly limits?: Partial<ProxyLimits>;
  /** CIDR ranges opened despite the destination guard. */
  readonly allowPrivate?: readonly string[];
  /** Test and embedding hooks: name resolution and a look at every dial. */
  readonly lookup?: UpstreamOptions['lookup'];
  readonly beforeDial?: UpstreamOptions['beforeDial'];
  /** File access for following policy files (reload, approve); without it no session follows one. */
  readonly policyFiles?: PolicyFiles;
  /** Quiet time before a changed policy file is read (default 150 ms). */
  readonly reloadDebounceMs?: number;
  /** Runs last in close() (the audit export's final flush, say). */
  readonly onClose?: () => Promise<void>;
}

/** Where no policy files were given: following one is refused. */
const NO_POLICY_FILES: PolicyFiles = {
  read: (file) => Promise.reject(new Error(`policy files are not followed here (${file})`)),
  write: (file) => Promise.reject(new Error(`policy files are not followed here (${file})`)),
  watch: (file) => {
    throw new Error(`policy files are not followed here (${file})`);
  },
};

export class ProxyRuntime {
  readonly upstream: Upstream;
  readonly proxy: ProxyServer;
  readonly sessions: SessionRegistry;
  /** The sessions' policy files and reloads. */
  readonly policies: PolicyManager;
  /** Refusals and access requests of every session, for the operator. */
  readonly inbox: Inbox;
  readonly approvals: Approvals;

  constructor(private readonly options: RuntimeOptions) {
    this.upstream = new Upstream({
      resolve: options.resolve,
      ca: options.upstreamCa,
      allowPrivate: options.allowPrivate,
      lookup: options.lookup,
      beforeDial: options.beforeDial,
    });
    this.sessions = new SessionRegistry({
      ...options,
      audit: {
        notify: (level, message) => (level === 'error' ? options.log.error(message) : options.log.info(message)),
        ...options.audit,
      },
      // A removed session's tunnels, upgrades and requests in flight end with it.
      onRemove: async (id) => {
        this.policies.unfollow(id);
        this.inbox.unwatch(id);
        await this.proxy.endSession(id);
        await options.onRemove?.(id);
      },
      onCreate: (session) => {
        this.inbox.watch(session);
        options.onCreate?.(session);
      },
    });
    this.policies = new PolicyManager(this.sessions, { files: options.policyFiles ?? NO_POLICY_FILES, log: options.log, debounceMs: options.reloadDebounceMs });
    this.inbox = new Inbox({ sessionExists: (id) => this.sessions.get(id) !== undefined });
    this.approvals = new Approvals(this.sessions, this.inbox, this.policies);
    this.proxy = new ProxyServer({
      sessions: this.sessions,
      upstream: this.upstream,
      log: options.log,
      limits: options.limits,
      requestAccess: (id, input) => {
        try {
          return { ok: true, id: this.inbox.requestAccess(id, input).id };
        } catch (err) {
          if (err instanceof AccessRequestError) return { ok: false, message: err.message };
          throw err;
        }
      },
    });
  }

  async close(): Promise<void> {
    this.policies.close();
    await this.proxy.close();
    await this.sessions.closeAll();
    await this.upstream.close();
    await this.options.onClose?.();
  }
}
