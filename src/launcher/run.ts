// `airlock run`: one container whose only way out is the proxy. The default mode gives it no
// network at all, only a relay to the proxy's unix socket (see relay.ts); --network-mode bridge
// puts it on the session's own internal network, closed by iptables (see session-network.ts).
// Either way: pids, memory (no swap) and CPU limited; CA bundle copied in; placeholders in env;
// secrets stay on the host.
import type Docker from 'dockerode';
import { formatBytes, sizeFlag } from '../policy/index.js';
import type { Policy } from '../policy/index.js';
import type { SessionLease, SessionProvider } from './provider.js';
import { tarOf } from './tar.js';
import { installTrust } from './trust.js';
import { installSessionFiles } from './session-files.js';
import { CA_PATH_IN_CONTAINER, clientEnv, CONTAINER_NO_PROXY } from '../sessions/client-env.js';
import { canManageFirewall } from './firewall.js';
import { openSessionNetwork } from './session-network.js';
import { collectGarbage, LABEL_KEEP, LABEL_PID, LABEL_SESSION } from './gc.js';
import { pack } from 'tar-fs';
import type { Headers } from 'tar-fs';
import { copyOut, copyOutNotices } from './copy-out.js';
import type { Owner } from './copy-out.js';
import { LaunchError } from './errors.js';
import { DEFAULT_RELAY_IMAGE, openRelayNetwork } from './relay.js';
import type { NetworkMode } from './relay.js';

export { LaunchError };
export { firewallFailure } from './session-network.js';

/** Limits given on the command line; each overrides the policy's `container:` entry. */
export interface LimitFlags {
  readonly pids?: number;
  readonly memoryBytes?: number;
  readonly cpus?: number;
}

/**
 * Limits of a session container when neither flag nor policy sets them. A session may be hostile:
 * without a pids limit a fork loop takes the host's process table, without a memory limit an
 * allocation loop takes its memory. 512 tasks (threads count) leave room for an agent, a build and
 * a test runner; 4 GiB for a large build. CPUs are capped at what the engine has.
 */
export const DEFAULT_LIMITS = Object.freeze({ pids: 512, memoryBytes: 4 * 1024 ** 3, cpus: 2 });

export interface Limit {
  readonly value: number;
  readonly source: 'flag' | 'policy' | 'default';
}

export interface SessionLimits {
  readonly pids: Limit;
  readonly memoryBytes: Limit;
  readonly cpus: Limit;
}

export interface RunOptions {
  readonly docker: Docker;
  readonly provider: SessionProvider;
  readonly policy: Policy;
  readonly image: string;
  readonly command: readonly string[];
  readonly sessionId: string;
  /** Host directory for /workspace. */
  readonly workspace?: string;
  /** Copy the workspace in instead of bind-mounting it; copy results out to `copyOut`. */
  readonly copy?: boolean;
  readonly copyOut?: string;
  /** Owner of what copy-out writes (the invoking user; see invokingUser). */
  readonly copyOutOwner?: Owner;
  /** Most bytes of files copy-out writes (DEFAULT_COPY_OUT_LIMIT when unset). */
  readonly copyOutLimit?: number;
  readonly name?: string;
  /** Keep the container (stopped) after the run, for inspection. */
  readonly keep?: boolean;
  readonly env?: readonly string[];
  /** uid:gid inside the container. */
  readonly user: string;
  readonly allowHostPorts?: boolean;
  /** From the flags; the policy's `container:` and DEFAULT_LIMITS fill in the rest. */
  readonly limits?: LimitFlags;
  /** none (default): a relay to the proxy's unix socket, no network; bridge: internal network + iptables. */
  readonly networkMode?: NetworkMode;
  readonly relayImage?: string;
  /** More places in the container for the trust bundle (another launcher's, e.g. Clauderon's). */
  readonly extraCaPaths?: readonly string[];
  readonly tty: boolean;
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  /** Progress and warnings for the user (stderr). */
  readonly notice: (line: string) => void;
}

export interface RunResult {
  readonly exitCode: number;
  readonly sessionId: string;
  readonly auditFile: string;
  readonly summary: string;
}

/**
 * Throws unless the host side can be closed (root, for iptables) or the caller accepted the gap.
 * Checked before anything else, Docker included, so a non-root caller learns about this first.
 */
