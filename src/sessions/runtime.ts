// One proxy process: the upstream client, the proxy listeners and the session registry, wired.
import type pino from 'pino';
import { ProxyServer } from '../proxy/server.js';
import type { ProxyLimits } from '../proxy/server.js';
import { Upstream } from '../proxy/upstream.js';
import type { Endpoint, UpstreamOptions } from '../proxy/upstream.js';
import { SessionRegistry } from './registry.js';
import type { SessionRegistryOptions } from './registry.js';

export interface RuntimeOptions extends SessionRegistryOptions {
  /** Resolve overrides, "host:port" → endpoint. */
  readonly resolve: ReadonlyMap<string, Endpoint>;
  /** Roots for verifying upstream TLS. */
  readonly upstreamCa: readonly string[];
  readonly log: pino.Logger;
  readonly limits?: Partial<ProxyLimits>;
  /** CIDR ranges opened despite the destination guard. */
  readonly allowPrivate?: readonly string[];
  /** Test and embedding hooks: name resolution and a look at every dial. */
  readonly lookup?: UpstreamOptions['lookup'];
  readonly beforeDial?: UpstreamOptions['beforeDial'];
}

export class ProxyRuntime {
  readonly upstream: Upstream;
  readonly proxy: ProxyServer;
  readonly sessions: SessionRegistry;

  constructor(options: RuntimeOptions) {
    this.upstream = new Upstream({
      resolve: options.resolve,
      ca: options.upstreamCa,
      allowPrivate: options.allowPrivate,
      lookup: options.lookup,
      beforeDial: options.beforeDial,
    });
    this.sessions = new SessionRegistry({
      ...options,
      // A removed session's tunnels, upgrades and requests in flight end with it.
      onRemove: async (id) => {
        await this.proxy.endSession(id);
        await options.onRemove?.(id);
      },
    });
    this.proxy = new ProxyServer({ sessions: this.sessions, upstream: this.upstream, log: options.log, limits: options.limits });
  }

  async close(): Promise<void> {
    await this.proxy.close();
    await this.sessions.closeAll();
    await this.upstream.close();
  }
}
