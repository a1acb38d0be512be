// `airlock session create --docker`: the daemon makes a session's network, gateway listener and
// firewall, and containers started by another launcher (plain `docker run`, Debian's
// docker-compose 1.29) with what it prints go out only through the proxy. "api.github.com" and
// "evil.example" are HTTPS servers of this test on the host (the daemon dials them via
// --resolve); every direct probe targets this host's own addresses.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { describeNeeding, ensureAgentImage } from '../helpers/docker.js';
import { createTestPki, freePort, rmTmp, runCli, runProcess, startHttpsUpstream, tmpDir, waitFor } from '../helpers/servers.js';
import type { ProcessResult, TestPki, TestUpstream } from '../helpers/servers.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import {
  docker,
  dockerOk,
  expectNoLeftovers,
  leftovers,
  listeners,
  NO_LEFTOVERS,
  parseProbes,
  PROBE_PRELUDE,
  spawnCli,
  startWideHttpsUpstream,
  waitExit,
} from './run-helpers.js';
import type { LiveCli, ProbeResult, WideUpstream } from './run-helpers.js';

const REAL = `ghp_realBYO${randomBytes(16).toString('hex')}`;
const RUN_ID = randomBytes(3).toString('hex');

const POLICY = `
version: 1
name: byo
allow:
  - host: api.github.com
credentials:
  - preset: github
    secret: { env: AIRLOCK_GITHUB_TOKEN }
`;

/** What `session create --docker --json` prints (the fields the tests use). */
interface Created {
  id: string;
  proxy_url: string;
  docker_network: string;
  gateway: string;
  env_file: string;
  ca_file: string;
  compose_file: string;
  docker_run: string[];
  compose: string;
}

function composeMissing(): string | null {
  try {
    execFileSync('docker-compose', ['version'], { stdio: 'pipe', timeout: 30_000 });
    return null;
  } catch {
    return 'docker-compose is not installed (apt-get install docker-compose)';
  }
}

let image: string;
let pki: TestPki;
let github: WideUpstream;
let evil: TestUpstream;
let work: string;
let stateDir: string;
let daemonPort: number;
let daemon: LiveCli;
let baseEnv: NodeJS.ProcessEnv;
/** Everything airlock printed or wrote for the tests, searched for the real secret at the end. */
const outputs: Array<[string, string]> = [];
const made: string[] = [];
/** Names of the containers the tests start, removed at the end whatever happened. */
const named: string[] = [];

function containerName(tag: string): string {
  const name = `airlock-byo-${tag}-${RUN_ID}`;
  named.push(name);
  return name;
}

async function cli(args: readonly string[]): Promise<ProcessResult> {
  const r = await runCli(args, { env: baseEnv, timeoutMs: 60_000 });
  outputs.push([`airlock ${args.join(' ')}`, r.stdout + r.stderr]);
  return r;
}

async function create(): Promise<Created> {
  const r = await cli(['session', 'create', '--docker', '--json', '--image', image, '--state-dir', stateDir]);
  expect(r.code, r.stderr).toBe(0);
  const created = JSON.parse(r.stdout) as Created;
  made.push(created.id);
  for (const file of [created.env_file, created.ca_file, created.compose_file]) outputs.push([file, readFileSync(file, 'utf8')]);
  return created;
}

/** The printed `docker run` line with `extra` flags before the image, and a command after it. */
function dockerRunArgs(s: Created, extra: readonly string[], command: readonly string[]): string[] {
  const args = s.docker_run.slice(1);
  const at = args.lastIndexOf(image);
  return [...args.slice(0, at), ...extra, image, ...command];
}

function hostIps(): string[] {
  const ips = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) if (i.family === 'IPv4' && !i.internal) ips.add(i.address);
  return [...ips];
}

/**
 * The session's checks from inside a container: a request through the proxy with the placeholder
 * (200, real token swapped in upstream), a denied host (403), and, with the proxy variables unset,
 * every host address at the upstream's and the daemon's ports, the other session's listener, the
 * session's own gateway at the upstream port, and outside names by DNS: none may answer.
 */
