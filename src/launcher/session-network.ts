// A session's own Docker network, shared by `airlock run --network-mode bridge` and by sessions
// another launcher starts containers in (`airlock session create --docker`):
//
//   internal network (no route out, no outside DNS)  ──  gateway = host bridge address
//   proxy listener on the gateway, only this session's credential accepted there
//   iptables: from this bridge the host accepts the proxy port and drops everything else, and
//     nothing is routed from or to it (Airlock's own rules, whatever the engine's)
//   embedded DNS forwards only to the gateway, where those rules drop it
import type Docker from 'dockerode';
import { engineFirewall, installFirewall, removeFirewall } from './firewall.js';
import type { EngineFirewall } from './firewall.js';
import { LaunchError } from './errors.js';

export function networkName(sessionId: string): string {
  return `airlock-${sessionId}`;
}

/**
 * Why the session cannot start when Airlock's rules could not be added (`error`), given what the
 * engine does for the network itself. Root gets no way around it: run as root means Airlock's
 * rules are wanted, and with an engine that filters nothing they are all there is.
 */
export function firewallFailure(error: string, engine: EngineFirewall): string {
  const fix = 'Run airlock as root on the Docker host itself, with a working iptables';
  if (engine === 'none') {
    return (
      'refusing to run: the Docker engine manages no firewall rules for the session network (is dockerd running with ' +
      `--iptables=false?) and Airlock could not add its own (${error}), so nothing would keep the container from routing ` +
      'through its gateway to other networks, or from reaching every port the host listens on there. ' +
      `${fix}, so Airlock adds its rules, or start dockerd with iptables enabled (the default).`
    );
  }
  const engineSide =
    engine === 'rules'
      ? " (Docker's own rules for the network, which are in place, would still keep it off other networks)"
      : ", and the engine's rules for it could not be read either: nothing Airlock can see would keep it off other networks";
  return (
    `Airlock could not add its firewall rules for the session network (${error}): without them the container could reach ` +
    `every port the host listens on at its gateway${engineSide}. ${fix}.`
  );
}

/** What containers on the session network need besides the network itself. */
export interface SessionHostConfig {
  readonly NetworkMode: string;
  readonly ExtraHosts: string[];
  readonly Dns: string[];
  readonly DnsOptions: string[];
}

export interface SessionNetworkOptions {
  readonly docker: Docker;
  readonly sessionId: string;
  readonly labels: Record<string, string>;
  /** Whether to add Airlock's firewall rules (root only). */
  readonly firewall: boolean;
  readonly notice: (line: string) => void;
  /** Undo steps, run in reverse order by the caller. */
  readonly cleanups: Array<() => Promise<unknown>>;
}

/**
 * Makes the session network, has `open` start the session's proxy listener on its gateway, then
 * closes the host side around that one port. Every step pushes its undo onto `cleanups`.
 */
export async function openSessionNetwork<L extends { readonly proxyPort: number }>(
  o: SessionNetworkOptions,
  open: (gateway: string) => Promise<L>,
  release: (lease: L) => Promise<unknown>,
): Promise<{ lease: L; network: string; gateway: string; hostConfig: SessionHostConfig }> {
  const name = networkName(o.sessionId);
  const network = await o.docker.createNetwork({ Name: name, Driver: 'bridge', Internal: true, CheckDuplicate: true, Labels: o.labels });
  o.cleanups.push(() => network.remove());
  const info = await network.inspect();
  const gateway: string | undefined = info.IPAM?.Config?.[0]?.Gateway;
  if (!gateway) throw new LaunchError('the session network has no gateway address');
  const bridge = `br-${String(info.Id).slice(0, 12)}`;

  const lease = await open(gateway);
  o.cleanups.push(() => release(lease));
  if (o.firewall) {
    // Read before Airlock's own rules exist: only the engine's can name the bridge then.
    const engine = await engineFirewall(bridge);
    o.cleanups.push(() => removeFirewall(o.sessionId));
    try {
      await installFirewall({ sessionId: o.sessionId, bridge, gateway, proxyPort: lease.proxyPort });
    } catch (err) {
      throw new LaunchError(firewallFailure((err as Error).message, engine));
    }
    if (engine === 'none') {
      o.notice(
        'the Docker engine manages no firewall rules for the session network (is dockerd running with --iptables=false?): ' +
          "Airlock's own rules are what keep the container off other networks",
      );
    }
  }
  const hostConfig: SessionHostConfig = {
    NetworkMode: name,
    ExtraHosts: [`host.docker.internal:${gateway}`],
    // Docker's embedded DNS forwards names it does not know to upstream servers, from an
    // internal network too, and DNS alone can carry data out (CVE-2024-29018: Docker before
    // 26.0/25.0.4 even forwarded from the host's namespace when the host's resolver was on
    // loopback). Its only upstream is the gateway, where Airlock's firewall drops everything
    // but the proxy port, so outside names never resolve and no query leaves the session.
    Dns: [gateway],
    // ...and fail in a second, not twenty.
    DnsOptions: ['timeout:1', 'attempts:1'],
  };
  return { lease, network: name, gateway, hostConfig };
}

/**
 * Stops every container still attached to a session network (the session is over: without it
 * they have no way out anyway) so that the network can go. Missing network: nothing to do.
 */
export async function stopAttached(docker: Docker, network: string): Promise<string[]> {
  let attached: Record<string, unknown>;
  try {
    attached = ((await docker.getNetwork(network).inspect()) as { Containers?: Record<string, unknown> }).Containers ?? {};
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return [];
    throw err;
  }
  const ids = Object.keys(attached);
  await Promise.all(
    ids.map(async (id) => {
      await docker.getContainer(id).stop({ t: 2 }).catch(() => {});
      // A container that will not stop still loses the network.
      await docker.getNetwork(network).disconnect({ Container: id, Force: true }).catch(() => {});
    }),
  );
  return ids.map((id) => id.slice(0, 12));
}
