// Host-side firewall for a session bridge: the container may reach the host only at the proxy
// port. One iptables chain per session, jumped to from INPUT for the session's bridge interface,
// so removal (and `airlock gc`) is exact.
import { execFile } from 'node:child_process';

const CHAIN_PREFIX = 'AIRLOCK-';

export interface FirewallRule {
  readonly sessionId: string;
  readonly bridge: string;
  readonly gateway: string;
  readonly proxyPort: number;
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 127) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
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

export function canManageFirewall(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Installs the session's rules (IPv4: proxy port only; IPv6: nothing at all). */
export async function installFirewall(rule: FirewallRule): Promise<void> {
  const chain = chainName(rule.sessionId);
  const comment = `airlock.session=${rule.sessionId}`;
  await must('iptables', ['-w', '-N', chain]);
  await must('iptables', ['-w', '-A', chain, '-p', 'tcp', '-d', rule.gateway, '--dport', String(rule.proxyPort), '-j', 'ACCEPT']);
  await must('iptables', ['-w', '-A', chain, '-j', 'DROP']);
  await must('iptables', ['-w', '-I', 'INPUT', '1', '-i', rule.bridge, '-m', 'comment', '--comment', comment, '-j', chain]);
  // Best effort: an engine without IPv6 on this bridge has nothing to drop.
  await run('ip6tables', ['-w', '-I', 'INPUT', '1', '-i', rule.bridge, '-m', 'comment', '--comment', comment, '-j', 'DROP']);
}

/** Removes whatever rules of this session exist; safe to call twice or after a partial install. */
export async function removeFirewall(sessionId: string): Promise<void> {
  const chain = chainName(sessionId);
  const comment = `airlock.session=${sessionId}`;
  for (const [cmd, target] of [['iptables', chain], ['ip6tables', 'DROP']] as const) {
    const listing = await run(cmd, ['-w', '-S', 'INPUT']);
    for (const line of listing.stdout.split('\n')) {
      if (!line.includes(`"${comment}"`) && !line.includes(` ${comment} `)) continue;
      if (!line.endsWith(`-j ${target}`)) continue;
      await run(cmd, ['-w', ...line.replace(/^-A /, '-D ').split(' ').map((a) => a.replace(/^"(.*)"$/, '$1'))]);
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