function escapeScript(tag: string, other: URL): { script: string; targets: string[] } {
  // Taken once: other tests' networks come and go meanwhile, and with them host addresses.
  const targets = hostIps();
  const script = [
    PROBE_PRELUDE,
    'echo "IFACES $(ls /sys/class/net | tr \'\\n\' \' \')"',
    `echo "ADMIN $(ls -d ${stateDir}/admin.sock 2>/dev/null | wc -l)"`,
    `probe allowed -H "Authorization: Bearer $GH_TOKEN" https://api.github.com/byo/${tag} &`,
    'probe denied https://evil.example/ &',
    `direct gateway-upstream -k https://$(echo "$HTTPS_PROXY" | sed 's/.*@//; s/:.*//'):${github.port}/direct/gateway &`,
    `direct other-session http://${other.host}/ &`,
    `direct other-session-https -k https://${other.host}/ &`,
    ...targets.map((ip, i) => `direct host-${i} -k https://${ip}:${github.port}/direct/host-${i} &`),
    ...targets.map((ip, i) => `direct daemon-${i} http://${ip}:${daemonPort}/ &`),
    `out=$(getent hosts example.com); echo "GETENT example.com rc=$? out=$out" &`,
    `out=$(getent hosts api.github.com); echo "GETENT api.github.com rc=$? out=$out" &`,
    'wait',
  ].join('\n');
  return { script, targets };
}

function expectNoAnswer(p: ProbeResult | undefined, what: string): void {
  expect(p, `probe ${what} did not report`).toBeDefined();
  expect({ what, http: p!.http, connect: p!.connect }).toEqual({ what, http: '000', connect: '000' });
  // 6: could not resolve, 7: could not connect, 28: timed out (dropped).
  expect([6, 7, 28], `${what}: ${p!.err}`).toContain(p!.rc);
}

function expectContained(stdout: string, tag: string, targets: readonly string[]): void {
  expect(/^IFACES (.*)$/m.exec(stdout)?.[1]?.trim().split(' ').sort(), stdout).toEqual(['eth0', 'lo']);
  const probes = parseProbes(stdout);
  expect(probes.get('allowed')?.http, stdout).toBe('200');
  expect(github.requests.filter((q) => q.url === `/byo/${tag}`).map((q) => q.headers.authorization)).toEqual([`Bearer ${REAL}`]);
  // A denied HTTPS host is answered by the proxy inside TLS (the notice CA): 403, never forwarded.
  expect(probes.get('denied')?.http, stdout).toBe('403');
  expect(evil.requests).toEqual([]);
  for (const name of ['gateway-upstream', 'other-session', 'other-session-https']) expectNoAnswer(probes.get(name), name);
  targets.forEach((ip, i) => {
    expectNoAnswer(probes.get(`host-${i}`), `host address ${ip}:${github.port}`);
    expectNoAnswer(probes.get(`daemon-${i}`), `host address ${ip}:${daemonPort} (the daemon's port)`);
  });
  for (const name of ['example.com', 'api.github.com']) {
    const m = new RegExp(`^GETENT ${name.replace(/\./g, '\\.')} rc=(\\d+) out=(.*)$`, 'm').exec(stdout);
    expect(m, `getent ${name}`).not.toBeNull();
    expect({ name, resolved: m![1] === '0', out: m![2]!.trim() }).toEqual({ name, resolved: false, out: '' });
  }
  expect(github.requests.filter((q) => q.url.startsWith('/direct/'))).toEqual([]);
}

let policyFile: string;

async function startDaemon(): Promise<void> {
  daemonPort = await freePort();
  daemon = spawnCli(
    [
      'proxy', '--policy', policyFile, '--listen', `127.0.0.1:${daemonPort}`, '--state-dir', stateDir,
      '--resolve', `api.github.com:443:127.0.0.1:${github.port}`, '--resolve', `evil.example:443:127.0.0.1:${evil.port}`, '--upstream-ca', pki.caFile,
    ],
    { ...baseEnv, AIRLOCK_GITHUB_TOKEN: REAL },
  );
  await waitFor(() => existsSync(join(stateDir, 'admin.sock')) || daemon.exited(), 30_000, 'the daemon admin socket');
  expect(daemon.exited(), daemon.stderr()).toBe(false);
}