export function requireHostClosure(allowHostPorts: boolean | undefined): void {
  if (!canManageFirewall() && !allowHostPorts) {
    throw new LaunchError(
      'airlock run needs root to close the host side: without its iptables rules the container could reach every port the host ' +
        "listens on at the session gateway, and only Docker's own rules, which Airlock cannot read without root, would keep it " +
        'off other networks. Run as root, or pass --allow-host-ports to accept both.',
    );
  }
}

/** Flags over the policy over the defaults; throws if the engine has fewer CPUs than asked for. */
export function resolveLimits(flags: LimitFlags, policy: Policy, engineCpus: number): SessionLimits {
  const pick = (flag: number | undefined, fromPolicy: number | null, fallback: number): Limit =>
    flag !== undefined ? { value: flag, source: 'flag' } : fromPolicy !== null ? { value: fromPolicy, source: 'policy' } : { value: fallback, source: 'default' };
  let cpus = pick(flags.cpus, policy.container.cpus, DEFAULT_LIMITS.cpus);
  if (cpus.source === 'default') {
    cpus = { value: Math.min(cpus.value, engineCpus), source: 'default' };
  } else if (cpus.value > engineCpus) {
    const what = cpus.source === 'flag' ? `--cpus ${cpus.value}` : `container.cpus: ${cpus.value} in ${policy.source}`;
    const override = cpus.source === 'policy' ? ` (--cpus ${engineCpus} overrides the policy)` : '';
    throw new LaunchError(`${what}: this Docker engine has ${engineCpus} CPU${engineCpus === 1 ? '' : 's'}; ask for at most ${engineCpus}${override}`);
  }
  return {
    pids: pick(flags.pids, policy.container.pids, DEFAULT_LIMITS.pids),
    memoryBytes: pick(flags.memoryBytes, policy.container.memoryBytes, DEFAULT_LIMITS.memoryBytes),
    cpus,
  };
}

/** What to tell the user when the kernel killed a process of the session for its memory. */
export function outOfMemoryMessage(limits: SessionLimits, policy: Policy): string {
  const memory = limits.memoryBytes;
  const origin =
    memory.source === 'flag' ? `--memory ${sizeFlag(memory.value)}` : memory.source === 'policy' ? `container.memory in ${policy.source}` : 'the default';
  const more = sizeFlag(memory.value * 2);
  return (
    `the session hit its memory limit of ${formatBytes(memory.value)} (${origin}): the kernel killed a process in it (out of memory). ` +
    `To allow more, pass --memory ${more}, or set container: { memory: ${more} } in the policy.`
  );
}

