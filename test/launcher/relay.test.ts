// `airlock run` in its default network mode (none) against the real Docker engine: the session
// container sits in its relay's network namespace, which has only `lo`; the relay pipes
// 127.0.0.1:3128 to the session's unix socket on the host. The upstreams are this test's servers
// on the host, reached by the proxy through --resolve; every probe targets this machine.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { describeDocker } from '../helpers/docker.js';
import { CLI_PATH, rmTmp, runCli, runProcess, startGitServer, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { GitServer, TestPki, TestUpstream } from '../helpers/servers.js';
import {
  dockerOk,
  execScript,
  expectNoLeftovers,
  finishSession,
  inspectContainer,
  leftovers,
  NO_LEFTOVERS,
  parseProbes,
  refusedByPolicy,
  PROBE_PRELUDE,
  sessionCommand,
  relayRunSetup,
  spawnCli,
  waitExit,
  waitForSession,
} from './run-helpers.js';
import type { LiveCli, ProbeResult, SessionContainer } from './run-helpers.js';

const POLICY = `
version: 1
name: relay-test
allow:
  - host: api.github.com
  - host: git.test
`;

const RUN_ID = randomBytes(3).toString('hex');
const SLOW = 30 * 60_000;

let image: string;
let relayImage: string;
let pki: TestPki;
let github: TestUpstream;
let gitServer: GitServer;
/** A test-owned TCP port on 0.0.0.0: every host address has it open. */
let hostPort: net.Server;
let work: string;
let policy: string;
let baseEnv: NodeJS.ProcessEnv;
const stateDirs: string[] = [];

function newStateDir(): string {
  const dir = tmpDir('airlock-relay-state-');
  stateDirs.push(dir);
  return dir;
}

function runArgs(stateDir: string, name: string, command: readonly string[], extra: readonly string[] = []): string[] {
  return [
    'run', '--policy', policy, '--image', image, '--relay-image', relayImage, '--state-dir', stateDir, '--name', name,
    '--resolve', `api.github.com:443:127.0.0.1:${github.port}`,
    '--resolve', `git.test:443:127.0.0.1:${gitServer.port}`,
    '--upstream-ca', pki.caFile,
    ...extra, '--', ...command,
  ];
}

function containerName(tag: string): string {
  return `airlock-test-relay-${tag}-${RUN_ID}-${randomBytes(2).toString('hex')}`;
}

/** Every IPv4 address of this host, plus the default Docker bridge's. */
function hostAddresses(): string[] {
  const out = new Set<string>(['172.17.0.1']);
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) if (i.family === 'IPv4') out.add(i.address);
  return [...out];
}

function expectNoAnswer(p: ProbeResult | undefined, what: string): void {
  expect(p, `probe ${what} did not report`).toBeDefined();
  expect({ what, http: p!.http, connect: p!.connect }).toEqual({ what, http: '000', connect: '000' });
  // 6: could not resolve, 7: could not connect (no route, refused), 28: timed out.
  expect([6, 7, 28], `${what}: ${p!.err}`).toContain(p!.rc);
}

/** Host and relay state of a session: its relay container and its socket directory. */
async function relayOf(session: SessionContainer) {
  const id = await dockerOk(['ps', '-a', '-q', '--filter', `label=airlock.session=${session.sessionId}`, '--filter', 'label=airlock.relay-dir']);
  expect(id.split('\n').filter(Boolean), 'exactly one relay per session').toHaveLength(1);
  const { info, raw } = await inspectContainer(id);
  const dir = info.Config.Labels['airlock.relay-dir']!;
  return { id, info: info as typeof info & { HostConfig: Record<string, unknown> }, raw, dir, socket: join(dir, 'proxy.sock') };
}

