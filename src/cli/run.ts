// `airlock run` and `airlock gc`: Docker sessions, served by an embedded proxy or a running daemon.
import { realpathSync } from 'node:fs';
import { resolve as resolvePath, sep } from 'node:path';
import { dockerClient } from './docker.js';
import { Option } from 'commander';
import type { Command } from 'commander';
import { checkCpus, checkMemory, checkPids, checkSize, compatProfile } from '../policy/index.js';
import type { Checked } from '../policy/index.js';
import type { ProxyRuntime } from '../sessions/runtime.js';
import type { SessionInfo } from '../sessions/admin.js';
import { newSessionId } from '../sessions/session.js';
import { DaemonProvider, EmbeddedProvider } from '../launcher/provider.js';
import type { DaemonAdmin, SessionProvider } from '../launcher/provider.js';
import { DEFAULT_RELAY_IMAGE, NETWORK_MODES } from '../launcher/relay.js';
import type { NetworkMode } from '../launcher/relay.js';
import { runSession, pingDocker, requireHostClosure } from '../launcher/run.js';
import type { LimitFlags } from '../launcher/run.js';
import { invokingUser } from '../launcher/copy-out.js';
import { chooseSessionUser, readImageUser, workspaceAccessNotice } from '../launcher/user.js';
import { collectDaemonSessions, collectGarbage } from '../launcher/gc.js';
import type { DaemonSessions } from '../launcher/gc.js';
import { collect, loadRunPolicy, stateDirOption, UsageError } from './config.js';
import { addProxyFlags, buildRuntime } from './runtime.js';
import { agentNoteLine, appendAgentNotes } from './agent-notes.js';
import { startRuntimeUi } from './ui.js';
import type { ViewServer } from '../view/server.js';
import { AdminError, adminRequest, openLease, removeDaemonSession } from './daemon.js';

/** --pids-limit, --memory and --cpus, checked like the policy's `container:` entries. */
export function limitFlags(opts: { pidsLimit?: string; memory?: string; cpus?: string }): LimitFlags {
  const read = <T>(flag: string, text: string | undefined, value: (t: string) => unknown, check: (v: unknown) => Checked<T>, hint: string): T | undefined => {
    if (text === undefined) return undefined;
    const checked = check(value(text.trim()));
    if (!checked.ok) throw new UsageError(`${flag} ${text}: ${checked.problem}. ${hint}`);
    return checked.value;
  };
  // Numbers only when the text is one, so "1,5" is reported as written rather than as NaN.
  const integer = (t: string) => (/^\d+$/.test(t) ? Number(t) : t);
  const decimal = (t: string) => (/^(\d+(\.\d*)?|\.\d+)$/.test(t) ? Number(t) : t);
  return {
    pids: read('--pids-limit', opts.pidsLimit, integer, checkPids, 'Use a whole number of processes (threads count too), e.g. --pids-limit 512'),
    memoryBytes: read('--memory', opts.memory, (t) => t, checkMemory, 'Use a size with a unit k, m, g or t (binary: 4g is 4 GiB), e.g. --memory 4g'),
    cpus: read('--cpus', opts.cpus, decimal, checkCpus, 'Use how many CPUs the container may keep busy, e.g. --cpus 2 or --cpus 0.5'),
  };
}

/** --copy-out-limit: a size with docker's units, from 1 MiB. */
function copyOutLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const checked = checkSize(text.trim(), { min: 1024 ** 2, max: 1024 ** 5 });
  if (!checked.ok) throw new UsageError(`--copy-out-limit ${text}: ${checked.problem}. Use a size with a unit k, m, g or t, e.g. --copy-out-limit 20g`);
  return checked.value;
}