export async function runSession(o: RunOptions): Promise<RunResult> {
  const bridged = o.networkMode === 'bridge';
  if (bridged) requireHostClosure(o.allowHostPorts);
  const firewall = bridged && canManageFirewall();
  if (bridged && !firewall) {
    o.notice(
      "warning: not root, so no firewall rules of Airlock's: the container can reach other host ports on the session gateway, " +
        "and only Docker's own rules, unchecked, keep it off other networks (--allow-host-ports)",
    );
  }
  if (o.copy && !o.copyOut) throw new LaunchError('--copy needs --copy-out DIR: where to put the workspace after the run');
  const extraEnv = parseExtraEnv(o.env ?? []);

  await pingDocker(o.docker);
  const limits = resolveLimits(o.limits ?? {}, o.policy, await engineCpus(o.docker));
  await collectGarbage(o.docker, { onlyDead: true, notice: o.notice });

  const cleanups: Array<() => Promise<unknown>> = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (err) {
        o.notice(`cleanup: ${(err as Error).message}`);
      }
    }
    cleanups.length = 0;
  };
  const labels = { [LABEL_SESSION]: o.sessionId, [LABEL_PID]: String(process.pid) };
  let interrupted = false;
  let container: Docker.Container | undefined;
  const onSignal = () => {
    interrupted = true;
    // Stop the container cleanly; the normal path below then cleans up.
    container?.stop({ t: 5 }).catch(() => {});
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    const { lease, hostConfig, proxyHost, proxyPort } = bridged
      ? await openBridgeNetwork(o, labels, extraEnv, firewall, cleanups)
      : await openRelayNetwork({
          ...o,
          extraEnv,
          relayImage: o.relayImage ?? DEFAULT_RELAY_IMAGE,
          sessionUser: o.user,
          labels,
          cleanups,
        });

    checkExtraEnv(o.env ?? [], lease);
    const env = sessionEnv(lease, proxyHost, proxyPort, o.env ?? []);
    const binds = o.workspace && !o.copy ? [`${o.workspace}:/workspace`] : [];
    container = await o.docker.createContainer({
      name: o.name,
      Image: o.image,
      Cmd: [...o.command],
      Env: env,
      User: o.user,
      WorkingDir: '/workspace',
      Labels: o.keep ? { ...labels, [LABEL_KEEP]: '1' } : labels,
      Tty: o.tty,
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: {
        ...hostConfig,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        Privileged: false,
        Binds: binds,
        Init: false,
        PidsLimit: limits.pids.value,
        Memory: limits.memoryBytes.value,
        // No swap on top: an allocation loop would page the host to a crawl instead of ending.
        MemorySwap: limits.memoryBytes.value,
        OomKillDisable: false,
        NanoCpus: Math.round(limits.cpus.value * 1e9),
      },
    });
    const created = container;
    if (!o.keep) cleanups.push(() => created.remove({ force: true, v: true }));
    // Copied, not bind-mounted: the container holds its own copy of the trust bundle.
    const caFiles = [CA_PATH_IN_CONTAINER, ...(o.extraCaPaths ?? [])].map((path) => ({ name: path.slice(1), content: lease.bundlePem, mode: 0o644 }));
    await container.putArchive(tarOf(caFiles), { path: '/' });
    // Also as the system bundle and the JVM's trust store, for tools that read no CA variable.
    const imageEnv = (await container.inspect()).Config.Env ?? [];
    await installTrust(container, lease.bundlePem, imageEnv);
    // Files the credentials give the session (a placeholder login store), owned by its user.
    if (lease.sessionFiles?.length) {
      const home = await installSessionFiles(container, lease.sessionFiles, o.user, extraEnv, imageEnv);
      o.notice(`the session's home ${home} holds ${lease.sessionFiles.map((f) => f.path).join(' and ')} (placeholders only)`);
    }
    if (o.copy && o.workspace) {
      // Owned by the session's user, so it can change what it was given (the host's owners mean
      // nothing in the container, and root's files would be read-only to a non-root session).
      const [uid = 0, gid = uid] = o.user.split(':').map(Number);
      const owned = (header: Headers) => ({ ...header, uid, gid });
      await container.putArchive(pack(o.workspace, { map: owned }), { path: '/workspace' });
    }

    const exitCode = await attachAndWait(o, container, () => interrupted);
    // Whichever process the kernel picked (the command or one of its children), say why.
    if ((await container.inspect()).State.OOMKilled) o.notice(outOfMemoryMessage(limits, o.policy));
    if (o.copy && o.copyOut) {
      const archive = (await container.getArchive({ path: '/workspace/.' })) as NodeJS.ReadableStream;
      const report = await copyOut(archive, o.copyOut, { owner: o.copyOutOwner, maxBytes: o.copyOutLimit });
      for (const line of copyOutNotices(report, o.copyOut)) o.notice(line);
    }
    return { exitCode, sessionId: lease.id, auditFile: lease.auditFile, summary: lease.summary() };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    await cleanup();
  }
}

/** Bridge mode: an internal network whose gateway is the proxy's listener, closed by iptables. */
async function openBridgeNetwork(
  o: RunOptions,
  labels: Record<string, string>,
  extraEnv: Record<string, string>,
  firewall: boolean,
  cleanups: Array<() => Promise<unknown>>,
) {
  const { lease, hostConfig } = await openSessionNetwork(
    { docker: o.docker, sessionId: o.sessionId, labels, firewall, notice: o.notice, cleanups },
    (gateway) => o.provider.open(o.policy, gateway, o.sessionId, extraEnv),
    (lease) => lease.release(),
  );
  return { lease, hostConfig, proxyHost: 'host.docker.internal', proxyPort: lease.proxyPort };
}

/**
 * The -e entries as name → value; throws on an entry that is not NAME=VALUE. A bare NAME is refused
 * rather than filled in from the host environment (docker run's meaning): no host variable enters a
 * session unless spelt out, and the value spelt out is checked like any other.
 */
export function parseExtraEnv(entries: readonly string[]): Record<string, string> {
  const env = new Map<string, string>();
  for (const [i, entry] of entries.entries()) {
    const at = entry.indexOf('=');
    // Messages never show a value, and a bare entry may be one (a token pasted without NAME=).
    if (at === -1) {
      throw new LaunchError(`-e number ${i + 1}: expected NAME=VALUE (a bare NAME is not filled in from the host environment)`);
    }
    const name = entry.slice(0, at);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new LaunchError(`-e ${JSON.stringify(name)}=...: expected NAME=VALUE with a NAME of letters, digits and _`);
    env.set(name, entry.slice(at + 1));
  }
  return Object.fromEntries(env);
}

