// Containment that does not rest on Docker alone, against the real engine: Airlock's own FORWARD
// drops for the session bridge (tested with Docker's isolation rules for that bridge removed),
// the embedded DNS pointed where Airlock's firewall drops it, the start-up check, and per-session
// resource limits (pids, memory, CPU) with a clear end when the memory limit is hit.
//
// Every address tried is this test's own: a server container on a network the test made, a
// control container on another, DNS servers the test binds on those networks' gateways. Rules of
// Docker's that a test removes are those of its own bridges only, and are put back in `finally`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { chmodSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeDocker, ensureAgentImage } from '../helpers/docker.js';
import { createTestPki, rmTmp, runCli, runProcess, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { ProcessResult, TestPki, TestUpstream } from '../helpers/servers.js';
import {
  docker,
  dockerOk,
  execScript,
  expectNoLeftovers,
  finishSession,
  NO_LEFTOVERS,
  parseProbes,
  PROBE_PRELUDE,
  sessionSummary,
  spawnCli,
  waitExit,
  waitForSession,
} from './run-helpers.js';
import type { LiveCli, SessionContainer } from './run-helpers.js';

const RUN_ID = randomBytes(3).toString('hex');
const LABEL = 'airlock-test=containment';
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const POLICY = `
version: 1
name: containment
allow:
  - host: api.allowed.test
`;

let image: string;
let pki: TestPki;
let allowed: TestUpstream;
let work: string;
let policyFile: string;
let baseEnv: NodeJS.ProcessEnv;
let engineCpus: number;
const scratch: string[] = [];

// Bridge mode: these tests are about its routing, DNS and firewall rules (the limits are the same
// in both modes).
function runArgs(stateDir: string, extra: readonly string[], command: readonly string[], policy = policyFile): string[] {
  return [
    'run', '--network-mode', 'bridge', '--policy', policy, '--image', image, '--state-dir', stateDir,
    '--resolve', `api.allowed.test:443:127.0.0.1:${allowed.port}`, '--upstream-ca', pki.caFile,
    ...extra, '--', ...command,
  ];
}

function newDir(prefix: string): string {
  const dir = tmpDir(prefix);
  chmodSync(dir, 0o755);
  scratch.push(dir);
  return dir;
}

function name(tag: string): string {
  return `airlock-test-${tag}-${RUN_ID}-${randomBytes(2).toString('hex')}`;
}

async function iptables(args: readonly string[]): Promise<ProcessResult> {
  return runProcess('iptables', ['-w', ...args], { timeoutMs: 15_000 });
}

/** The Linux bridge of a Docker network (br- and the first 12 characters of its id). */
async function bridgeOf(network: string): Promise<string> {
  return `br-${(await dockerOk(['network', 'inspect', '-f', '{{.Id}}', network])).slice(0, 12)}`;
}

async function networkAddress(container: string, network: string): Promise<{ ip: string; gateway: string }> {
  const nets = JSON.parse(await dockerOk(['inspect', '-f', '{{json .NetworkSettings.Networks}}', container])) as Record<string, { IPAddress: string; Gateway: string }>;
  return { ip: nets[network]!.IPAddress, gateway: nets[network]!.Gateway };
}

interface RemovedDrops {
  readonly removed: readonly string[];
  restore(): Promise<void>;
}

/**
 * Removes the engine's DROP rules that name `bridge` (Docker's isolation of an internal network),
 * leaving Airlock's (they carry an airlock.session comment). restore() puts them back at the top of
 * their chains while the bridge still exists; calling it twice is harmless.
 */
async function removeEngineDrops(bridge: string): Promise<RemovedDrops> {
  const listing = await iptables(['-S']);
  expect(listing.code, listing.stderr).toBe(0);
  const removed = listing.stdout
    .split('\n')
    .filter((l) => l.startsWith('-A ') && l.split(' ').includes(bridge) && l.endsWith('-j DROP') && !l.includes('airlock.session='));
  const done: string[] = [];
  let restored = false;
  const restore = async () => {
    if (restored) return;
    restored = true;
    if (!existsSync(`/sys/class/net/${bridge}`)) return; // gone with its network: nothing to protect
    for (const line of [...done].reverse()) {
      const [, chain, ...rest] = line.split(' ');
      const r = await iptables(['-I', chain!, '1', ...rest]);
      if (r.code !== 0) throw new Error(`could not restore "${line}": ${r.stderr}`);
    }
  };
  try {
    for (const line of removed) {
      const r = await iptables(['-D', ...line.split(' ').slice(1)]);
      if (r.code !== 0) throw new Error(`could not remove "${line}": ${r.stderr}`);
      done.push(line);
    }
  } catch (err) {
    await restore();
    throw err;
  }
  return { removed, restore };
}

/** Packets dropped so far by Airlock's rules of `session` that match traffic in from `bridge`. */
async function airlockDrops(session: string, bridge: string): Promise<number> {
  let total = 0;
  for (const chain of ['DOCKER-USER', 'FORWARD']) {
    const r = await iptables(['-L', chain, '-v', '-n', '-x']);
    for (const line of r.stdout.split('\n')) {
      if (!line.includes(`airlock.session=${session} `) && !line.endsWith(`airlock.session=${session} */`)) continue;
      const cols = line.trim().split(/\s+/);
      // pkts bytes target prot opt in out source destination ...
      if (cols[2] === 'DROP' && cols[5] === bridge) total += Number(cols[0]);
    }
  }
  return total;
}

/** curl from inside a container straight to `url` (no proxy): "rc http". */
async function curlFrom(container: string, url: string): Promise<{ rc: number; http: string }> {
  const r = await docker(['exec', container, 'curl', '-sS', '--noproxy', '*', '-o', '/dev/null', '-w', '%{http_code}', '--connect-timeout', '3', '--max-time', '5', url], {
    timeoutMs: 20_000,
  });
  return { rc: r.code ?? -1, http: r.stdout.trim() || '000' };
}

interface DnsServer {
  readonly queries: Array<{ name: string; from: string }>;
  close(): Promise<void>;
}

/** A DNS server on `address`:53 that answers every A query with 203.0.113.7 (TEST-NET-3) and records it. */
async function startDns(address: string): Promise<DnsServer> {
  const queries: Array<{ name: string; from: string }> = [];
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    const labels: string[] = [];
    let i = 12;
    while (i < msg.length && msg[i]! > 0) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]!).toString('latin1'));
      i += msg[i]! + 1;
    }
    const questionEnd = i + 5;
    const qtype = msg.readUInt16BE(i + 1);
    queries.push({ name: labels.join('.'), from: rinfo.address });
    const header = Buffer.from([msg[0]!, msg[1]!, 0x81, 0x80, 0, 1, 0, qtype === 1 ? 1 : 0, 0, 0, 0, 0]);
    const question = msg.subarray(12, questionEnd);
    const answer = qtype === 1 ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7]) : Buffer.alloc(0);
    socket.send(Buffer.concat([header, question, answer]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(53, address, () => resolve());
  });
  return { queries, close: () => new Promise((resolve) => socket.close(() => resolve())) };
}

