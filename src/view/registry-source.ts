// The sessions of a proxy running in this process (the daemon's --ui), read from its registry.
import type { SessionRegistry } from '../sessions/registry.js';
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
