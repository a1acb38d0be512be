// The live view from the command line: `airlock ui` (attached to a running daemon) and the --ui
// flag of `airlock proxy` and `airlock run` (the view of the proxy in this process).
import type { Command } from 'commander';
import type { ProxyRuntime } from '../sessions/runtime.js';
import type { SessionInfo } from '../sessions/admin.js';
import { startView } from '../view/server.js';
import type { ViewServer } from '../view/server.js';
import { startRuntimeView } from '../view/runtime-view.js';
import type { SessionSource } from '../view/source.js';
import { isLoopback } from '../view/access.js';
import { defaultStateDir, parseListen, UsageError } from './config.js';

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

/** A running daemon's sessions, read through its admin endpoint (`list`): names and paths only. */
function daemonSessions(list: () => Promise<readonly SessionInfo[]>): SessionSource {
  return {
    async list() {
      // Its proxy URL (with the session's proxy password) and placeholders stay here.
      return (await list()).map((s) => ({ id: s.id, policy: s.policy, created: s.created, auditFile: s.audit, rules: null }));
    },
  };
}

/** `airlock ui`; `sessionsOf` lists a state dir's daemon sessions (the admin client). */
export function registerUiCommand(program: Command, sessionsOf: (stateDir: string) => Promise<readonly SessionInfo[]>): void {
  program
    .command('ui')
    .description("serve the live view of the running proxy's sessions (timeline, denial inbox, rule hits) on loopback")
    .option('--listen <addr:port>', 'where the view listens (loopback only; port 0 picks one)', '127.0.0.1:0')
    .option('--state-dir <dir>', 'state dir of the airlock proxy to attach to', defaultStateDir())
    .action(async (opts: { listen: string; stateDir: string }) => {
      const address = parseUiAddress(opts.listen, '--listen');
      const sessions = daemonSessions(() => sessionsOf(opts.stateDir));
      await sessions.list(); // no daemon: say so now, not in the page
      const view = await startView({ ...address, sessions });
      announce(view);
      const stop = async () => {
        await view.close();
        process.exit(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