beforeAll(async () => {
  ({ image, relayImage, baseEnv, pki } = await relayRunSetup());
  github = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  gitServer = await startGitServer({ pki, names: ['git.test'] });
  hostPort = net.createServer((s) => s.end('host port answered\n'));
  await new Promise<void>((resolve) => hostPort.listen({ host: '0.0.0.0', port: 0 }, resolve));
  work = tmpDir('airlock-relay-test-');
  chmodSync(work, 0o755); // the docker-group test user reads the policy
  policy = join(work, 'policy.yaml');
  writeFileSync(policy, POLICY, { mode: 0o644 });
}, SLOW);

afterAll(async () => {
  await Promise.all([github?.close(), gitServer?.close(), new Promise((resolve) => hostPort?.close(resolve))]);
  await runCli(['gc'], { env: baseEnv }).catch(() => {});
  rmTmp(work, pki?.dir, ...stateDirs);
}, 120_000);

describeDocker('airlock run, network mode none: two concurrent sessions', () => {
  const sessions: Array<{ cli: LiveCli; c: SessionContainer; stateDir: string; name: string }> = [];

  beforeAll(async () => {
    for (const tag of ['a', 'b']) {
      const stateDir = newStateDir();
      const name = containerName(tag);
      const cli = spawnCli(runArgs(stateDir, name, sessionCommand('/tmp/ready')), baseEnv);
      sessions.push({ cli, c: undefined as unknown as SessionContainer, stateDir, name });
    }
    for (const s of sessions) {
      s.c = await waitForSession(s.cli, s.name, undefined, 180_000);
      await waitFor(async () => (await execScript(s.c.name, 'test -e /tmp/ready && echo up')).stdout.includes('up'), 60_000, 'session ready');
    }
  }, SLOW);

  afterAll(async () => {
    for (const s of sessions) {
      if (!s.cli.exited()) {
        s.cli.child.kill('SIGTERM');
        await waitExit(s.cli, 60_000).catch(() => {});
      }
    }
  }, 120_000);

  it('the relay is locked down: no network, read-only root, no capabilities, not root, pids and memory bounded; the socket is owner-only', async () => {
    const [a] = sessions;
    const relay = await relayOf(a!.c);
    const hc = relay.info.HostConfig as Record<string, unknown>;
    expect(hc.NetworkMode).toBe('none');
    expect(hc.ReadonlyRootfs).toBe(true);
    expect(hc.CapDrop).toEqual(['ALL']);
    expect(hc.SecurityOpt).toEqual(['no-new-privileges']);
    expect(hc.PidsLimit).toBeGreaterThan(0);
    expect(hc.Memory).toBeGreaterThan(0);
    expect(relay.info.Config.User).not.toMatch(/^0(:|$)/);
    expect(hc.Binds).toEqual([`${relay.dir}:/run/airlock:ro`]);
    // The session container: in the relay's namespace, locked down as in bridge mode.
    const { info } = await inspectContainer(a!.c.name);
    expect(info.HostConfig.NetworkMode).toBe(`container:${relay.info.Id}`);
    expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    expect(info.HostConfig.SecurityOpt).toEqual(['no-new-privileges']);
    expect(info.Config.Env.find((e) => e.startsWith('HTTPS_PROXY='))).toMatch(/^HTTPS_PROXY=http:\/\/s-[0-9a-f]+:[^@]+@127\.0\.0\.1:3128$/);
    // The socket: in the session's state dir, reachable by its owner only.
    expect(relay.dir).toBe(join(a!.stateDir, 'sessions', a!.c.sessionId, 'relay'));
    expect(statSync(relay.dir).mode & 0o777).toBe(0o700);
    expect(statSync(relay.socket).isSocket()).toBe(true);
    expect(statSync(relay.socket).mode & 0o777).toBe(0o600);
    // No firewall rule of this session anywhere.
    expect((await leftovers(a!.c.sessionId)).rules).toEqual([]);
  }, 120_000);

  it('escape probe: only lo, no route, no DNS, no host address or port answers; only the relay port listens', async () => {
    const [a] = sessions;
    const port = (hostPort.address() as net.AddressInfo).port;
    const addrs = hostAddresses();
    const script = `${PROBE_PRELUDE}
echo "IFACES $(ls /sys/class/net | tr '\\n' ' ')"
echo "ROUTES4 $(tail -n +2 /proc/net/route | wc -l) ROUTES6 $(grep -vc ' lo$' /proc/net/ipv6_route)"
echo "LISTEN $(awk 'FNR>1 && $4=="0A" {print $2}' /proc/net/tcp /proc/net/tcp6 | sort | tr '\\n' ' ')"
echo "UDP $(awk 'FNR>1 {print $2}' /proc/net/udp /proc/net/udp6 | tr '\\n' ' ')"
timeout 10 getent hosts api.github.com >/dev/null 2>&1; echo "DNS_GITHUB $?"
timeout 10 getent hosts host.docker.internal >/dev/null 2>&1; echo "DNS_HOST $?"
${addrs.map((ip, i) => `direct host${i} --connect-timeout 3 http://${ip}:${port}/ &\ndirect hosttls${i} -k https://${ip}:${port}/ &`).join('\n')}
direct docker-api http://172.17.0.1:2375/ &
direct name https://api.github.com/ &
direct v6 -g 'http://[::1]:${port}/' &
wait
direct relay-noauth http://127.0.0.1:3128/ 
`;
    const r = await execScript(a!.c.name, script, 120_000);
    expect(r.code, r.stderr).toBe(0);
    const line = (key: string) => new RegExp(`^${key} (.*)$`, 'm').exec(r.stdout)?.[1]?.trim();
    expect(line('IFACES')).toBe('lo');
    expect(line('ROUTES4')).toBe('0 ROUTES6 0');
    // 0100007F:0C38 = 127.0.0.1:3128, the relay's; nothing else listens in the namespace.
    expect(line('LISTEN')).toBe('0100007F:0C38');
    expect(line('UDP')).toBe('');
    expect(line('DNS_GITHUB')).not.toBe('0');
    expect(line('DNS_HOST')).not.toBe('0');
    const probes = parseProbes(r.stdout);
    for (let i = 0; i < addrs.length; i++) {
      expectNoAnswer(probes.get(`host${i}`), `host address ${addrs[i]}:${port}`);
      expectNoAnswer(probes.get(`hosttls${i}`), `host address ${addrs[i]}:${port} (TLS)`);
    }
    expectNoAnswer(probes.get('docker-api'), 'docker API port on the default bridge');
    expectNoAnswer(probes.get('name'), 'api.github.com without the proxy');
    expectNoAnswer(probes.get('v6'), 'host port on ::1 (the namespace has its own loopback)');
    // The one thing that answers: the relay, i.e. the proxy, which wants a credential.
    expect(probes.get('relay-noauth')?.http).toBe('407');
  }, 180_000);

  it('curl and git through the proxy reach the test upstreams; another host is refused by policy', async () => {
    const [a] = sessions;
    const before = github.requests.length;
    const script = `${PROBE_PRELUDE}
probe allowed https://api.github.com/relay-check
probe denied https://evil.example/
echo "GIT $(timeout 60 git ls-remote https://git.test/repo.git HEAD 2>&1 | tr '\\n' ' ')"
`;
    const r = await execScript(a!.c.name, script, 120_000);
    const probes = parseProbes(r.stdout);
    expect(probes.get('allowed')?.http, probes.get('allowed')?.err).toBe('200');
    expect(refusedByPolicy(probes.get('denied')), JSON.stringify(probes.get('denied'))).toBe(true);
    expect(github.requests.slice(before).map((q) => q.url)).toContain('/relay-check');
    expect(/^GIT (.*)$/m.exec(r.stdout)?.[1]).toContain(gitServer.headCommit);
  }, 180_000);

  it("cross-session: A's container sees no socket, cannot use B's credential, and has no way to B's relay", async () => {
    const [a, b] = sessions;
    const bProxy = (await dockerOk(['exec', b!.c.name, 'printenv', 'HTTPS_PROXY'])).trim();
    const relayB = await relayOf(b!.c);
    const script = `${PROBE_PRELUDE}
ls -d /run/airlock ${relayB.dir} ${relayB.socket} 2>/dev/null | sed 's/^/SEEN /'
probe b-credential --proxy '${bProxy}' https://api.github.com/b-cred
echo "IFACES $(ls /sys/class/net | tr '\\n' ' ')"
`;
    const r = await execScript(a!.c.name, script, 60_000);
    expect(r.stdout).not.toMatch(/^SEEN /m);
    // B's credential is bound to B's socket: on A's relay it is refused.
    expect(parseProbes(r.stdout).get('b-credential')?.connect).toBe('407');
    expect(github.requests.map((q) => q.url)).not.toContain('/b-cred');
    // B's relay has no address at all: nothing to route to, from A or anywhere.
    const bNets = (relayB.info as unknown as { NetworkSettings: { Networks: Record<string, { IPAddress: string }> } }).NetworkSettings.Networks;
    expect(Object.values(bNets).map((n) => n.IPAddress).filter(Boolean)).toEqual([]);
    expect(relayB.info.Id).not.toBe((await relayOf(a!.c)).info.Id);
  }, 120_000);

  it('exits with the command status and removes relay, container and socket', async () => {
    const dirs = await Promise.all(sessions.map(async (s) => (await relayOf(s.c)).dir));
    await finishSession(sessions[0]!.c.name, 3);
    await finishSession(sessions[1]!.c.name, 0);
    const [ra, rb] = await Promise.all(sessions.map((s) => waitExit(s.cli, 120_000)));
    expect(ra!.code, ra!.stderr).toBe(3);
    expect(rb!.code, rb!.stderr).toBe(0);
    for (const [i, s] of sessions.entries()) {
      expect(await expectNoLeftovers(s.c.sessionId)).toEqual(NO_LEFTOVERS);
      expect(existsSync(dirs[i]!)).toBe(false);
      // The audit log stays.
      expect(existsSync(join(s.stateDir, 'sessions', s.c.sessionId, 'audit.jsonl'))).toBe(true);
    }
  }, 180_000);
});

describeDocker('airlock run, network mode none: launcher killed with SIGKILL', () => {
  it('the session then reaches nothing (the socket has no listener), and airlock gc removes relay, container and socket', async () => {
    const stateDir = newStateDir();
    const name = containerName('killed');
    const cli = spawnCli(runArgs(stateDir, name, ['sleep', '600']), baseEnv);
    const c = await waitForSession(cli, name, undefined, 180_000);
    const relay = await relayOf(c);
    const ok = await execScript(name, `${PROBE_PRELUDE}\nprobe before https://api.github.com/before-kill`, 60_000);
    expect(parseProbes(ok.stdout).get('before')?.http).toBe('200');

    cli.child.kill('SIGKILL');
    const r = await waitExit(cli, 30_000);
    expect(r.signal).toBe('SIGKILL');
    const left = await leftovers(c.sessionId);
    expect(left.containers).toHaveLength(2); // session + relay, still running
    expect(existsSync(relay.socket)).toBe(true);

    const after = await execScript(name, `${PROBE_PRELUDE}\nprobe after https://api.github.com/after-kill\ndirect host -k https://127.0.0.1:${github.port}/`, 60_000);
    const probes = parseProbes(after.stdout);
    // The relay accepts and at once hangs up: no status, no tunnel.
    expect(probes.get('after')?.http).toBe('000');
    expect(probes.get('after')?.connect).toBe('000');
    expect(probes.get('after')?.rc).not.toBe(0);
    expect(probes.get('host')?.rc).toBe(7);
    expect(github.requests.map((q) => q.url)).not.toContain('/after-kill');

    const gc = await runCli(['gc'], { env: baseEnv, timeoutMs: 120_000 });
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stderr).toMatch(/airlock gc: removed [2-9]\d* container\(s\)/);
    expect(await leftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
    expect(existsSync(relay.dir)).toBe(false);
  }, 300_000);
});

