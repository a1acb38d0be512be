// The no-network mode of `airlock run` (the default): the session has no network at all, only a
// loopback port that a relay pipes to the session's proxy socket on the host.
//
//   relay container: --network none, the socket's directory bound in read-only, socat listening
//     on 127.0.0.1:3128 and connecting each connection to /run/airlock/proxy.sock
//   session container: --network container:<relay>, i.e. the relay's namespace: `lo` and nothing
//     else, no route, no DNS, no host address; HTTPS_PROXY=http://id:token@127.0.0.1:3128
//   proxy: listens on <session dir>/relay/proxy.sock (dir 0700, socket 0600), and still demands
//     the session's credential there (a second lock)
//
// No iptables rule is involved and no host port is opened, so a user of the engine needs no root;
// the same works on rootless engines (Podman, Docker), where container root is the launching user.
import type Docker from 'dockerode';
import { chownSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Policy } from '../policy/index.js';
import { UNIX_SOCKET } from './provider.js';
import type { SessionLease, SessionProvider } from './provider.js';
import { LABEL_RELAY_DIR } from './gc.js';
import { LaunchError } from './errors.js';

export const DEFAULT_RELAY_IMAGE = 'airlock-relay:latest';
/** The port the relay listens on, on the shared loopback. */
export const RELAY_PORT = 3128;
const SOCKET_IN_RELAY = '/run/airlock';

/** Bounds of the relay: one socat process per open connection, a few MiB in all. */
export const RELAY_LIMITS = Object.freeze({ pids: 300, memoryBytes: 128 * 1024 * 1024, maxConnections: 256 });

export type NetworkMode = 'none' | 'bridge';
export const NETWORK_MODES: readonly NetworkMode[] = ['none', 'bridge'];

export interface RelayOptions {
  readonly docker: Docker;
  readonly provider: SessionProvider;
  readonly policy: Policy;
  readonly sessionId: string;
  readonly extraEnv: Readonly<Record<string, string>>;
  readonly relayImage: string;
  /** The session container's uid:gid (the relay's owner when the launcher is root). */
  readonly sessionUser: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Steps run in reverse order when the session ends (the caller's list). */
  readonly cleanups: Array<() => Promise<unknown>>;
  readonly notice: (line: string) => void;
}

export interface RelayNetwork {
  readonly lease: SessionLease;
  /** host:port the session's proxy URL names. */
  readonly proxyHost: string;
  readonly proxyPort: number;
  /** The session container's network settings. */
  readonly hostConfig: { readonly NetworkMode: string };
}

/** Whether the engine runs without root (rootless Docker or Podman): container root is the user. */
export async function engineIsRootless(docker: Docker): Promise<boolean> {
  const info = (await docker.info()) as { SecurityOptions?: unknown; Rootless?: unknown };
  // Podman's compatible API says so in a field of its own; Docker in its security options.
  if (info.Rootless === true) return true;
  const options = Array.isArray(info.SecurityOptions) ? info.SecurityOptions.map(String) : [];
  return options.some((o) => /(^|,)name=rootless(,|$)/.test(o));
}

/**
 * The uid:gid the relay runs as: it must be allowed to connect to the socket (owner-only), and is
 * never root on the host.
 * - rootless engine: container root, which is the launching user on the host (no privilege);
 * - launcher not root: the launcher's own uid:gid (the socket's owner);
 * - launcher root (sudo): the session's uid (or nobody when that is root); the socket's directory
 *   is then handed to that uid.
 */
export function relayUser(rootless: boolean, launcher: { uid: number; gid: number }, sessionUser: string): { user: string; chownTo?: [number, number] } {
  if (rootless) return { user: '0:0' };
  if (launcher.uid !== 0) return { user: `${launcher.uid}:${launcher.gid}` };
  const [uid = 65534, gid = uid] = sessionUser.split(':').map(Number);
  const owner: [number, number] = uid === 0 ? [65534, 65534] : [uid, gid];
  return { user: `${owner[0]}:${owner[1]}`, chownTo: owner };
}

export async function requireRelayImage(docker: Docker, image: string): Promise<void> {
  try {
    await docker.getImage(image).inspect();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) {
      throw new LaunchError(
        `relay image ${image} not found: build it with \`airlock image build\` (it builds the relay with the agent image), ` +
          'or use --network-mode bridge',
      );
    }
    throw err;
  }
}

/**
 * Opens the session's proxy side on a unix socket and starts its relay; returns once the relay
 * listens. Everything it creates is registered in `o.cleanups` as soon as it exists.
 */
