// The live view from the command line: `airlock ui` (attached to a running daemon) and the --ui
// flag of `airlock proxy` and `airlock run` (the view of the proxy in this process).
import type { Command } from 'commander';
import type { ProxyRuntime } from '../sessions/runtime.js';
import type { SessionInfo } from '../sessions/admin.js';
import type { InboxItem as QueuedItem } from '../sessions/inbox.js';
import type { ApprovalPlan } from '../sessions/approve.js';
import type { PolicyStatus } from '../sessions/session.js';
import { startView } from '../view/server.js';
import type { ViewServer } from '../view/server.js';
import { operatorInbox, startRuntimeView } from '../view/runtime-view.js';
import type { InboxSource, SessionSource } from '../view/source.js';
import { isLoopback } from '../view/access.js';
import { parseListen, stateDirOption, UsageError } from './config.js';

/** ADDRESS:PORT of the view, checked: loopback only. */
export function parseUiAddress(value: string, flag: string): { host: string; port: number } {
  const { host, port } = parseListen(value, flag);
  if (!isLoopback(host)) {
    throw new UsageError(`${flag} ${value}: the live view listens on loopback only (127.0.0.1 or [::1]): it shows every session's traffic`);
  }
  return { host, port };
}

/** Prints where the view is. The URL carries its access token: stderr only, never a log. */
function announce(view: ViewServer): void {
  process.stderr.write(`airlock: live view at ${view.url}\nairlock: open it in a browser on this machine; the token in it is the key, the page then keeps a cookie\n`);
}

/** The view of the proxy in this process (`airlock proxy --ui`, `airlock run --ui`). */
export async function startRuntimeUi(runtime: ProxyRuntime, value: string, flag = '--ui'): Promise<ViewServer> {
  const view = await startRuntimeView(runtime, parseUiAddress(value, flag));
  announce(view);
  return view;
}

/** A request to a daemon's admin endpoint (cli/daemon.ts adminRequest, passed in: daemon.ts imports this file). */
export type AdminCall = (stateDir: string, method: string, path: string, body?: unknown) => Promise<unknown>;

/** A running daemon's sessions and their policy status, read through its admin endpoint: names and paths only. */
function daemonSessions(admin: AdminCall, stateDir: string): SessionSource {
  return {
    async list() {
      const [sessions, status] = await Promise.all([
        admin(stateDir, 'GET', '/sessions') as Promise<SessionInfo[]>,
        admin(stateDir, 'GET', '/policy') as Promise<(PolicyStatus & { session: string })[]>,
      ]);
      const statusOf = new Map(status.map((p) => [p.session, p]));
      // Its proxy URL (with the session's proxy password) and placeholders stay here.
      return sessions.map((s) => {
        const p = statusOf.get(s.id);
        const policyStatus = p && { version: p.version, loadedAt: p.loadedAt, ...(p.error ? { error: p.error.message } : {}) };
        return { id: s.id, policy: s.policy, created: s.created, auditFile: s.audit, rules: null, ...(policyStatus ? { policyStatus } : {}) };
      });
    },
  };
}

/** A running daemon's inbox and approvals, through its admin endpoint's operator routes. */
function daemonInbox(admin: AdminCall, stateDir: string): InboxSource {
  return operatorInbox({
    list: async () => (await admin(stateDir, 'GET', '/inbox')) as QueuedItem[],
    plan: async (id) => (await admin(stateDir, 'GET', `/inbox/${encodeURIComponent(id)}/plan`)) as ApprovalPlan,
    approve: (id, expect) => admin(stateDir, 'POST', `/inbox/${encodeURIComponent(id)}/approve`, { expect }),
    // An unknown item is the daemon's 404, shown as it says it.
    deny: async (id) => (await admin(stateDir, 'POST', `/inbox/${encodeURIComponent(id)}/deny`), true),
  });
}

/** `airlock ui`: the view of the daemon whose state dir is given, over its admin endpoint. */
export function registerUiCommand(program: Command, admin: AdminCall): void {
  program
    .command('ui')
    .description("serve the live view of the running proxy's sessions (timeline, denial inbox, rule hits) on loopback")
    .option('--listen <addr:port>', 'where the view listens (loopback only; port 0 picks one)', '127.0.0.1:0')
    .addOption(stateDirOption('state dir of the airlock proxy to attach to'))
    .action(async (opts: { listen: string; stateDir: string }) => {
      const address = parseUiAddress(opts.listen, '--listen');
      const sessions = daemonSessions(admin, opts.stateDir);
      await sessions.list(); // no daemon: say so now, not in the page
      const view = await startView({ ...address, sessions, inbox: daemonInbox(admin, opts.stateDir) });
      announce(view);
      const stop = async () => {
        await view.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
