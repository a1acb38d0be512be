// Sessions whose containers another launcher starts (`airlock session create --docker`, served by
// the daemon): the same network, gateway listener and firewall as `airlock run --network-mode
// bridge` (session-network.ts), made before any container exists and kept until the session is
// removed or its last container on the network has gone.
import type Docker from 'dockerode';
import type { DockerNetwork, DockerNetworks } from '../sessions/admin.js';
import { canManageFirewall } from './firewall.js';
import { LABEL_PID, LABEL_SESSION } from './gc.js';
import { LaunchError } from './errors.js';
import { pingDocker } from './run.js';
import { openSessionNetwork, stopAttached } from './session-network.js';

export interface DockerNetworksOptions {
  /** The engine, asked for on first use (a daemon that never makes a Docker session needs none). */
  readonly docker: () => Promise<Docker>;
  readonly notice: (line: string) => void;
  /** How often to look whether containers are still on a session's network. */
  readonly pollMs?: number;
}

async function undo(steps: Array<() => Promise<unknown>>, notice: (line: string) => void): Promise<void> {
  for (const step of steps.reverse()) {
    try {
      await step();
    } catch (err) {
      notice(`cleanup: ${(err as Error).message}`);
    }
  }
  steps.length = 0;
}

/** Number of containers on the network, or null when the network is gone. */
async function attachedCount(docker: Docker, network: string): Promise<number | null> {
  try {
    return Object.keys(((await docker.getNetwork(network).inspect()) as { Containers?: Record<string, unknown> }).Containers ?? {}).length;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
}

/** Calls `on` with the action (connect, disconnect, ...) of each engine event of the network. */
async function watchNetworkEvents(docker: Docker, network: string, on: (action: string) => void): Promise<{ destroy(): void } | undefined> {
  let stream: NodeJS.ReadableStream & { destroy(): void };
  try {
    stream = (await docker.getEvents({ filters: { type: ['network'], network: [network] } })) as NodeJS.ReadableStream & { destroy(): void };
  } catch {
    // The periodic look alone then.
    return undefined;
  }
  let pending = '';
  stream.on('error', () => {});
  stream.on('data', (chunk: Buffer | string) => {
    pending += chunk.toString();
    for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        const action = (JSON.parse(line) as { Action?: unknown }).Action;
        if (typeof action === 'string') on(action);
      } catch {
        // Not an event: ignored.
      }
    }
  });
  return stream;
}

export function dockerNetworks(options: DockerNetworksOptions): DockerNetworks {
  const pollMs = options.pollMs ?? 1000;
  return {
    async open(sessionId, listen, idle): Promise<DockerNetwork> {
      // No --allow-host-ports here: a launcher we do not know sets no limits we could vouch for,
      // so the host side is always closed.
      if (!canManageFirewall()) {
        throw new LaunchError(
          'a Docker session needs the airlock proxy to run as root: its iptables rules are what keep containers on the session ' +
            'network off every other host port and network. Start `airlock proxy` as root.',
        );
      }
      const docker = await options.docker();
      await pingDocker(docker);
      const cleanups: Array<() => Promise<unknown>> = [];
      let opened;
      try {
        // Labelled with the daemon's pid: `airlock gc` removes what a crashed daemon left.
        opened = await openSessionNetwork(
          { docker, sessionId, labels: { [LABEL_SESSION]: sessionId, [LABEL_PID]: String(process.pid) }, firewall: true, notice: options.notice, cleanups },
          async (gateway) => ({ proxyPort: await listen(gateway) }),
          // The daemon closes the listener with the session.
          async () => {},
        );
      } catch (err) {
        await undo(cleanups, options.notice);
        throw err;
      }
      const { network, gateway } = opened;
      let closed = false;
      let seen = false;
      let timer: NodeJS.Timeout | undefined;
      // The session ends when the last container that joined it has left (exited or removed).
      let looking = false;
      const watch = async () => {
        if (closed || looking) return;
        looking = true;
        clearTimeout(timer);
        try {
          const count = await attachedCount(docker, network);
          if (count === null || (seen && count === 0)) return idle();
          if (count > 0) seen = true;
        } catch (err) {
          options.notice(`session ${sessionId}: could not inspect ${network}: ${(err as Error).message}`);
        } finally {
          looking = false;
        }
        if (!closed) timer = setTimeout(() => void watch(), pollMs).unref();
      };
      timer = setTimeout(() => void watch(), pollMs).unref();
      // The engine's events too: a container that joins and leaves between two looks still counts,
      // and a leaving one is noticed at once.
      const events = await watchNetworkEvents(docker, network, (action) => {
        if (action === 'connect') seen = true;
        if (action === 'disconnect') void watch();
      });
      return {
        network,
        gateway,
        async close() {
          if (closed) return;
          closed = true;
          clearTimeout(timer);
          events?.destroy();
          // Containers first, while the firewall still stands around them.
          await stopAttached(docker, network).catch((err: Error) => options.notice(`session ${sessionId}: ${err.message}`));
          await undo(cleanups, options.notice);
        },
      };
    },
  };
}
