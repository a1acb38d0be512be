// Host-side firewall for a session bridge, every rule tagged with the session id so removal (and
// `airlock gc`) is exact:
//   INPUT    the container may reach the host only at the proxy port (chain AIRLOCK-<id>);
//   FORWARD  nothing is routed from or to the bridge. Docker's isolation of an internal network
//            does the same today, but the container keeps a default route via the gateway, so a
//            daemon started with --iptables=false, or a later change in Docker's rules, would open
//            it: containment does not rest on the engine's rules.
// The FORWARD drops also go first in DOCKER-USER when that chain exists: whenever Docker creates a
// network it inserts that network's rules (ACCEPTs for published ports among them) at the top of
// FORWARD, above anything put there earlier, but it keeps its jump to DOCKER-USER first of all.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

const CHAIN_PREFIX = 'AIRLOCK-';
/** Built-in and Docker chains that may hold rules of a session (removal looks in each). */
const HOOK_CHAINS = ['INPUT', 'FORWARD', 'DOCKER-USER'] as const;

export interface FirewallRule {
  readonly sessionId: string;
  readonly bridge: string;
  readonly gateway: string;
  readonly proxyPort: number;
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 15_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 127) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === 127 ? err.message : '') });
    });
  });
}

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
}

export function chainName(sessionId: string): string {
  const chain = CHAIN_PREFIX + sessionId;
  if (!/^AIRLOCK-[a-z0-9-]{1,20}$/.test(chain)) throw new Error(`session id ${sessionId} cannot name a firewall chain`);
  return chain;
}

function sessionComment(sessionId: string): string {
  return `airlock.session=${sessionId}`;
}

/** Whether an `iptables -S` line carries exactly this comment (quoted or not). */
function hasComment(line: string, comment: string): boolean {
  return line.includes(`"${comment}"`) || line.includes(` ${comment} `) || line.endsWith(` ${comment}`);
}

export function canManageFirewall(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** FORWARD, and DOCKER-USER when the engine made it (evaluated before any rule of Docker's). */
async function forwardChains(cmd: 'iptables' | 'ip6tables'): Promise<string[]> {
  return (await run(cmd, ['-w', '-S', 'DOCKER-USER'])).code === 0 ? ['FORWARD', 'DOCKER-USER'] : ['FORWARD'];
}

/**
 * Installs the session's rules (IPv4: the proxy port only, nothing routed; IPv6: nothing at all).
 * Throws if a rule cannot be added, or if the bridge is not in this network namespace: rules here
 * would then never see its traffic.
 */
export async function installFirewall(rule: FirewallRule): Promise<void> {
  const chain = chainName(rule.sessionId);
  const tag = ['-m', 'comment', '--comment', sessionComment(rule.sessionId)];
  if (!existsSync(`/sys/class/net/${rule.bridge}`)) {
    throw new Error(
      `the session bridge ${rule.bridge} is not in this network namespace, so rules added here would not see its traffic ` +
        '(is airlock running inside a container, or against a remote or rootless engine?)',
    );
  }
  // The chain first: `airlock gc` finds a session's rules through it.
  await must('iptables', ['-w', '-N', chain]);
  await must('iptables', ['-w', '-A', chain, '-p', 'tcp', '-d', rule.gateway, '--dport', String(rule.proxyPort), '-j', 'ACCEPT']);
  await must('iptables', ['-w', '-A', chain, '-j', 'DROP']);
  for (const forward of await forwardChains('iptables')) {
    for (const dir of ['-o', '-i']) await must('iptables', ['-w', '-I', forward, '1', dir, rule.bridge, ...tag, '-j', 'DROP']);
  }
  await must('iptables', ['-w', '-I', 'INPUT', '1', '-i', rule.bridge, ...tag, '-j', chain]);
  // Best effort: an engine without IPv6 on this bridge has nothing to drop.
  await run('ip6tables', ['-w', '-I', 'INPUT', '1', '-i', rule.bridge, ...tag, '-j', 'DROP']);
  for (const forward of await forwardChains('ip6tables')) {
    for (const dir of ['-o', '-i']) await run('ip6tables', ['-w', '-I', forward, '1', dir, rule.bridge, ...tag, '-j', 'DROP']);
  }
}

/** Removes whatever rules of this session exist; safe to call twice or after a partial install. */
export async function removeFirewall(sessionId: string): Promise<void> {
  const chain = chainName(sessionId);
  const comment = sessionComment(sessionId);
  for (const cmd of ['iptables', 'ip6tables'] as const) {
    for (const hook of HOOK_CHAINS) {
      const listing = await run(cmd, ['-w', '-S', hook]);
      for (const line of listing.stdout.split('\n')) {
        if (!line.startsWith(`-A ${hook} `) || !hasComment(line, comment)) continue;
        await run(cmd, ['-w', ...line.replace(/^-A /, '-D ').split(' ').map((a) => a.replace(/^"(.*)"$/, '$1'))]);
      }
    }
  }
  await run('iptables', ['-w', '-F', chain]);
  await run('iptables', ['-w', '-X', chain]);
}

/** Session ids that still have a chain (for gc). */
export async function firewallSessions(): Promise<string[]> {
  const r = await run('iptables', ['-w', '-S']);
  const ids = new Set<string>();
  // Only chains whose name is one of ours (chainName() would refuse anything else).
  for (const match of r.stdout.matchAll(/^-N AIRLOCK-([a-z0-9-]{1,20})$/gm)) ids.add(match[1]!);
  return [...ids];
}

/**
 * The lines of a firewall listing (`iptables -S` or `nft list ruleset`) that name `bridge` as an
 * interface and are not Airlock's: the engine's own rules for the session network.
 */
export function engineRules(listing: string, bridge: string): string[] {
  return listing
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.split(/\s+/).some((t) => t === bridge || t === `"${bridge}"`) && !line.includes('airlock.session='));
}

/** rules: the engine filters the bridge's traffic itself; none: it does not; unknown: no listing could be read. */
export type EngineFirewall = 'rules' | 'none' | 'unknown';

/**
 * Whether the engine keeps firewall rules for this bridge (Docker's isolation of an internal
 * network). `docker info` does not say whether dockerd manages iptables, so the rules are looked
 * for: in iptables, and in nftables for Docker's nftables backend.
 */
export async function engineFirewall(bridge: string): Promise<EngineFirewall> {
  let read = false;
  for (const [cmd, args] of [['iptables', ['-w', '-S']], ['nft', ['list', 'ruleset']]] as const) {
    const r = await run(cmd, [...args]);
    if (r.code !== 0) continue;
    read = true;
    if (engineRules(r.stdout, bridge).length > 0) return 'rules';
  }
  return read ? 'none' : 'unknown';
}