async function sessionListed(id: string): Promise<boolean> {
  const r = await cli(['session', 'ls', '--state-dir', stateDir]);
  return r.stdout.includes(id);
}

beforeAll(async () => {
  image = await ensureAgentImage();
  baseEnv = { ...process.env };
  for (const name of Object.keys(baseEnv)) if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$/i.test(name)) delete baseEnv[name];
  pki = await createTestPki();
  github = await startWideHttpsUpstream(pki, ['api.github.com']);
  evil = await startHttpsUpstream({ pki, names: ['evil.example'] });
  work = tmpDir('airlock-byo-');
  stateDir = join(work, 'state');
  policyFile = join(work, 'policy.yaml');
  writeFileSync(policyFile, POLICY);
  await startDaemon();
}, 600_000);

afterAll(async () => {
  if (daemon && !daemon.exited()) {
    daemon.child.kill('SIGTERM');
    await waitExit(daemon, 15_000).catch(() => {});
  }
  // Only what these tests made: their containers, each session's network and chain.
  for (const name of named) await docker(['rm', '-f', name]).catch(() => {});
  for (const id of made) {
    await docker(['network', 'rm', '-f', `airlock-${id}`]).catch(() => {});
    await runProcess('iptables', ['-w', '-X', `AIRLOCK-${id}`]).catch(() => {});
  }
  await Promise.all([github?.close(), evil?.close()]);
  rmTmp(work, pki?.dir);
}, 120_000);