export function registerRunCommands(program: Command): void {
  const run = program
    .command('run')
    .description('run a command in a container whose only way out is the Airlock proxy')
    .option('--policy <file>', 'policy YAML file (or only --allow)')
    .option('--allow <host[:port]>', "allow this host (repeatable; on top of the policy's rules): Cloche's network_allow, without YAML", collect, [])
    .option('--compat <name>', "follow another launcher's conventions for images written to its guide: clauderon (CA also at /etc/clauderon/proxy-ca.pem, its placeholder values)")
    .requiredOption('--image <image>', 'container image (see `airlock image build`)')
    .option('--workspace <dir>', 'host directory mounted at /workspace', undefined)
    .option('--copy', 'copy the workspace in instead of mounting it')
    .option('--copy-out <dir>', 'with --copy: where the workspace is copied back after the run')
    .option('--copy-out-limit <size>', 'with --copy-out: most the copied-back files may add up to, e.g. 20g (default 8g)')
    .option('--name <name>', 'container name')
    .option('--keep', 'keep the stopped container after the run (gc leaves it; remove it with docker rm)')
    .option('-e, --env <NAME=VALUE>', 'extra environment variable (repeatable)', collect, [])
    .option('--user <uid:gid>', 'user inside the container (default: yours; under sudo SUDO_UID:SUDO_GID; as root the image\'s non-root USER, else 65532:65532; 0:0 only when asked for)')
    .option(
      '--network-mode <mode>',
      'none: no network, only a relay to the proxy (no root needed); bridge: an internal network closed by iptables (root)',
      'none',
    )
    .option('--relay-image <image>', 'image of the session relay (network mode none; see `airlock image build`)', DEFAULT_RELAY_IMAGE)
    .option('--engine <socket>', 'Docker-compatible engine socket (path, unix://PATH or tcp://HOST:PORT; default: DOCKER_HOST, then /var/run/docker.sock)')
    .option(
      '--allow-host-ports',
      "bridge mode without root: accept that the container can reach other host ports on its gateway, and that only Docker's own rules, unchecked, keep it off other networks",
    )
    .option('--pids-limit <n>', "processes and threads in the container (default: the policy's container.pids, else 512)")
    .option('--memory <size>', "memory of the container, e.g. 8g, no swap on top (default: the policy's container.memory, else 4g)")
    .option('--cpus <n>', "CPUs' worth of time for the container, e.g. 0.5 (default: the policy's container.cpus, else 2)")
    .option('--daemon', 'create the session through the running `airlock proxy` instead of an embedded proxy')
    .option('--agent-notes <file>', "append a short note on http://airlock.internal/ to the agent's instructions, a file relative to --workspace (e.g. CLAUDE.md, AGENTS.md)")
    .option('--ui <addr:port>', 'serve the live view of the embedded proxy here while the command runs (loopback only, e.g. 127.0.0.1:0)');
  addProxyFlags(run, { stateDir: stateDirOption('state dir (audit logs, bundles)'), scope: 'embedded proxy only' })
    .argument('<command...>', 'command and arguments (after --)')
    .action(async (command: string[], opts) => {
      const compat = opts.compat === undefined ? undefined : compatProfile(opts.compat);
      if (compat && !compat.ok) throw new UsageError(`--compat ${opts.compat}: ${compat.problem}`);
      const { policy, text: policyText } = loadRunPolicy(opts.policy, opts.allow, compat?.value);
      const limits = limitFlags(opts);
      const maxCopyOut = copyOutLimit(opts.copyOutLimit);
      const networkMode = opts.networkMode as NetworkMode;
      if (!NETWORK_MODES.includes(networkMode)) throw new UsageError(`--network-mode ${opts.networkMode}: expected ${NETWORK_MODES.join(' or ')}`);
      // Before Docker: without root the answer is "no" whether or not the engine is reachable.
      if (networkMode === 'bridge') requireHostClosure(Boolean(opts.allowHostPorts));
      if (opts.agentNotes) {
        if (!opts.workspace) throw new UsageError('--agent-notes needs --workspace: the file is written in the workspace');
        appendAgentNotes(agentNotesPath(resolvePath(opts.workspace), opts.agentNotes));
      }
      const docker = await dockerClient(opts.engine);
      await pingDocker(docker);
      const notice = (line: string) => process.stderr.write(`airlock: ${line}\n`);
      // Under sudo the caller is SUDO_UID, not root: files in the workspace stay theirs. Root
      // itself gets the image's non-root user unless --user says otherwise.
      const chosen = await chooseSessionUser(
        opts.user,
        { uid: process.getuid?.() ?? 1000, gid: process.getgid?.() ?? 1000, sudoUid: process.env.SUDO_UID, sudoGid: process.env.SUDO_GID },
        () => readImageUser(docker, opts.image),
      );
      if (chosen.warning) notice(`warning: ${chosen.warning}`);
      if (chosen.why) notice(chosen.why);
      const bound = opts.workspace && !opts.copy ? workspaceAccessNotice(resolvePath(opts.workspace), chosen.user) : undefined;
      if (bound) notice(`warning: ${bound}`);
      const user = chosen.user;
      process.stderr.write(agentNoteLine());
      let runtime: ProxyRuntime | undefined;
      let view: ViewServer | undefined;
      let provider: SessionProvider;
      if (opts.daemon && opts.auditExport?.length) {
        throw new UsageError('--audit-export configures the embedded proxy; with --daemon, give it to `airlock proxy`');
      }
      if (opts.daemon && opts.ui !== undefined) {
        throw new UsageError('--ui serves the embedded proxy; with --daemon, run `airlock ui` (or start the daemon with --ui)');
      }
      // A reload reads the file alone: with --allow or --compat added at start it would lose them.
      const follow =
        opts.policy && opts.allow.length === 0 && !compat
          ? policyFollowing(opts.policy, opts.copy ? undefined : opts.workspace, notice)
          : undefined;
      if (opts.policy && !follow) notice(`not watching ${opts.policy} for changes: --allow/--compat are added to it at start; restart the session to change them`);
      if (opts.daemon) {
        provider = new DaemonProvider(daemonAdmin(opts.stateDir), {
          stateDir: opts.stateDir,
          policyText,
          policySource: opts.policy ?? '--allow',
          policyFile: follow?.file,
          watchPolicy: follow?.watch,
          notice,
        });
      } else {
        const { stateDir, resolve, upstreamCa, allowPrivate, auditRotateSize, auditRetain, auditExport } = opts;
        runtime = buildRuntime({ stateDir, resolve, upstreamCa, allowPrivate, auditRotateSize, auditRetain, auditExport, follow }).runtime;
        provider = new EmbeddedProvider(runtime);
        if (opts.ui !== undefined) view = await startRuntimeUi(runtime, opts.ui);
      }
      try {
        const result = await runSession({
          docker,
          provider,
          policy,
          image: opts.image,
          command,
          sessionId: newSessionId(),
          workspace: opts.workspace ? resolvePath(opts.workspace) : undefined,
          copy: Boolean(opts.copy),
          copyOut: opts.copyOut ? resolvePath(opts.copyOut) : undefined,
          copyOutOwner: opts.copyOut ? invokingUser(process.env) : undefined,
          copyOutLimit: maxCopyOut,
          name: opts.name,
          keep: Boolean(opts.keep),
          env: opts.env,
          user,
          allowHostPorts: Boolean(opts.allowHostPorts),
          limits,
          networkMode,
          relayImage: opts.relayImage,
          extraCaPaths: compat?.value.caPaths,
          tty: Boolean(process.stdin.isTTY && process.stdout.isTTY),
          stdin: process.stdin,
          stdout: process.stdout,
          stderr: process.stderr,
          notice,
        });
        process.stderr.write(`airlock: session ${result.sessionId}: ${result.summary}; audit: ${result.auditFile}\n`);
        process.exitCode = result.exitCode;
      } finally {
        await view?.close();
        await runtime?.close();
      }
      // The attached stdin keeps the event loop alive; the run is over.
      process.exit(process.exitCode ?? 0);
    });

  program
    .command('gc')
    .description('remove containers, relays and their sockets, networks and firewall rules left by sessions whose launcher died')
    .option('--all', 'also remove those of sessions that are still running, and containers kept with --keep')
    .addOption(stateDirOption('state dir of the airlock proxy whose sessions to check'))
    .option('--engine <socket>', 'Docker-compatible engine socket (default: DOCKER_HOST, then /var/run/docker.sock)')
    .action(async (opts) => {
      const notice = (l: string) => process.stderr.write(l + '\n');
      // The daemon's sessions first: that closes their listeners before their networks go.
      const sessions = await collectDaemonSessions(daemonSessions(opts.stateDir), { onlyDead: !opts.all, notice });
      const docker = await dockerClient(opts.engine);
      await pingDocker(docker);
      const report = await collectGarbage(docker, { onlyDead: !opts.all, notice });
      const total = sessions.length + report.containers.length + report.networks.length + report.firewall.length;
      if (total === 0) process.stdout.write('airlock gc: nothing to remove\n');
    });
}

