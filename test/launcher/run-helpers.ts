// Plumbing for the `airlock run` tests against the real Docker engine: long-running CLI
// processes, docker/iptables queries, in-container network probes and secret searches.
//
// Nothing here talks to addresses outside this machine: probes target the test's own servers,
// containers, networks and the host's own addresses.
import { expect } from 'vitest';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import type net from 'node:net';
import { CLI_PATH, createTestPki, echoHandler, REPO_ROOT, runProcess, sleep } from '../helpers/servers.js';
import type { ProcessResult, RecordedRequest, TestPki } from '../helpers/servers.js';
import { ensureAgentImage, ensureRelayImage } from '../helpers/docker.js';

// ---------------------------------------------------------------- processes

/**
 * This process's environment without what would steer a launcher elsewhere: Airlock's own
 * variables, proxy variables and DOCKER_HOST.
 */
export function launcherEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^AIRLOCK_|_PROXY$|^(http|https|all|no)_proxy$|^DOCKER_HOST$/i.test(name)) delete env[name];
  }
  return env;
}

/**
 * What a network-mode-none `airlock run` test starts from: the agent and relay images, the clean
 * launcher environment and a test upstream PKI whose CA (a certificate, no key) a launcher run as
 * another (docker-group) user can read. The caller removes `pki.dir`.
 */
export async function relayRunSetup(): Promise<{ image: string; relayImage: string; baseEnv: NodeJS.ProcessEnv; pki: TestPki }> {
  const image = process.env.AIRLOCK_RUN_TEST_IMAGE || (await ensureAgentImage());
  const relayImage = await ensureRelayImage();
  const pki = await createTestPki();
  chmodSync(pki.dir, 0o755);
  chmodSync(pki.caFile, 0o644);
  return { image, relayImage, baseEnv: launcherEnv(), pki };
}

/** A CLI process left running while the test works on its session. */
export interface LiveCli {
  readonly child: ChildProcessWithoutNullStreams;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Settles when the process exits (never rejects). */
  readonly done: Promise<ProcessResult>;
  readonly exited: () => boolean;
}

