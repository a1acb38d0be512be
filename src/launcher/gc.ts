// Leftovers of sessions whose launcher died (kill -9, crash): containers, relays and their socket
// directories, networks (and containers other launchers left on them) and firewall chains, found by label (and chain name), and sessions a
// daemon still holds for a launcher that is gone; all removed. Sessions of live launchers are kept.
import type Docker from 'dockerode';
import { rmSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { firewallSessions, removeFirewall, canManageFirewall } from './firewall.js';
import { stopAttached } from './session-network.js';

export const LABEL_SESSION = 'airlock.session';
export const LABEL_PID = 'airlock.pid';
/** Set on containers of `airlock run --keep`: once stopped they are the user's, not garbage. */
export const LABEL_KEEP = 'airlock.keep';
/** Set on relay containers (relay.ts): the host directory of the session's socket. */
export const LABEL_RELAY_DIR = 'airlock.relay-dir';

export interface GcOptions {
  /** Only sessions whose launcher process is gone (the default at every start). */
  readonly onlyDead: boolean;
  readonly notice: (line: string) => void;
}

export interface GcReport {
  containers: string[];
  networks: string[];
  firewall: string[];
}

function alive(pid: string | number | undefined): boolean {
  const n = Number(pid);
  if (!Number.isInteger(n) || n <= 0) return false;
  try {
    process.kill(n, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The relay's socket directory from its labels, only if it has the shape the launcher gives it
 * (<state>/sessions/<that session>/relay): a label is never a licence to delete anything else.
 */
function relayDir(labels: Record<string, string> | undefined): string | undefined {
  const dir = labels?.[LABEL_RELAY_DIR];
  const session = labels?.[LABEL_SESSION];
  if (!dir || !session || !dir.startsWith('/')) return undefined;
  if (basename(dir) !== 'relay' || basename(dirname(dir)) !== session || basename(dirname(dirname(dir))) !== 'sessions') return undefined;
  return dir;
}

export async function collectGarbage(docker: Docker, options: GcOptions): Promise<GcReport> {
  const report: GcReport = { containers: [], networks: [], firewall: [] };
  // Chains are listed first: a session starting meanwhile creates its network before its chain,
  // so any chain seen here has its network visible below, and a chain created later is not ours
  // to judge.
  const chains = canManageFirewall() ? await firewallSessions() : [];
  const filters = JSON.stringify({ label: [LABEL_SESSION] });
  const containers = await docker.listContainers({ all: true, filters });
  const networks = await docker.listNetworks({ filters });
  const live = new Set<string>();
  const stale = (labels: Record<string, string> | undefined) => {
    const session = labels?.[LABEL_SESSION];
    if (!session) return false;
    if (options.onlyDead && alive(labels?.[LABEL_PID])) {
      live.add(session);
      return false;
    }
    return true;
  };
  // One failed removal must not stop the rest (or every later `airlock run`, which gcs first).
  const attempt = async (what: string, step: () => Promise<unknown>): Promise<boolean> => {
    try {
      await step();
      return true;
    } catch (err) {
      options.notice(`airlock gc: could not remove ${what}: ${(err as Error).message}`);
      return false;
    }
  };
  // Session containers before relays: a relay holds the network namespace a session container joined.
  containers.sort((a, b) => Number(Boolean(a.Labels?.[LABEL_RELAY_DIR])) - Number(Boolean(b.Labels?.[LABEL_RELAY_DIR])));
  for (const c of containers) {
    // Kept on purpose and finished: left for inspection (`docker rm` it, or `airlock gc --all`).
    // A kept container still running after its launcher died is a leftover like any other.
    if (options.onlyDead && c.Labels?.[LABEL_KEEP] === '1' && c.State !== 'running') continue;
    if (!stale(c.Labels)) continue;
    if (await attempt(`container ${c.Id.slice(0, 12)}`, () => docker.getContainer(c.Id).remove({ force: true, v: true }))) {
      report.containers.push(c.Id.slice(0, 12));
      const dir = relayDir(c.Labels);
      // A socket left by a killed launcher: nothing listens on it any more, but it goes too.
      if (dir) await attempt(`socket directory ${dir}`, async () => rmSync(dir, { recursive: true, force: true }));
    }
  }
  for (const n of networks) {
    if (!stale(n.Labels)) continue;
    // Containers another launcher started on it (a Docker session of a daemon that died) go first:
    // Docker refuses to remove a network that still has containers.
    const stopped = async () => {
      report.containers.push(...(await stopAttached(docker, n.Id)));
      await docker.getNetwork(n.Id).remove();
    };
    if (await attempt(`network ${n.Name}`, stopped)) report.networks.push(n.Name);
  }
  for (const session of chains) {
    if (live.has(session)) continue;
    if (await attempt(`firewall chain of ${session}`, () => removeFirewall(session))) report.firewall.push(session);
  }
  const total = report.containers.length + report.networks.length + report.firewall.length;
  if (total > 0) {
    options.notice(
      `airlock gc: removed ${report.containers.length} container(s), ${report.networks.length} network(s), ${report.firewall.length} firewall chain(s) of ended sessions`,
    );
  }
  return report;
}

/** The admin side of a running daemon, as gc needs it. */
export interface DaemonSessions {
  list(): Promise<ReadonlyArray<{ readonly id: string; readonly launcher_pid?: number }>>;
  remove(id: string): Promise<void>;
}

/**
 * Removes the daemon's sessions whose launcher (`airlock run --daemon`) is gone. The daemon ends
 * such a session itself when its launcher's lease connection closes; this catches what that
 * missed (a daemon of an older version, a lease that never took). Sessions made with `airlock
 * session create` name no launcher and are left to `airlock session rm`.
 */
export async function collectDaemonSessions(daemon: DaemonSessions, options: GcOptions): Promise<string[]> {
  const removed: string[] = [];
  for (const session of await daemon.list()) {
    if (session.launcher_pid === undefined) continue;
    if (options.onlyDead && alive(session.launcher_pid)) continue;
    try {
      await daemon.remove(session.id);
      removed.push(session.id);
    } catch (err) {
      options.notice(`airlock gc: could not remove session ${session.id} from the airlock proxy: ${(err as Error).message}`);
    }
  }
  if (removed.length > 0) {
    options.notice(`airlock gc: removed ${removed.length} session(s) of the airlock proxy whose launcher is gone: ${removed.join(', ')}`);
  }
  return removed;
}