describeNeeding('airlock session create --docker: containers of other launchers', composeMissing(), () => {
  it('plain docker run: through the proxy only, no escape, and the session ends with its last container', async () => {
    const [a, b] = [await create(), await create()];
    expect(a.docker_network).toBe(`airlock-${a.id}`);
    expect((await cli(['session', 'ls', '--state-dir', stateDir])).stdout).toContain(`${a.id}  policy=byo`);
    expect((await cli(['session', 'ls', '--state-dir', stateDir])).stdout).toContain(`network=${a.docker_network}`);
    // The daemon owns both gateway listeners; the admin endpoint is a unix socket, never on a network.
    const open = await listeners();
    for (const s of [a, b]) expect(open.get(`${s.gateway}:${new URL(s.proxy_url).port}`), s.id).toEqual([daemon.child.pid]);
    expect([...open.entries()].filter(([, pids]) => pids.includes(daemon.child.pid!)).map(([addr]) => addr).sort()).toEqual(
      [`127.0.0.1:${daemonPort}`, ...[a, b].map((s) => `${s.gateway}:${new URL(s.proxy_url).port}`)].sort(),
    );
    expect(statSync(join(stateDir, 'admin.sock')).mode & 0o777).toBe(0o600);
    const leftA = await leftovers(a.id);
    expect(leftA.networks).toHaveLength(1);
    expect(leftA.rules.length).toBeGreaterThan(0);

    const started = Date.now();
    const probe = escapeScript('run', new URL(b.proxy_url));
    const r = await docker(dockerRunArgs(a, ['--name', containerName('run')], ['bash', '-c', probe.script]), { timeoutMs: 120_000 });
    outputs.push(['docker run', r.stdout + r.stderr]);
    expect(r.code, r.stderr).toBe(0);
    expectContained(r.stdout, 'run', probe.targets);
    expect(r.stdout).toContain('ADMIN 0');
    expect(Date.now() - started).toBeLessThan(90_000);

    // Its only container has exited (--rm): the session, its network and its chain go.
    await waitFor(async () => !(await sessionListed(a.id)), 20_000, `session ${a.id} removed after its last container`);
    expect(await expectNoLeftovers(a.id)).toEqual(NO_LEFTOVERS);
    // B had no container yet and stays, until removed.
    expect(await sessionListed(b.id)).toBe(true);
    expect((await cli(['session', 'rm', b.id, '--state-dir', stateDir])).code).toBe(0);
    expect(await expectNoLeftovers(b.id)).toEqual(NO_LEFTOVERS);
  }, 300_000);

  it("docker-compose 1.29 with the printed snippet: the same checks hold", async () => {
    const [c, other] = [await create(), await create()];
    const project = `airlockbyo${RUN_ID}`;
    const probe = escapeScript('compose', new URL(other.proxy_url));
    const r = await runProcess('docker-compose', ['-f', c.compose_file, '-p', project, 'run', '--rm', '--name', `${project}-probe`, 'agent', 'bash', '-c', probe.script], {
      env: baseEnv,
      timeoutMs: 180_000,
    });
    outputs.push(['docker-compose run', r.stdout + r.stderr]);
    expect(r.code, r.stderr).toBe(0);
    expectContained(r.stdout, 'compose', probe.targets);
    await waitFor(async () => !(await sessionListed(c.id)), 20_000, `session ${c.id} removed after its last container`);
    expect(await expectNoLeftovers(c.id)).toEqual(NO_LEFTOVERS);
    // Compose made no network of its own: the service is only on the session's.
    expect(await dockerOk(['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`])).toBe('');
    expect((await cli(['session', 'rm', other.id, '--state-dir', stateDir])).code).toBe(0);
  }, 300_000);

  it('session rm stops what runs on the network and leaves nothing; a new container is refused', async () => {
    const s = await create();
    const name = containerName('rm');
    await dockerOk(dockerRunArgs(s, ['-d', '--name', name], ['sleep', 'infinity']));
    await waitFor(async () => (await docker(['inspect', '-f', '{{.State.Running}}', name])).stdout.trim() === 'true', 20_000, 'container up');
    // Alive while its container runs (the watcher sees it and keeps the session).
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(await sessionListed(s.id)).toBe(true);

    const rm = await cli(['session', 'rm', s.id, '--state-dir', stateDir]);
    expect(rm.code, rm.stderr).toBe(0);
    expect((await docker(['inspect', name])).code, 'the container (--rm) is stopped and gone').not.toBe(0);
    expect(await expectNoLeftovers(s.id)).toEqual(NO_LEFTOVERS);
    const again = await docker(dockerRunArgs(s, [], ['true']));
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/network .*not found/i);
  }, 120_000);

  it('a container that exits at once (between two looks at the network) still ends the session', async () => {
    const s = await create();
    const r = await docker(dockerRunArgs(s, [], ['true']));
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => !(await sessionListed(s.id)), 15_000, `session ${s.id} removed after its only container`);
    expect(await expectNoLeftovers(s.id)).toEqual(NO_LEFTOVERS);
  }, 60_000);

  it('a daemon stopped with SIGTERM removes its Docker sessions: network, chain, containers', async () => {
    const s = await create();
    const name = containerName('term');
    await dockerOk(dockerRunArgs(s, ['-d', '--name', name], ['sleep', 'infinity']));
    daemon.child.kill('SIGTERM');
    const d = await waitExit(daemon, 30_000);
    outputs.push(['daemon (SIGTERM) stderr', d.stderr]);
    expect(await expectNoLeftovers(s.id)).toEqual(NO_LEFTOVERS);
    expect((await docker(['inspect', name])).code, 'the container (--rm) is stopped and gone').not.toBe(0);
    rmSync(join(stateDir, 'admin.sock'), { force: true });
    await startDaemon();
  }, 120_000);

  it('the env, CA and compose files and everything printed hold no real secret', () => {
    expect(outputs.length).toBeGreaterThan(5);
    for (const [what, text] of [...outputs, ['daemon stderr', daemon.stderr()] as [string, string]]) {
      expect(secretLeaks(text, REAL), what).toEqual([]);
    }
    // Control: the search finds the secret where it is.
    expect(secretLeaks(`x ${REAL} y`, REAL).length).toBeGreaterThan(0);
  });

  it('airlock gc after the daemon crashed: the network (with its container) and the chain go', async () => {
    const s = await create();
    const name = containerName('gc');
    await dockerOk(dockerRunArgs(s, ['-d', '--name', name], ['sleep', 'infinity']));
    daemon.child.kill('SIGKILL');
    await waitExit(daemon, 15_000);
    expect((await leftovers(s.id)).networks).toHaveLength(1);
    const gc = await cli(['gc', '--state-dir', stateDir]);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stderr).toContain('1 network(s)');
    expect(await expectNoLeftovers(s.id)).toEqual(NO_LEFTOVERS);
    expect((await docker(['inspect', name])).code, 'the container (--rm) is stopped and gone').not.toBe(0);
  }, 120_000);
});