export function spawnCli(args: readonly string[], env: NodeJS.ProcessEnv, opts: { stdin?: string } = {}): LiveCli {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { cwd: REPO_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let exited = false;
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdin.on('error', () => {});
  child.stdin.end(opts.stdin ?? '');
  const done = new Promise<ProcessResult>((resolve) => {
    child.once('error', (err) => {
      exited = true;
      resolve({ code: null, signal: null, stdout, stderr: stderr + String(err) });
    });
    child.once('close', (code, signal) => {
      exited = true;
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr, done, exited: () => exited };
}

/** Waits for a live CLI to exit; SIGKILLs it (and fails) after `timeoutMs`. */
export async function waitExit(cli: LiveCli, timeoutMs = 60_000): Promise<ProcessResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      cli.child.kill('SIGKILL');
      reject(new Error(`CLI did not exit within ${timeoutMs} ms; stderr:\n${cli.stderr()}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([cli.done, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function docker(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<ProcessResult> {
  return runProcess('docker', args, { input: opts.input, timeoutMs: opts.timeoutMs ?? 60_000 });
}

/** docker ... that must succeed; returns trimmed stdout. */
export async function dockerOk(args: readonly string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await docker(args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

// ---------------------------------------------------------------- upstreams

export interface WideUpstream {
  readonly port: number;
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

/**
 * An HTTPS echo server on 0.0.0.0 (the shared helpers only listen on 127.0.0.1): reachable in
 * principle at every host address, so a probe that gets no answer there was stopped on its way.
 */
export async function startWideHttpsUpstream(pki: TestPki, names: string[]): Promise<WideUpstream> {
  const { key, cert } = await pki.issue(names);
  const requests: RecordedRequest[] = [];
  const server = https.createServer({ key, cert, ALPNProtocols: ['http/1.1'] }, (req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    echoHandler(req, res);
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen({ host: '0.0.0.0', port: 0 }, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- sessions

export interface SessionContainer {
  readonly name: string;
  readonly id: string;
  readonly sessionId: string;
  readonly launcherPid: string;
  readonly gateway: string;
  readonly ip: string;
}

/**
 * Waits until the container `name` of a live `airlock run` runs and (if given) `ready` exists
 * on the host. Fails early, with the CLI's stderr, if the CLI exits first.
 */
export async function waitForSession(cli: LiveCli, name: string, ready?: string, timeoutMs = 90_000): Promise<SessionContainer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cli.exited()) {
      const r = await cli.done;
      throw new Error(`airlock run exited (${r.code}) before its container ${name} was up:\n${r.stderr}\n${r.stdout}`);
    }
    const r = await docker(['inspect', '--type', 'container', name]);
    if (r.code === 0) {
      const info = JSON.parse(r.stdout)[0] as ContainerInspect;
      if (info.State.Running && (!ready || existsSync(ready))) {
        // A relayed session (network mode none) has no network of its own, so no addresses.
        const net = Object.values(info.NetworkSettings.Networks ?? {})[0];
        return {
          name,
          id: info.Id,
          sessionId: info.Config.Labels['airlock.session']!,
          launcherPid: info.Config.Labels['airlock.pid']!,
          gateway: net?.Gateway ?? '',
          ip: net?.IPAddress ?? '',
        };
      }
    }
    if (Date.now() > deadline) throw new Error(`container ${name} not up within ${timeoutMs} ms; airlock stderr:\n${cli.stderr()}`);
    await sleep(200);
  }
}

export interface ContainerInspect {
  Id: string;
  State: { Running: boolean; Status: string };
  Config: { Labels: Record<string, string>; Env: string[]; User: string };
  HostConfig: { CapDrop: string[] | null; SecurityOpt: string[] | null; Binds: string[] | null; NetworkMode: string };
  NetworkSettings: { Networks: Record<string, { Gateway: string; IPAddress: string }> };
  GraphDriver?: { Name?: string; Data?: Record<string, string> | null };
}

export async function inspectContainer(name: string): Promise<{ raw: string; info: ContainerInspect }> {
  const raw = await dockerOk(['inspect', '--type', 'container', name]);
  return { raw, info: (JSON.parse(raw) as ContainerInspect[])[0]! };
}

/** Runs a bash script inside the container (as its configured user, with its environment). */
export async function execScript(container: string, script: string, timeoutMs = 60_000): Promise<ProcessResult> {
  return docker(['exec', '-i', container, 'bash', '-s'], { input: script, timeoutMs });
}

/** The session's `airlock run` ends when the command sees this file (see `sessionCommand`). */
export const DONE_FILE = '/tmp/airlock-test-done';

/** A container command that marks itself ready in /workspace and waits until told to exit. */
export function sessionCommand(readyFile = '/workspace/ready'): string[] {
  return [
    'sh',
    '-c',
    // The environment goes to a file too: the filesystem search must find it (a canary).
    `env > /tmp/session-env; printenv HTTPS_PROXY > /workspace/proxy-url; echo session-up; touch ${readyFile}; ` +
      `while [ ! -e ${DONE_FILE} ]; do sleep 0.2; done; echo session-done; exit "$(cat ${DONE_FILE})"`,
  ];
}

/** Tells a `sessionCommand` container to exit with `code`. */
export async function finishSession(container: string, code = 0): Promise<void> {
  await dockerOk(['exec', container, 'sh', '-c', `echo ${code} > ${DONE_FILE}`]);
}

/** Parses `airlock: session s-...: ...; audit: FILE` from the CLI's stderr. */
export function sessionSummary(stderr: string): { id: string; audit: string } | null {
  const m = /^airlock: session (s-[0-9a-f]+): .*; audit: (.*)$/m.exec(stderr);
  return m ? { id: m[1]!, audit: m[2]!.trim() } : null;
}

// ---------------------------------------------------------------- leftovers

export interface Leftovers {
  readonly containers: string[];
  readonly networks: string[];
  /** iptables/ip6tables lines naming the session (chain or comment). */
  readonly rules: string[];
}

export async function leftovers(sessionId: string): Promise<Leftovers> {
  const label = `label=airlock.session=${sessionId}`;
  const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean);
  const containers = lines(await dockerOk(['ps', '-a', '-q', '--filter', label]));
  const networks = lines(await dockerOk(['network', 'ls', '-q', '--filter', label]));
  const rules: string[] = [];
  for (const cmd of ['iptables', 'ip6tables']) {
    const r = await runProcess(cmd, ['-w', '-S'], { timeoutMs: 15_000 });
    for (const line of lines(r.stdout)) {
      if (line.includes(`AIRLOCK-${sessionId}`) || line.includes(`airlock.session=${sessionId}`)) rules.push(`${cmd}: ${line}`);
    }
  }
  return { containers, networks, rules };
}

export const NO_LEFTOVERS: Leftovers = { containers: [], networks: [], rules: [] };

/** Polls until the session left nothing behind (cleanup is done by the time the CLI exits, but be lenient for gc). */
export async function expectNoLeftovers(sessionId: string, timeoutMs = 10_000): Promise<Leftovers> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await leftovers(sessionId);
    if (found.containers.length + found.networks.length + found.rules.length === 0 || Date.now() > deadline) return found;
    await sleep(250);
  }
}

// ---------------------------------------------------------------- probes

export interface ProbeResult {
  readonly name: string;
  /** curl's exit code. */
  readonly rc: number;
  /** HTTP status of the final response ("000" when none). */
  readonly http: string;
  /** Status the proxy gave the CONNECT ("000" when none). */
  readonly connect: string;
  readonly err: string;
}

/**
 * A bash prelude for probe scripts: `probe NAME CURL-ARGS...` (through the session's proxy
 * variables) and `direct NAME CURL-ARGS...` (with every proxy variable unset). Each prints one
 * `PROBE` line. Run them in the background (`&`) and `wait` to keep the timeouts parallel.
 */
export const PROBE_PRELUDE = `
probe() {
  local name=$1; shift
  local out rc
  out=$(curl -sS -o /dev/null -w '%{http_code} %{http_connect}' --connect-timeout 3 --max-time 6 "$@" 2>/tmp/probe-$name.err); rc=$?
  echo "PROBE $name rc=$rc http=\${out% *} connect=\${out#* } err=$(head -c 300 /tmp/probe-$name.err | tr '\\n' ' ')"
}
direct() {
  ( unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy ALL_PROXY all_proxy; probe "$@" )
}
`;

/**
 * The escape probe of a no-network session (a script for its `sh -c`): its interfaces, a request
 * through the proxy to `allowedUrl` and to a host the policy denies, and every IPv4 address of
 * this host at `hostPort` directly. `expectContained` checks its output.
 */
export function escapeProbe(allowedUrl: string, hostPort: number): { script: string; expectContained(stdout: string): void } {
  const addrs = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) if (i.family === 'IPv4') addrs.add(i.address);
  const script = [
    PROBE_PRELUDE,
    'echo "IFACES $(ls /sys/class/net | tr \'\\n\' \' \')"',
    `probe allowed ${allowedUrl}`,
    'probe denied https://evil.example/',
    ...[...addrs].map((ip, i) => `direct host${i} http://${ip}:${hostPort}/`),
  ].join('\n');
  return {
    script,
    expectContained(stdout) {
      expect(/^IFACES (.*)$/m.exec(stdout)?.[1]?.trim()).toBe('lo');
      const probes = parseProbes(stdout);
      expect(probes.get('allowed')?.http, stdout).toBe('200');
      expect(refusedByPolicy(probes.get('denied')), JSON.stringify(probes.get('denied'))).toBe(true);
      for (let i = 0; i < addrs.size; i++) {
        expect(probes.get(`host${i}`)?.http).toBe('000');
        expect([6, 7, 28]).toContain(probes.get(`host${i}`)?.rc);
      }
    },
  };
}

/**
 * Whether the proxy refused a probe by policy: a bare 403 to its CONNECT, or (for a host the
 * session's notice CA may speak for) a CONNECT completed and its request answered 403 inside.
 */
export function refusedByPolicy(probe: ProbeResult | undefined): boolean {
  return probe !== undefined && (probe.connect === '403' || (probe.connect === '200' && probe.http === '403'));
}

export function parseProbes(stdout: string): Map<string, ProbeResult> {
  const out = new Map<string, ProbeResult>();
  for (const m of stdout.matchAll(/^PROBE (\S+) rc=(\d+) http=(\d*) connect=(\d*) err=(.*)$/gm)) {
    out.set(m[1]!, { name: m[1]!, rc: Number(m[2]), http: m[3] || '000', connect: m[4] || '000', err: m[5]!.trim() });
  }
  return out;
}

// ---------------------------------------------------------------- secrets

/** Names of the secrets found in `text` (never the values, so failures do not print them). */
export function secretsIn(text: string, secrets: Readonly<Record<string, string>>): string[] {
  return Object.entries(secrets)
    .filter(([, value]) => text.includes(value))
    .map(([name]) => name);
}

/** Every regular file under `dir` (recursively), as [path, content]. */
export function filesUnder(dir: string): Array<[string, Buffer]> {
  const out: Array<[string, Buffer]> = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d)) {
      const p = join(d, entry);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out.push([p, readFileSync(p)]);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** "path: SECRET_NAME" for every file under `dir` holding one of the secrets. */
export function secretsInTree(dir: string, secrets: Readonly<Record<string, string>>): string[] {
  const hits: string[] = [];
  for (const [path, content] of filesUnder(dir)) {
    for (const name of secretsIn(content.toString('latin1'), secrets)) hits.push(`${path}: ${name}`);
  }
  return hits;
}

/**
 * Searches a container's own filesystem (what it wrote, plus what was copied in) for the secrets:
 * the overlay upper dir when the engine uses overlay2 (fast), else the whole `docker export`.
 * `canary` must be found (proves the search sees the container's files).
 */
export async function secretsInContainerFs(
  info: ContainerInspect,
  secrets: Readonly<Record<string, string>>,
  canary: string,
): Promise<{ method: string; hits: string[]; canaryFound: boolean }> {
  const upper = info.GraphDriver?.Data?.UpperDir;
  if (upper && existsSync(upper)) {
    const hits = secretsInTree(upper, secrets);
    const canaryFound = filesUnder(upper).some(([, c]) => c.includes(canary));
    return { method: `overlay upper dir ${upper}`, hits, canaryFound };
  }
  // Any other storage driver: stream the whole filesystem through a matcher.
  const needles = [...Object.entries(secrets), ['canary', canary] as [string, string]];
  const found = new Set<string>();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('docker', ['export', info.Id], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = Math.max(...needles.map(([, v]) => v.length));
    let tail = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const text = tail + chunk.toString('latin1');
      for (const [name, value] of needles) if (text.includes(value)) found.add(name);
      tail = text.slice(-keep);
    });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`docker export exited ${code}`))));
  });
  return {
    method: 'docker export',
    hits: [...found].filter((n) => n !== 'canary'),
    canaryFound: found.has('canary'),
  };
}