/** One A query from the host (the test's own side), for controls: the answer's address or null. */
async function queryFromHost(server: string, qname: string): Promise<string | null> {
  const socket = dgram.createSocket('udp4');
  const labels = qname.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  const query = Buffer.concat([Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
  try {
    return await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), 3_000);
      socket.on('message', (msg) => {
        clearTimeout(timer);
        resolve(msg.readUInt16BE(6) > 0 ? [...msg.subarray(msg.length - 4)].join('.') : null);
      });
      socket.send(query, 53, server);
    });
  } finally {
    socket.close();
  }
}

beforeAll(async () => {
  image = process.env.AIRLOCK_RUN_TEST_IMAGE || (await ensureAgentImage());
  baseEnv = { ...process.env };
  for (const key of Object.keys(baseEnv)) {
    if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$/i.test(key)) delete baseEnv[key];
  }
  pki = await createTestPki();
  allowed = await startHttpsUpstream({ pki, names: ['api.allowed.test'] });
  work = newDir('airlock-contain-');
  policyFile = join(work, 'policy.yaml');
  writeFileSync(policyFile, POLICY, { mode: 0o644 });
  engineCpus = Number(await dockerOk(['info', '--format', '{{.NCPU}}']));
}, 30 * 60_000);

afterAll(async () => {
  await allowed?.close();
  await runCli(['gc'], { env: baseEnv }).catch(() => {});
  rmTmp(pki?.dir, ...scratch);
}, 120_000);

