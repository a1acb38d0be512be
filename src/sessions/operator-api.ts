// The operator's routes of the admin endpoint: policy status and reload, the denial inbox,
// approve and deny. Transport-free (a route in, a status and a JSON body out) so the daemon's
// admin socket and an embedded run's control socket answer them alike.
import { PolicyError } from '../policy/index.js';
import { ApprovalError } from './approve.js';
import { ReloadError } from './policy-reload.js';
import type { ProxyRuntime } from './runtime.js';

export interface OperatorAnswer {
  readonly status: number;
  readonly body: unknown;
}

const ITEM = /^\/inbox\/([0-9]{1,12})(?:\/(plan|approve|deny))?$/;

/** Answers an operator route, or null when `path` is not one. */
export async function operatorRoute(
  runtime: ProxyRuntime,
  method: string,
  url: URL,
  readBody: () => Promise<Record<string, unknown>>,
): Promise<OperatorAnswer | null> {
  try {
    return await route(runtime, method, url, readBody);
  } catch (err) {
    if (err instanceof ApprovalError || err instanceof ReloadError) return { status: err.status, body: { error: err.message } };
    if (err instanceof PolicyError) return { status: 400, body: { error: err.message } };
    throw err;
  }
}

async function route(runtime: ProxyRuntime, method: string, url: URL, readBody: () => Promise<Record<string, unknown>>): Promise<OperatorAnswer | null> {
  const path = url.pathname;
  if (method === 'GET' && path === '/policy') {
    return { status: 200, body: runtime.sessions.list().map((s) => ({ session: s.id, policy: s.policy.name, ...s.policyStatus })) };
  }
  if (method === 'POST' && path === '/policy/reload') {
    const body = await readBody();
    const session = typeof body.session === 'string' ? body.session : undefined;
    const results = await runtime.policies.reload(session);
    const failed = results.filter((r) => !r.ok);
    // 422: the request was fine, the file was not; the old policy stays in force.
    return failed.length > 0 ? { status: 422, body: { error: failed.map((r) => r.error?.message).join('\n'), results } } : { status: 200, body: { results } };
  }
  if (method === 'GET' && path === '/inbox') {
    const session = url.searchParams.get('session') ?? undefined;
    return { status: 200, body: runtime.inbox.list({ session, all: url.searchParams.get('all') === '1' }) };
  }
  const item = ITEM.exec(path);
  if (!item) return null;
  const [, id, action] = item as unknown as [string, string, string | undefined];
  if (method === 'GET' && action === undefined) {
    const found = runtime.inbox.get(id);
    return found ? { status: 200, body: found } : { status: 404, body: { error: `no inbox item ${id}` } };
  }
  if (method === 'GET' && action === 'plan') {
    const { text: _text, ...plan } = await runtime.approvals.plan(id);
    return { status: 200, body: plan };
  }
  if (method === 'POST' && action === 'approve') {
    const body = await readBody();
    const expect = typeof body.expect === 'string' ? body.expect : undefined;
    return { status: 200, body: await runtime.approvals.approve(id, expect) };
  }
  if (method === 'POST' && action === 'deny') {
    return runtime.approvals.deny(id) ? { status: 200, body: { dismissed: id } } : { status: 404, body: { error: `no inbox item ${id}` } };
  }
  return null;
}