/** Listening TCP sockets: "addr:port" → owning pids (from `ss -ltnpH`). */
export async function listeners(): Promise<Map<string, number[]>> {
  const r = await runProcess('ss', ['-ltnpH'], { timeoutMs: 10_000 });
  const out = new Map<string, number[]>();
  for (const line of r.stdout.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5) continue;
    const local = cols[3]!;
    const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    out.set(local, [...(out.get(local) ?? []), ...pids]);
  }
  return out;
}

/** A file system entry as copy-out tests compare it before and after. */
export interface FsNode {
  type: string;
  uid: number;
  gid: number;
  mode: string;
  nlink: number;
  content?: string;
  link?: string;
}

/** Everything under `dir` (itself included) except the `skip` subtree: type, owner, mode, links, contents. */
export function snapshot(dir: string, skip: string): Record<string, FsNode> {
  const nodes: Record<string, FsNode> = {};
  const walk = (path: string, rel: string) => {
    if (path === skip) return;
    const st = lstatSync(path);
    const node: FsNode = {
      type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other',
      uid: st.uid,
      gid: st.gid,
      mode: (st.mode & 0o7777).toString(8),
      nlink: st.isDirectory() ? 0 : st.nlink,
    };
    if (st.isFile()) node.content = readFileSync(path, 'utf8');
    if (st.isSymbolicLink()) node.link = readlinkSync(path);
    nodes[rel] = node;
    if (st.isDirectory()) for (const name of readdirSync(path).sort()) walk(join(path, name), rel === '.' ? name : `${rel}/${name}`);
  };
  walk(dir, '.');
  return nodes;
}