describeDocker('airlock run, network mode none: a user in the docker group, without root', () => {
  const user = `airlock-t${RUN_ID}`;
  let created = false;

  afterAll(async () => {
    if (created) await runProcess('userdel', [user], { timeoutMs: 30_000 });
  });

  it('runs a session and adds no iptables rule', async () => {
    if (process.getuid?.() !== 0) return; // creating the test user needs root
    const add = await runProcess('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--groups', 'docker', user], { timeoutMs: 30_000 });
    expect(add.code, add.stderr).toBe(0);
    created = true;
    const uid = Number((await runProcess('id', ['-u', user])).stdout.trim());
    const gid = Number((await runProcess('id', ['-g', user])).stdout.trim());
    const stateDir = newStateDir();
    chownSync(stateDir, uid, gid);
    const rules = async () => {
      const out: string[] = [];
      for (const cmd of ['iptables-save', 'ip6tables-save']) {
        const r = await runProcess(cmd, [], { timeoutMs: 15_000 });
        out.push(...r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => `${cmd}: ${l.replace(/\[\d+:\d+\]/, '')}`));
      }
      return out;
    };
    const before = await rules();
    const name = containerName('user');
    const run = await runProcess(
      'runuser',
      ['-u', user, '--', process.execPath, CLI_PATH, ...runArgs(stateDir, name, [
        'sh', '-c', 'id -u; curl -sS -o /dev/null -w "%{http_code}\\n" https://api.github.com/as-user; cat /sys/class/net/*/ifindex | wc -l',
      ])],
      { env: { ...baseEnv, HOME: stateDir }, cwd: '/', timeoutMs: 240_000 },
    );
    const after = await rules();
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/needs root|warning/);
    expect(run.stdout.trim().split('\n')).toEqual([String(uid), '200', '1']);
    expect(github.requests.map((q) => q.url)).toContain('/as-user');
    const session = /airlock: session (s-[0-9a-f]+)/.exec(run.stderr)?.[1];
    expect(session).toBeDefined();
    // Rules other sessions on this shared host add meanwhile may differ; none is this session's,
    // and the launcher could not have added one (it is not root).
    const added = after.filter((l) => !before.includes(l));
    console.log(`iptables/ip6tables rules: ${before.length} before, ${after.length} after; new lines: ${added.length ? added.join(' | ') : 'none'}`);
    expect(after.filter((l) => l.includes(session!))).toEqual([]);
    expect(await leftovers(session!)).toEqual(NO_LEFTOVERS);
  }, 300_000);
});

describeDocker('airlock run, network mode none: a relative --state-dir', () => {
  it('is taken from the working directory: the relay socket and the session bundle are mounted from it', async () => {
    const cwd = newStateDir();
    const name = containerName('relative');
    const run = await runProcess(
      process.execPath,
      [CLI_PATH, ...runArgs('relative-state', name, ['sh', '-c', 'test -s "$SSL_CERT_FILE" && curl -sS -o /dev/null -w "%{http_code}\\n" https://api.github.com/relative'])],
      { env: baseEnv, cwd, timeoutMs: 240_000 },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe('200');
    expect(github.requests.map((q) => q.url)).toContain('/relative');
    const m = /^airlock: session (s-[0-9a-f]+): .*; audit: (.*)$/m.exec(run.stderr);
    expect(m?.[2]).toBe(join(cwd, 'relative-state', 'sessions', m![1]!, 'audit.jsonl'));
    expect(existsSync(m![2]!)).toBe(true);
    expect(await leftovers(m![1]!)).toEqual(NO_LEFTOVERS);
  }, 300_000);
});