describeDocker('airlock run: routed traffic and DNS do not rest on Docker alone', () => {
  let outside: { network: string; container: string; ip: string } | undefined;
  let control: { network: string; container: string; ip: string; gateway: string; bridge: string } | undefined;
  let cli: LiveCli;
  let c: SessionContainer;
  let bridge: string;

  beforeAll(async () => {
    // "Another network": a web server on an ordinary network of the test's. Its port is published
    // (on the host's loopback only), so the engine's own FORWARD rules accept traffic routed to it
    // from any other bridge: the open path Docker's isolation of an internal network stands in.
    const outNet = `airlock-test-fwd-out-${RUN_ID}`;
    const outCtr = `airlock-test-fwd-srv-${RUN_ID}`;
    await dockerOk(['network', 'create', '--label', LABEL, outNet]);
    outside = { network: outNet, container: outCtr, ip: '' };
    await dockerOk(['run', '-d', '--name', outCtr, '--label', LABEL, '--network', outNet, '-p', '127.0.0.1::8000', image, 'python3', '-m', 'http.server', '8000']);
    outside.ip = (await networkAddress(outCtr, outNet)).ip;

    // The control: a plain internal network (no Airlock), its container serving on 8001 and using
    // a DNS server the test runs on that network's gateway.
    const ctlNet = `airlock-test-fwd-ctl-${RUN_ID}`;
    const ctlCtr = `airlock-test-fwd-ctl-${RUN_ID}`;
    await dockerOk(['network', 'create', '--internal', '--label', LABEL, ctlNet]);
    const ctlGateway = await dockerOk(['network', 'inspect', '-f', '{{(index .IPAM.Config 0).Gateway}}', ctlNet]);
    control = { network: ctlNet, container: ctlCtr, ip: '', gateway: ctlGateway, bridge: await bridgeOf(ctlNet) };
    await dockerOk([
      'run', '-d', '--name', ctlCtr, '--label', LABEL, '--network', ctlNet, '--dns', ctlGateway, '--dns-opt', 'timeout:1', '--dns-opt', 'attempts:1',
      image, 'python3', '-m', 'http.server', '8001',
    ]);
    control.ip = (await networkAddress(ctlCtr, ctlNet)).ip;

    // The session: serves on 8001 too (for the inbound probe), then waits to be told to end.
    const workspace = newDir('airlock-contain-ws-');
    // Root's session runs as the image's user: it writes its ready file here.
    chmodSync(workspace, 0o777);
    const container = name('fwd');
    cli = spawnCli(
      runArgs(newDir('airlock-contain-state-'), ['--workspace', workspace, '--name', container], [
        'sh', '-c',
        'python3 -m http.server 8001 >/tmp/inbound.log 2>&1 & touch /workspace/ready; ' +
          'while [ ! -e /tmp/airlock-test-done ]; do sleep 0.2; done; exit "$(cat /tmp/airlock-test-done)"',
      ]),
      baseEnv,
    );
    c = await waitForSession(cli, container, join(workspace, 'ready'));
    bridge = await bridgeOf(`airlock-${c.sessionId}`);
    // Both servers answer before anything is probed.
    await waitFor(async () => (await docker(['exec', outCtr, 'curl', '-s', '-o', '/dev/null', 'http://127.0.0.1:8000/'])).code === 0, 20_000, 'the outside server');
    await waitFor(async () => (await docker(['exec', container, 'curl', '-s', '--noproxy', '*', '-o', '/dev/null', 'http://127.0.0.1:8001/'])).code === 0, 20_000, 'the session listener');
  }, 180_000);

  afterAll(async () => {
    if (cli && !cli.exited()) {
      await finishSession(c.name, 0).catch(() => {});
      await waitExit(cli, 30_000).catch(() => {});
    }
    for (const x of [outside, control]) {
      if (!x) continue;
      await docker(['rm', '-f', x.container]);
      await docker(['network', 'rm', x.network]);
    }
  }, 120_000);

  it('the session still reaches its proxy and the allowed upstream; Airlock lists its own FORWARD drops for the bridge', async () => {
    const r = await execScript(c.name, `curl -sS --max-time 15 -o /dev/null -w 'HTTP %{http_code}\\n' https://api.allowed.test/contain/user-side`);
    expect(r.stdout, r.stderr).toContain('HTTP 200');
    expect(allowed.requests.filter((q) => q.url === '/contain/user-side')).toHaveLength(1);

    const comment = `airlock\\.session=${c.sessionId}`;
    for (const chain of ['DOCKER-USER', 'FORWARD']) {
      const listing = (await iptables(['-S', chain])).stdout;
      for (const dir of ['-i', '-o']) {
        expect(listing, `${chain} ${dir} ${bridge}`).toMatch(new RegExp(`^-A ${chain} ${dir} ${bridge} -m comment --comment "?${comment}"? -j DROP$`, 'm'));
      }
    }
  }, 60_000);

  it("drops traffic routed from and to the session bridge, with Docker's isolation rules for it removed", async () => {
    // With Docker's rules in place, nothing gets through from the control network either.
    expect(await curlFrom(control!.container, `http://${outside!.ip}:8000/?from=control-isolated`)).toMatchObject({ http: '000' });

    const engineCtl = await removeEngineDrops(control!.bridge);
    const engineSession = await removeEngineDrops(bridge);
    try {
      // What was removed is Docker's isolation of each internal network (both directions).
      expect(engineCtl.removed.length, 'Docker isolation rules of the control network').toBeGreaterThanOrEqual(2);
      expect(engineSession.removed.length, "Docker isolation rules of the session's network").toBeGreaterThanOrEqual(2);

      // Control: without them (and without Airlock), routed traffic flows both ways.
      expect(await curlFrom(control!.container, `http://${outside!.ip}:8000/?from=control-open`)).toEqual({ rc: 0, http: '200' });
      expect(await curlFrom(outside!.container, `http://${control!.ip}:8001/?from=control-inbound`)).toEqual({ rc: 0, http: '200' });

      // The session: out to the other network, and in from it, nothing answers (dropped: timeout).
      const before = await airlockDrops(c.sessionId, bridge);
      const out = await execScript(c.name, `${PROBE_PRELUDE}\ndirect routed-out http://${outside!.ip}:8000/?from=session`, 30_000);
      const probe = parseProbes(out.stdout).get('routed-out');
      expect(probe, out.stderr).toBeDefined();
      expect({ rc: probe!.rc, http: probe!.http }, probe!.err).toEqual({ rc: 28, http: '000' });
      expect(await curlFrom(outside!.container, `http://${c.ip}:8001/?from=outside`)).toEqual({ rc: 28, http: '000' });
      // Airlock's rule is what dropped it.
      expect(await airlockDrops(c.sessionId, bridge)).toBeGreaterThan(before);
      const logs = await docker(['logs', outside!.container]);
      expect(logs.stdout + logs.stderr).not.toContain('from=session');
      expect((await execScript(c.name, 'cat /tmp/inbound.log')).stdout).not.toContain('from=outside');
    } finally {
      await engineSession.restore();
      await engineCtl.restore();
    }
    // Docker's rules are back.
    const listing = (await iptables(['-S'])).stdout;
    for (const line of [...engineSession.removed, ...engineCtl.removed]) expect(listing.split('\n')).toContain(line);
  }, 120_000);

  it("points the session's embedded DNS at its gateway, where Airlock's firewall drops it; a plain internal network forwards names", async () => {
    // Control: Docker's embedded DNS on an internal network forwards outside names to whatever
    // upstream it can reach (here the test's server on that network's gateway): "internal" alone
    // does not stop DNS, which can carry data out by itself.
    const ctlDns = await startDns(control!.gateway);
    const sessionDns = await startDns(c.gateway);
    try {
      const ctl = await docker(['exec', control!.container, 'getent', 'hosts', `ctl-${RUN_ID}.exfil.example`], { timeoutMs: 20_000 });
      expect(ctl.stdout).toContain('203.0.113.7');
      expect(ctlDns.queries.map((q) => q.name)).toContain(`ctl-${RUN_ID}.exfil.example`);

      const inspect = JSON.parse(await dockerOk(['inspect', '-f', '{{json .HostConfig.Dns}}', c.name])) as string[] | null;
      expect(inspect).toEqual([c.gateway]);
      // The test's server on the session gateway answers the host...
      expect(await queryFromHost(c.gateway, `host-${RUN_ID}.exfil.example`)).toBe('203.0.113.7');
      // ...but the session's lookups never reach it.
      const r = await execScript(c.name, `RES_OPTIONS='timeout:1 attempts:1' getent hosts session-${RUN_ID}.exfil.example; echo "rc=$?"`, 30_000);
      expect(r.stdout).toContain('rc=2');
      expect(r.stdout).not.toContain('203.0.113.7');
      expect(sessionDns.queries.filter((q) => q.name.startsWith('session-'))).toEqual([]);
    } finally {
      await ctlDns.close();
      await sessionDns.close();
    }
  }, 60_000);

  it('ends cleanly and leaves no rule of the session behind (FORWARD and DOCKER-USER included)', async () => {
    await finishSession(c.name, 0);
    const r = await waitExit(cli);
    expect(r.code, r.stderr).toBe(0);
    expect(await expectNoLeftovers(c.sessionId)).toEqual(NO_LEFTOVERS);
    const all = (await iptables(['-S'])).stdout + (await runProcess('ip6tables', ['-w', '-S'])).stdout;
    expect(all).not.toContain(bridge);
  }, 60_000);
});