export async function openRelayNetwork(o: RelayOptions): Promise<RelayNetwork> {
  await requireRelayImage(o.docker, o.relayImage);
  const rootless = await engineIsRootless(o.docker);
  if (rootless && String(((await o.docker.info()) as { CgroupVersion?: unknown }).CgroupVersion) === '1') {
    o.notice('note: a rootless engine on cgroup v1 ignores the relay\'s pids and memory limits');
  }
  const lease = await o.provider.open(o.policy, UNIX_SOCKET, o.sessionId, o.extraEnv);
  o.cleanups.push(() => lease.release());
  if (!lease.socketPath) throw new LaunchError('the proxy did not open a unix socket for the session (a daemon of an older airlock? restart it)');
  const dir = dirname(lease.socketPath);
  const launcher = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const relay = relayUser(rootless, launcher, o.sessionUser);
  if (relay.chownTo) {
    chownSync(dir, ...relay.chownTo);
    chownSync(lease.socketPath, ...relay.chownTo);
  }

  const container = await o.docker.createContainer({
    name: `airlock-relay-${o.sessionId}`,
    Image: o.relayImage,
    User: relay.user,
    Entrypoint: ['socat'],
    Cmd: relayCommand(),
    Labels: { ...o.labels, [LABEL_RELAY_DIR]: dir },
    HostConfig: {
      NetworkMode: 'none',
      // Read-only: connecting to a socket needs no write access to its filesystem.
      Binds: [`${dir}:${SOCKET_IN_RELAY}:ro`],
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      Privileged: false,
      PidsLimit: RELAY_LIMITS.pids,
      Memory: RELAY_LIMITS.memoryBytes,
      MemorySwap: RELAY_LIMITS.memoryBytes,
      Init: false,
    },
  });
  o.cleanups.push(() => container.remove({ force: true, v: true }));
  await container.start();
  await waitListening(container);
  return {
    lease,
    proxyHost: '127.0.0.1',
    proxyPort: RELAY_PORT,
    hostConfig: { NetworkMode: `container:${container.id}` },
  };
}

/** socat: quiet (a session hammering a dead socket must not fill the engine's logs), big buffers. */
export function relayCommand(): string[] {
  return [
    '-lf',
    '/dev/null',
    '-b',
    '65536',
    `TCP4-LISTEN:${RELAY_PORT},bind=127.0.0.1,reuseaddr,fork,backlog=256,max-children=${RELAY_LIMITS.maxConnections},nodelay`,
    `UNIX-CONNECT:${SOCKET_IN_RELAY}/proxy.sock`,
  ];
}

/**
 * Waits until the relay listens: the session's first request must not race it. Read from the
 * relay's own /proc (an exec, no connection made), since the host cannot see into its namespace.
 */
async function waitListening(container: Docker.Container, timeoutMs = 30_000): Promise<void> {
  const listening = new RegExp(`^\\s*\\d+: 0100007F:${RELAY_PORT.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A `, 'm');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = (await container.inspect()).State as { Running?: boolean; ExitCode?: number };
    if (!state.Running) throw new LaunchError(`the session relay exited (status ${state.ExitCode ?? '?'}) before it listened`);
    if (listening.test(await execOutput(container, ['cat', '/proc/net/tcp']).catch(() => ''))) return;
    if (Date.now() > deadline) throw new LaunchError(`the session relay did not listen within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function execOutput(container: Docker.Container, cmd: string[]): Promise<string> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: false, Tty: true });
  const stream = (await exec.start({ hijack: true, stdin: false, Tty: true })) as NodeJS.ReadableStream;
  let out = '';
  stream.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  return out;
}

/** For `airlock doctor`: which mode `airlock run` uses and why, one line each. */
export async function describeNetworkModes(
  docker: Docker,
  o: { readonly relayImage: string; readonly launcherUid: number },
): Promise<{ lines: string[]; ok: boolean }> {
  const lines: string[] = [];
  let ok = true;
  const rootless = await engineIsRootless(docker).catch(() => false);
  let relayImage = true;
  try {
    await requireRelayImage(docker, o.relayImage);
  } catch {
    relayImage = false;
  }
  if (relayImage) {
    lines.push(
      `network: airlock run uses --network-mode none (the default): the session gets only loopback, relayed to the proxy's ` +
        `unix socket by ${o.relayImage}; no root and no firewall rule needed${rootless ? ' (rootless engine: the relay runs as you)' : ''}`,
    );
  } else {
    ok = false;
    lines.push(`network: relay image ${o.relayImage} not found, so the default --network-mode none cannot run; fix: airlock image build`);
  }
  lines.push(
    o.launcherUid === 0
      ? 'network: --network-mode bridge is available too (root: iptables closes the host side)'
      : `network: --network-mode bridge would need root for its iptables rules (you are uid ${o.launcherUid}), or --allow-host-ports`,
  );
  return { lines, ok };
}