/** Throws unless every -e entry may enter the session; messages name the variable, never the value. */
export function checkExtraEnv(entries: readonly string[], lease: SessionLease): void {
  for (const name of Object.keys(parseExtraEnv(entries))) {
    if (lease.secretSourceEnv.includes(name)) {
      throw new LaunchError(`-e ${name}: that variable is a secret source of this policy and never enters a session`);
    }
    if (lease.withheldEnv.includes(name)) {
      throw new LaunchError(
        `-e ${name}: its value holds a real secret of this policy's credentials (as is or encoded), and secrets never enter a session; ` +
          'the session gets placeholders, which the proxy swaps for the secret',
      );
    }
  }
}

function sessionEnv(lease: SessionLease, proxyHost: string, proxyPort: number, extra: readonly string[]): string[] {
  const env = clientEnv({
    proxyUrl: `http://${lease.id}:${lease.token}@${proxyHost}:${proxyPort}`,
    noProxy: CONTAINER_NO_PROXY,
    bundlePath: CA_PATH_IN_CONTAINER,
    placeholders: lease.placeholders,
    sessionId: lease.id,
  });
  return [...env.map(([name, value]) => `${name}=${value}`), ...extra];
}

export async function pingDocker(docker: Docker): Promise<void> {
  try {
    await docker.ping();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    const hint = code === 'EACCES' ? 'no permission on the Docker socket: run as root or as a member of the docker group' : 'start dockerd or set DOCKER_HOST';
    throw new LaunchError(`Docker engine not reachable at ${dockerEndpoint(docker)} (${code}): ${hint}`);
  }
}

/** CPUs the engine can hand out (Docker refuses a quota above that); no cap if it does not say. */
async function engineCpus(docker: Docker): Promise<number> {
  try {
    const ncpu = Number(((await docker.info()) as { NCPU?: unknown }).NCPU);
    return Number.isInteger(ncpu) && ncpu > 0 ? ncpu : Infinity;
  } catch {
    return Infinity;
  }
}

/** Where the client talks to the engine, for messages. (docker-modem's default socketPath is a function.) */
function dockerEndpoint(docker: Docker): string {
  const modem = docker.modem as { socketPath?: unknown; host?: unknown; port?: unknown; protocol?: unknown };
  if (typeof modem.socketPath === 'string') return modem.socketPath;
  if (typeof modem.host === 'string') {
    return `${typeof modem.protocol === 'string' ? modem.protocol : 'http'}://${modem.host}${modem.port ? `:${String(modem.port)}` : ''}`;
  }
  return 'the default socket (/var/run/docker.sock)';
}

async function attachAndWait(o: RunOptions, container: Docker.Container, interrupted: () => boolean): Promise<number> {
  const stream = (await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as NodeJS.ReadWriteStream;
  // A reset Docker socket ends the output stream; it must not crash the launcher before cleanup.
  stream.on('error', (err: Error) => o.notice(`attach stream: ${err.message}`));
  if (o.tty) {
    stream.pipe(o.stdout);
  } else {
    container.modem.demuxStream(stream, o.stdout, o.stderr);
  }
  const stdinIsTty = o.tty && o.stdin.isTTY;
  if (stdinIsTty) o.stdin.setRawMode?.(true);
  if (o.stdin.isTTY || o.tty) {
    o.stdin.pipe(stream);
  } else {
    // Forward piped stdin, then close the container's stdin when it ends.
    o.stdin.on('data', (chunk) => stream.write(chunk));
    o.stdin.on('end', () => (stream as unknown as { end(): void }).end());
  }
  await container.start();
  if (o.tty && o.stdout.isTTY) {
    const resize = () => container.resize({ h: o.stdout.rows, w: o.stdout.columns }).catch(() => {});
    await resize();
    o.stdout.on('resize', resize);
  }
  const result = (await container.wait()) as { StatusCode: number };
  if (stdinIsTty) o.stdin.setRawMode?.(false);
  o.stdin.unpipe(stream as unknown as NodeJS.WritableStream);
  o.stdin.pause();
  // Let the last output drain before the caller tears things down.
  await new Promise((resolve) => setTimeout(resolve, 50));
  return interrupted() && result.StatusCode === 0 ? 130 : result.StatusCode;
}