describeDocker('airlock run: resource limits of the session container', () => {
  const FORK_LOOP = [
    'python3', '-c',
    [
      'import os',
      'n, err, kids = 0, "none", []',
      'for i in range(1500):',
      '    try:',
      '        pid = os.fork()',
      '    except OSError as e:',
      '        err = e.strerror',
      '        break',
      '    if pid == 0:',
      '        os.execv("/bin/sleep", ["sleep", "300"])',
      '    n += 1',
      '    kids.append(pid)',
      'print("FORKED", n, "ERR", err, flush=True)',
      'for pid in kids:',
      '    os.kill(pid, 9)',
      '    os.waitpid(pid, 0)',
    ].join('\n'),
  ];
  /** Allocates (and touches) 64 MiB at a time, up to `mib` MiB. */
  const allocLoop = (mib: number) => [
    'python3', '-c',
    [
      'chunks = []',
      `for i in range(${Math.ceil(mib / 64)}):`,
      '    chunks.append(b"\\x01" * (64 << 20))',
      '    print("ALLOC", (i + 1) * 64, flush=True)',
      'print("ALLOC DONE", flush=True)',
    ].join('\n'),
  ];

  async function hostConfig(container: string): Promise<{ PidsLimit: number | null; Memory: number; MemorySwap: number; NanoCpus: number }> {
    return JSON.parse(await dockerOk(['inspect', '-f', '{{json .HostConfig}}', container]));
  }

  it('a fork loop stops at the default pids limit (512), and the defaults are memory 4 GiB, no swap, 2 CPUs at most', async () => {
    const container = name('forks');
    try {
      const r = await runCli(runArgs(newDir('airlock-contain-state-'), ['--keep', '--name', container], FORK_LOOP), { env: baseEnv, timeoutMs: 120_000 });
      const m = /^FORKED (\d+) ERR (.*)$/m.exec(r.stdout);
      expect(m, r.stdout + r.stderr).not.toBeNull();
      expect(Number(m![1])).toBeLessThan(512);
      expect(m![2]).toBe('Resource temporarily unavailable');
      expect(r.code, r.stderr).toBe(0);
      const hc = await hostConfig(container);
      expect(hc).toMatchObject({ PidsLimit: 512, Memory: 4 * GiB, MemorySwap: 4 * GiB, NanoCpus: Math.min(2, engineCpus) * 1e9 });
      expect(await expectNoLeftovers(sessionSummary(r.stderr)!.id)).toMatchObject({ networks: [], rules: [] });
    } finally {
      await docker(['rm', '-f', container]);
    }
  }, 180_000);

  it('an allocation loop is killed at the default memory limit, and the session ends saying so and how to raise it', async () => {
    const r = await runCli(runArgs(newDir('airlock-contain-state-'), [], allocLoop(4608)), { env: baseEnv, timeoutMs: 240_000 });
    expect(r.stdout).not.toContain('ALLOC DONE');
    const reached = Math.max(0, ...[...r.stdout.matchAll(/^ALLOC (\d+)$/gm)].map((x) => Number(x[1])));
    expect(reached).toBeGreaterThan(3 * 1024);
    expect(reached).toBeLessThanOrEqual(4096);
    expect(r.code, r.stderr).toBe(137);
    expect(r.stderr).toMatch(/the session hit its memory limit of 4 GiB \(the default\)/);
    expect(r.stderr).toContain('--memory 8g');
    expect(r.stderr).toContain('container: { memory: 8g }');
    const summary = sessionSummary(r.stderr);
    expect(summary).not.toBeNull();
    expect(await expectNoLeftovers(summary!.id)).toEqual(NO_LEFTOVERS);
  }, 300_000);

  it('the policy sets the limits and flags override it; the out-of-memory message names where the limit came from', async () => {
    const policy = join(work, 'limited.yaml');
    writeFileSync(policy, `${POLICY}container:\n  pids: 64\n  memory: 200m\n  cpus: 1\n`, { mode: 0o644 });
    const container = name('limited');
    try {
      const r = await runCli(
        runArgs(newDir('airlock-contain-state-'), ['--keep', '--name', container, '--pids-limit', '100', '--cpus', '0.5'], ['sh', '-c', `${quote(FORK_LOOP)}; ${quote(allocLoop(1024))}`], policy),
        { env: baseEnv, timeoutMs: 120_000 },
      );
      const forked = /^FORKED (\d+) ERR (.*)$/m.exec(r.stdout);
      expect(forked, r.stdout + r.stderr).not.toBeNull();
      expect(Number(forked![1])).toBeLessThan(100);
      expect(Number(forked![1])).toBeGreaterThan(64);
      expect(r.stdout).not.toContain('ALLOC DONE');
      expect(r.code, r.stderr).toBe(137);
      expect(r.stderr).toContain(`the session hit its memory limit of 200 MiB (container.memory in ${policy})`);
      expect(r.stderr).toContain('--memory 400m');
      expect(await hostConfig(container)).toMatchObject({ PidsLimit: 100, Memory: 200 * MiB, MemorySwap: 200 * MiB, NanoCpus: 0.5e9 });
    } finally {
      await docker(['rm', '-f', container]);
    }
  }, 180_000);

  it('refuses more CPUs than the engine has, naming the flag, before starting anything', async () => {
    const stateDir = newDir('airlock-contain-state-');
    const r = await runCli(runArgs(stateDir, ['--cpus', String(engineCpus + 1)], ['true']), { env: baseEnv, timeoutMs: 60_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--cpus ${engineCpus + 1}: this Docker engine has ${engineCpus} CPU`);
    expect(existsSync(join(stateDir, 'sessions'))).toBe(false);
  }, 60_000);
});

describeDocker('airlock run: the start-up check when the engine adds no firewall rules', () => {
  /**
   * An `iptables` (and `nft`) first in PATH that shows the host's rules without any that name a
   * Docker bridge, as on an engine started with --iptables=false; writes go to the real iptables,
   * or fail as they do without the right to change the firewall (STUB_WRITES=fail).
   */
  function stubFirewall(): string {
    const dir = newDir('airlock-contain-stub-');
    const realIptables = execFileSync('sh', ['-c', 'command -v iptables'], { encoding: 'utf8' }).trim();
    writeFileSync(
      join(dir, 'iptables'),
      [
        '#!/bin/sh',
        // Listings lose the engine's lines naming a bridge (not Airlock's: it must find its own to remove them).
        'for a in "$@"; do case "$a" in -S|-L|--list|--list-rules)',
        '  out=$(' + realIptables + ' "$@") || exit $?',
        '  printf "%s\\n" "$out" | awk \'!/ br-/ || /airlock\\.session=/\'; exit 0;; esac; done',
        'if [ "$STUB_WRITES" = fail ]; then echo "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied" >&2; exit 4; fi',
        `exec ${realIptables} "$@"`,
      ].join('\n') + '\n',
      { mode: 0o755 },
    );
    writeFileSync(join(dir, 'nft'), '#!/bin/sh\necho "nft: not here" >&2\nexit 1\n', { mode: 0o755 });
    return dir;
  }

  it('refuses to run, saying what to do, when the engine manages no rules for the session network and Airlock cannot add its own', async () => {
    const stub = stubFirewall();
    const stateDir = newDir('airlock-contain-state-');
    const r = await runCli(runArgs(stateDir, [], ['true']), { env: { ...baseEnv, PATH: `${stub}:${baseEnv.PATH}`, STUB_WRITES: 'fail' }, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('the Docker engine manages no firewall rules for the session network');
    expect(r.stderr).toContain('Permission denied');
    expect(r.stderr).toMatch(/start dockerd with iptables enabled/);
    // The refusal came after the network and the proxy listener were set up: all undone.
    const ids = readdirSync(join(stateDir, 'sessions'));
    expect(ids).toHaveLength(1);
    expect(await expectNoLeftovers(ids[0]!)).toEqual(NO_LEFTOVERS);
  }, 60_000);

  it('runs on its own rules (and says so) when the engine manages none but Airlock can add its own', async () => {
    const stub = stubFirewall();
    const r = await runCli(runArgs(newDir('airlock-contain-state-'), [], ['curl', '-sS', '-o', '/dev/null', '-w', 'HTTP %{http_code}\\n', 'https://api.allowed.test/contain/own-rules']), {
      env: { ...baseEnv, PATH: `${stub}:${baseEnv.PATH}`, STUB_WRITES: 'pass' },
      timeoutMs: 60_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('HTTP 200');
    expect(r.stderr).toContain('the Docker engine manages no firewall rules for the session network');
    expect(r.stderr).toContain("Airlock's own rules");
    expect(await expectNoLeftovers(sessionSummary(r.stderr)!.id)).toEqual(NO_LEFTOVERS);
  }, 60_000);
});

/** A command line as one shell word list. */
function quote(argv: readonly string[]): string {
  return argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
}