/**
 * How the session follows its policy file. A file inside a workspace the container mounts is one
 * the session can write: watching it would let the session rewrite its own policy, so it is only
 * reloaded when the operator asks (and approve refuses while it differs from what runs).
 */
/** The agent-notes file inside the workspace; a path that leaves it is refused. */
export function agentNotesPath(workspace: string, file: string): string {
  const path = resolvePath(workspace, file);
  if (!path.startsWith(workspace + sep)) throw new UsageError(`--agent-notes ${file}: must be a file inside the workspace ${workspace}`);
  return path;
}

export function policyFollowing(policy: string, workspace: string | undefined, notice: (line: string) => void): { file: string; watch: boolean } {
  const file = realOrResolved(policy);
  if (workspace === undefined) return { file, watch: true };
  const root = realOrResolved(workspace);
  const inside = file === root || file.startsWith(root.endsWith(sep) ? root : root + sep);
  if (inside) notice(`not watching ${policy} for changes: it is inside the workspace the session can write; after reviewing a change, load it with \`airlock policy reload\``);
  return { file, watch: !inside };
}

function realOrResolved(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolvePath(path);
  }
}

/** The daemon's sessions for gc; no daemon running for the state dir means none. */
function daemonSessions(stateDir: string): DaemonSessions {
  return {
    list: async () => {
      try {
        return (await adminRequest(stateDir, 'GET', '/sessions')) as SessionInfo[];
      } catch (err) {
        // No token file, or a stale one and nobody at the socket: no daemon, nothing of it to collect.
        if (err instanceof AdminError && ['NO_DAEMON', 'ENOENT', 'ECONNREFUSED'].includes(err.code ?? '')) return [];
        throw err;
      }
    },
    remove: (id) => removeDaemonSession(stateDir, id),
  };
}

/** The daemon's admin endpoint for DaemonProvider. */
function daemonAdmin(stateDir: string): DaemonAdmin {
  return {
    openLease: (body) => openLease(stateDir, '/sessions', body),
    removeSession: (id, options) => removeDaemonSession(stateDir, id, options),
    isGone: (err) => err instanceof AdminError && err.status === 404,
  };
}
