// The view of a proxy running in this process (`airlock proxy --ui`, `airlock run --ui`): its
// sessions read from the registry, its inbox and approvals as the view's inbox, and the view's own
// address closed to those sessions. Also the one translation from the operator's inbox (in this
// process or a daemon's, over its admin endpoint) to the view's.
import type { ProxyRuntime } from '../sessions/runtime.js';
import type { SessionRegistry } from '../sessions/registry.js';
import type { InboxItem as QueuedItem } from '../sessions/inbox.js';
import type { ApprovalPlan } from '../sessions/approve.js';
import { startView } from './server.js';
import type { ViewOptions, ViewServer } from './server.js';
import { InboxError } from './source.js';
import type { ApprovePreview, InboxItem, InboxSource, SessionSource, ViewSession } from './source.js';

export function registrySessions(registry: Pick<SessionRegistry, 'list'>): SessionSource {
  return {
    list: () =>
      Promise.resolve(
        registry.list().map((s): ViewSession => {
          // Read now, not kept: a hot reload replaces the session's policy and its status.
          const { policy, policyStatus } = s;
          return {
            id: s.id,
            policy: policy.name,
            created: s.createdAt.toISOString(),
            auditFile: s.audit.file,
            rules: policy.allow.map((r) => ({ label: r.label, inspect: r.inspect })),
            policyStatus: {
              version: policyStatus.version,
              loadedAt: policyStatus.loadedAt,
              ...(policyStatus.error ? { error: policyStatus.error.message } : {}),
            },
          };
        }),
      ),
  };
}

/** The operator's inbox routes (see sessions/operator-api.ts), in this process or a daemon's. */
export interface OperatorInbox {
  /** The open items. */
  list(): Promise<readonly QueuedItem[]>;
  plan(id: string): Promise<ApprovalPlan>;
  /** Writes and reloads the plan, if it still leads to version `expect`. */
  approve(id: string, expect: string): Promise<unknown>;
  /** False when there is no such item. */
  deny(id: string): Promise<boolean>;
}

function viewItem(item: QueuedItem): InboxItem {
  return {
    id: item.id,
    session: item.session,
    host: item.host,
    port: item.port,
    scheme: item.scheme,
    path: item.path ?? '',
    methods: item.method === null ? [] : [item.method],
    count: item.count,
    firstSeen: item.firstSeen,
    lastSeen: item.lastSeen,
    reason: item.reason,
    ...(item.kind === 'requested' ? { agentReason: item.note ?? '' } : {}),
  };
}

function previewOf(plan: ApprovalPlan): ApprovePreview {
  const reach = plan.credentialReach.map(
    (c) => `credential "${c.name}" is bound to ${c.hosts.join(', ')}; with this rule its secret is sent to ${plan.rule.host} on requests the rule allows`,
  );
  const others = plan.sessions.filter((s) => s !== plan.item.session);
  return {
    file: plan.file,
    diff: plan.diff,
    ...(reach.length > 0 ? { widensCredential: reach.join('; ') } : {}),
    notes: [...plan.notes, ...plan.warnings, ...(others.length > 0 ? [`Also applies to ${others.join(', ')}: they follow the same file`] : [])],
  };
}

/**
 * The view's inbox over the operator's. Approve writes exactly the change the operator was shown:
 * the version its preview led to is kept per item, and a policy that changed since is refused.
 */
export function operatorInbox(ops: OperatorInbox): InboxSource {
  const previewed = new Map<string, string>();
  return {
    async list() {
      return (await ops.list()).map(viewItem);
    },
    async approvePreview(id) {
      const plan = await ops.plan(id);
      previewed.set(id, plan.to);
      return previewOf(plan);
    },
    async approve(id) {
      const expect = previewed.get(id);
      if (expect === undefined) throw new InboxError(`inbox item ${id}: look at the change first (Allow…), then confirm it`, 409);
      await ops.approve(id, expect);
      previewed.delete(id);
      return { version: expect, message: `allowed: the policy is now version ${expect}, in force for new requests` };
    },
    async dismiss(id) {
      previewed.delete(id);
      if (!(await ops.deny(id))) throw new InboxError(`no inbox item ${id}`, 404);
    },
  };
}

/** The inbox and approvals of a runtime in this process. */
export function runtimeInbox(runtime: Pick<ProxyRuntime, 'inbox' | 'approvals'>): InboxSource {
  return operatorInbox({
    list: () => Promise.resolve(runtime.inbox.list()),
    plan: (id) => runtime.approvals.plan(id),
    approve: (id, expect) => runtime.approvals.approve(id, expect),
    deny: (id) => Promise.resolve(runtime.approvals.deny(id)),
  });
}

/**
 * Starts the view over `runtime`'s sessions. Its address and port become the proxy's own: no
 * session reaches the view through the proxy, not even by a name an operator's --resolve maps there.
 */
export async function startRuntimeView(runtime: ProxyRuntime, options: Omit<ViewOptions, 'sessions' | 'inbox'>): Promise<ViewServer> {
  const view = await startView({ ...options, sessions: registrySessions(runtime.sessions), inbox: runtimeInbox(runtime) });
  runtime.upstream.guard.addOwnEndpoint(view.address.address, view.address.port);
  return view;
}
