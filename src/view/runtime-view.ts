// The view of a proxy running in this process (`airlock proxy --ui`, `airlock run --ui`): its
// sessions read from the registry, and the view's own address closed to those sessions.
import type { ProxyRuntime } from '../sessions/runtime.js';
import type { SessionRegistry } from '../sessions/registry.js';
import { startView } from './server.js';
import type { ViewOptions, ViewServer } from './server.js';
import type { SessionSource, ViewSession } from './source.js';

export function registrySessions(registry: Pick<SessionRegistry, 'list'>): SessionSource {
  return {
    list: () =>
      Promise.resolve(
        registry.list().map(
          (s): ViewSession => ({
            id: s.id,
            policy: s.policy.name,
            created: s.createdAt.toISOString(),
            auditFile: s.audit.file,
            rules: s.policy.allow.map((r) => ({ label: r.label, inspect: r.inspect })),
          }),
        ),
      ),
  };
}

/**
 * Starts the view over `runtime`'s sessions. Its address and port become the proxy's own: no
 * session reaches the view through the proxy, not even by a name an operator's --resolve maps there.
 */
export async function startRuntimeView(runtime: ProxyRuntime, options: Omit<ViewOptions, 'sessions'>): Promise<ViewServer> {
  const view = await startView({ ...options, sessions: registrySessions(runtime.sessions) });
  runtime.upstream.guard.addOwnEndpoint(view.address.address, view.address.port);
  return view;
}
