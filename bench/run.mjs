#!/usr/bin/env node
// The Airlock benchmark: `npm run bench` (full, two rounds) or `npm run bench -- --quick`.
// Three kinds of process: the HTTPS upstream (bench/upstream.mjs), the proxy under test, and the
// load generator (bench/loadgen.mjs, one process per measurement). This script only starts them,
// samples the proxy's RSS and CPU from /proc, and writes the results. See bench/README.md.
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { summariseProfile, formatProfile } from './profile.mjs';
import { perfUnavailable, startPerf, readPerf, perUnit, PERF_HZ } from './perf.mjs';
import { prepareGitRepo, prepareRegistry, startRegistry, freePort, repoPackBytes } from './workloads.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = join(BENCH, '..');
const RESULTS = join(BENCH, 'results');
const ALL_TARGETS = ['direct', 'airlock', 'squid', 'mitmproxy', 'http-mitm-proxy'];
// Diagnostic only (not in the default set): Airlock with the same policy minus the credential.
// bare-node: a minimal Node interception path (no policy, audit or credentials), the floor on this machine.
// airlock-view: Airlock with its live view serving a page that follows the session's events.
// airlock-base: Airlock from another built checkout (--base DIR), for interleaved before/after runs.
const EXTRA_TARGETS = ['airlock-nocreds', 'airlock-view', 'airlock-base', 'squid-log', 'bare-node', 'raw-relay'];

// ---- options

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const value = (name, dflt) => {
  const hit = argv.find((a) => a.startsWith(`--${name}=`));
  if (hit) return hit.slice(name.length + 3);
  const i = argv.indexOf(`--${name}`);
  return i !== -1 && argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[i + 1] : dflt;
};
if (flag('help') || flag('h')) {
  process.stdout.write(`usage: npm run bench -- [options]
  --quick              ~1-2 minute run: one round, short durations, 20 new hosts, 250 idle
                       tunnels (instead of 200 and 1,000)
  --rounds N           rounds per target (default 2; --quick: 1)
  --targets a,b,...    of ${ALL_TARGETS.join(', ')} (direct is always run); also
                       airlock-nocreds: Airlock without the credential (diagnostic)
                       airlock-view: Airlock with the live view open and following (diagnostic)
                       airlock-base: Airlock from the built checkout given by --base DIR (say
                       a worktree of main), so that rounds alternate before and after
                       bare-node: a minimal Node interception path (diagnostic floor)
                       raw-relay: TLS terminated and re-originated, no HTTP parsed (the ceiling)
  --scenarios a,b,...  only these of npm, git, llm, c1, c64, c1u, c64u, c1curl, c64curl, c1py,
                       c64py, newconn, download, upload, newhosts, sse, idle, exec
                       npm: npm ci of bench/npm-tree from Verdaccio; git: git clone of a 112 MB
                       repository from git http-backend (both set up once into
                       ~/.cache/airlock-bench; the registry filled from the npm registry);
                       llm: 2,000-event chat-completion SSE stream; c1u/c64u: undici ProxyAgent;
                       c1curl/c64curl: curl; c1py/c64py: Python requests; exec: airlock exec
                       start-up (Airlock only)
  --exec-only          only the airlock exec start-up pass
  --profile            after the comparison, profile Airlock (--cpu-prof) on the keep-alive c=64
                       scenario; writes bench/results/*.cpuprofile and prints top self-time
  --profile-only       only the profile pass
  --profile-scenario S keepalive (default: c=64 keep-alive), newhosts (the new-host scenario),
                       download, upload, sse, npm or git (the workloads)
  --perf               after the comparison, sample the keep-alive c=64 scenario with Linux perf
                       (on-CPU, kernel and OpenSSL included) for direct and each of
                       --perf-targets (default airlock,raw-relay,squid): CPU microseconds per
                       request by component; writes bench/results/perf-latest.md (needs root or
                       perf_event_paranoid <= 1, and Debian's linux-perf)
  --perf-only          only the perf pass
  --perf-client C      raw (default) or undici: the keep-alive perf pass driven by undici's
                       ProxyAgent; writes perf-undici-latest.md
  --perf-scenario S    keepalive (default), or download / upload of 1 GiB (256 MiB with
                       --quick): CPU per MiB; writes perf-<scenario>-latest.md
  --seconds N          override the keep-alive c=64 and new-connection durations (totals,
                       split over the pairs)
  --pairs N            slices per compared scenario, proxy and round (default: c1 4, c64 5,
                       newconn 4, download 3, upload 3, sse 3; --quick: 2, 2, 2, 1, 1, 1).
                       Direct and the proxy alternate, and ratios are taken pair by pair
  --render FILE.json   rewrite the markdown next to a saved JSON result (no measurement)
  --out NAME           results file stem (default: latest, or latest-quick with --quick)
  --quiet-wait S       before each target, wait up to S seconds for the machine to be quiet
                       (other processes using < 25% of the CPUs); default 120, --quick 0
`);
  process.exit(0);
}
const quick = flag('quick');
// --base DIR: a built checkout (dist/ and bench/) that the airlock-base target runs.
const baseRoot = value('base');
const profileOnly = flag('profile-only');
const doProfile = profileOnly || flag('profile');
const perfOnly = flag('perf-only');
const doPerf = perfOnly || flag('perf');
const perfTargets = (value('perf-targets', 'airlock,raw-relay,squid') || '').split(',').filter(Boolean);
const perfScenario = value('perf-scenario', 'keepalive');
// The client driving the keep-alive perf pass: the bench's raw one, or undici's ProxyAgent.
const perfClient = value('perf-client', 'raw');
if (!['raw', 'undici'].includes(perfClient)) die(`unknown --perf-client ${perfClient} (raw or undici)`);
if (!['keepalive', 'download', 'upload'].includes(perfScenario)) die(`unknown --perf-scenario ${perfScenario} (keepalive, download or upload)`);
for (const t of perfTargets) if (t === 'direct' || ![...ALL_TARGETS, ...EXTRA_TARGETS].includes(t)) die(`unknown --perf-targets entry ${t} (direct is always sampled)`);
// --render FILE.json: rewrite FILE.md from a saved result (no measurement).
const renderFile = value('render');
const rendered = renderFile ? JSON.parse(readFileSync(renderFile, 'utf8')) : null;
const rounds = rendered ? rendered.rounds : Number(value('rounds', quick ? 1 : 2));
const wanted = (value('targets', ALL_TARGETS.join(',')) || '').split(',').filter(Boolean);
for (const t of wanted) if (![...ALL_TARGETS, ...EXTRA_TARGETS].includes(t)) die(`unknown target ${t} (known: ${[...ALL_TARGETS, ...EXTRA_TARGETS].join(', ')})`);
const targets = rendered ? rendered.targets : profileOnly || perfOnly || flag('exec-only') ? [] : [...ALL_TARGETS, ...EXTRA_TARGETS].filter((t) => t === 'direct' || wanted.includes(t));
const WORKLOADS = ['npm', 'git', 'llm'];
const CLIENTS = ['c1u', 'c64u', 'c1curl', 'c64curl', 'c1py', 'c64py'];
const SCENARIOS = [...WORKLOADS, 'c1', 'c64', ...CLIENTS, 'newconn', 'download', 'upload', 'newhosts', 'sse', 'idle', 'exec'];
const scenarios = new Set((value('scenarios', SCENARIOS.join(',')) || '').split(',').filter(Boolean));
for (const s of scenarios) if (!SCENARIOS.includes(s)) die(`unknown scenario ${s} (known: ${SCENARIOS.join(', ')})`);
const secondsOverride = value('seconds') ? Number(value('seconds')) : null;
const outStem = value('out', quick ? 'latest-quick' : 'latest');
const quietWait = Number(value('quiet-wait', quick ? 0 : 120));
const profileScenario = value('profile-scenario', 'keepalive');
if (!['keepalive', 'newhosts', 'download', 'upload', 'sse', 'npm', 'git'].includes(profileScenario)) die(`unknown --profile-scenario ${profileScenario}`);

// Durations are totals per target and round; the scenarios compared with direct are cut into
// `pairs` slices (see `paired` in runTarget).
const P = quick
  ? { llmEvents: 2000, llmIntervalMs: 5, curlC1: 1000, curlC64: 5000, pyC1: 1000, pyC64: 2000, execRuns: 5, warmup: 1, latencyRequests: 2000, latencySeconds: 1.5, c64: 2, newconn: 2, newconnC: 16, transfer: 100 * 1048576, newHosts: 20, sseStreams: 1, idle: 250, profileSeconds: 6,
      pairs: { npm: 1, git: 1, llm: 1, c1curl: 1, c64curl: 1, c1py: 1, c64py: 1, c1: 2, c64: 2, c1u: 2, c64u: 2, newconn: 2, download: 1, upload: 1, sse: 1 } }
  : { llmEvents: 2000, llmIntervalMs: 5, curlC1: 2000, curlC64: 10000, pyC1: 2000, pyC64: 4000, execRuns: 11, warmup: 2, latencyRequests: 10000, latencySeconds: 5, c64: 10, newconn: 8, newconnC: 16, transfer: 100 * 1048576, newHosts: 200, sseStreams: 5, idle: 1000, profileSeconds: 15,
      pairs: { npm: 3, git: 3, llm: 2, c1curl: 2, c64curl: 3, c1py: 2, c64py: 3, c1: 4, c64: 5, c1u: 4, c64u: 5, newconn: 4, download: 3, upload: 3, sse: 3 } };
if (secondsOverride) P.c64 = P.newconn = secondsOverride;
if (value('pairs')) for (const k of Object.keys(P.pairs)) P.pairs[k] = Math.max(1, Number(value('pairs')));
if (rendered) Object.assign(P, rendered.machine.params);

function die(msg) {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}
const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---- processes

const children = new Set();
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
function cleanup() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    stopPeers();
    cleanup();
    process.exit(130);
  });
}

/** Spawns and resolves with the first stdout line `match` accepts (its return value). */
function spawnReady(cmd, args, opts, match, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }));
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
      if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: not ready in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    const rl = createInterface({ input: child.stdout });
    let ready = false;
    rl.on('line', (line) => {
      if (ready) return; // keep draining
      const v = match(line);
      if (v !== undefined) {
        ready = true;
        clearTimeout(timer);
        resolve({ child, value: v, stderr: () => stderr });
      }
    });
    child.once('exit', (code) => {
      if (!ready) {
        clearTimeout(timer);
        reject(new Error(`${cmd} exited (${code}) before ready:\n${stderr}`));
      }
    });
  });
}

function stopChild(child, signal = 'SIGTERM', timeoutMs = 8000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill(signal);
  });
}

// ---- /proc sampling

function procTable() {
  const kids = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(name));
    } catch {}
  }
  return kids;
}
function tree(pid) {
  const kids = procTable();
  const out = [];
  const walk = (p) => {
    out.push(p);
    for (const k of kids.get(p) ?? []) walk(k);
  };
  walk(pid);
  return out;
}
/** Sum of VmRSS over a process tree, MiB. */
function rssMiB(pids) {
  let kb = 0;
  for (const p of pids) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'latin1'));
      if (m) kb += Number(m[1]);
    } catch {}
  }
  return kb / 1024;
}
const TICK = 100; // USER_HZ
/** CPU seconds (user+sys) over a process tree. */
function cpuSeconds(pids) {
  let ticks = 0;
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return ticks / TICK;
}

/** Fraction of all CPUs busy over `ms` (from /proc/stat). */
async function cpuBusy(ms = 1000) {
  const read = () => {
    const f = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  await sleep(ms);
  const b = read();
  return b.total > a.total ? 1 - (b.idle - a.idle) / (b.total - a.total) : 0;
}

/** Waits (up to `seconds`) until other processes leave the CPUs mostly idle; returns the last busy fraction. */
async function waitQuiet(seconds) {
  let busy = await cpuBusy(1000);
  if (seconds <= 0 || busy < 0.25) return { busy, waitedS: 0 };
  log(`machine busy (${(busy * 100).toFixed(0)}% of CPUs used by other processes): waiting up to ${seconds} s`);
  const t0 = Date.now();
  while (busy >= 0.25 && Date.now() - t0 < seconds * 1000) busy = await cpuBusy(2000);
  return { busy, waitedS: (Date.now() - t0) / 1000 };
}

// ---- load generator

/**
 * Runs one loadgen measurement. `onHolding` (idle scenario) is awaited while the tunnels are held.
 * `watch`: { pid } of the proxy to sample RSS (max) and CPU during the run.
 */
function loadgen(target, spec, { timeoutMs = 180_000, onHolding, watch, onSpawn } = {}) {
  return new Promise((resolve) => {
    const child = track(
      spawn(process.execPath, [join(BENCH, 'loadgen.mjs'), JSON.stringify({ ...spec, target })], {
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    );
    onSpawn?.(child.pid);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    let result = null;
    const rl = createInterface({ input: child.stdout });
    rl.on('line', async (line) => {
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (msg.event === 'holding') {
        if (onHolding) await onHolding(msg);
        child.stdin.write('release\n');
        return;
      }
      result = msg;
    });
    let sampler = null;
    let peak = 0;
    const w = watch ? { pids: tree(watch.pid), cpu0: 0, cpu: {}, t0: process.hrtime.bigint() } : null;
    if (w) {
      w.cpu0 = cpuSeconds(w.pids);
      w.gen0 = null;
      sampler = setInterval(() => {
        w.pids = tree(watch.pid);
        peak = Math.max(peak, rssMiB(w.pids));
      }, 200);
      // the generator's own CPU, to show it is not the bottleneck
      w.genPid = child.pid;
      w.gen0 = cpuSeconds([child.pid]);
      if (watch.upstreamPid) w.up0 = cpuSeconds([watch.upstreamPid]);
    }
    let genCpu = null;
    const timer = setTimeout(() => {
      stderr += `\n(timed out after ${timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    // Read the generator's CPU just before it exits (its last line is the result).
    const pollGen = w
      ? setInterval(() => {
          const c = cpuSeconds([child.pid]);
          if (c > 0) genCpu = c;
        }, 200)
      : null;
    child.once('exit', () => {
      clearTimeout(timer);
      if (sampler) clearInterval(sampler);
      if (pollGen) clearInterval(pollGen);
      rl.close();
      if (!result) result = { ok: false, error: `loadgen exited without a result: ${stderr.trim().split('\n').slice(-3).join(' | ')}` };
      if (w && result.ok) {
        const secs = Number(process.hrtime.bigint() - w.t0) / 1e9;
        peak = Math.max(peak, rssMiB(tree(watch.pid)));
        result.result.proxyRssPeakMiB = peak;
        result.result.cpu = {
          wallSeconds: secs,
          proxyCores: (cpuSeconds(tree(watch.pid)) - w.cpu0) / secs,
          upstreamCores: watch.upstreamPid ? (cpuSeconds([watch.upstreamPid]) - w.up0) / secs : null,
          loadgenCores: genCpu !== null ? (genCpu - w.gen0) / secs : null,
        };
      }
      if (!result.ok && stderr.trim()) result.stderr = stderr.trim().slice(-1500);
      resolve(result);
    });
  });
}

// ---- setup: certificates, names, policies

// One work directory per run: engineers sharing a machine may run the bench at the same time.
const WORK = join(os.tmpdir(), `airlock-bench-${process.pid}`);
const hostsFile = join(WORK, 'hosts');
// The workload servers (registry, git): another domain, reached without the credential (it is bound
// to bench.test and *.bench.test only), as a public registry or repository would be.
const WORK_NAMES = ['registry.work.test', 'git.work.test'];
const NEW_HOSTS = Array.from({ length: P.newHosts }, (_, i) => `h${i + 1}.bench.test`);
const ALL_NAMES = ['bench.test', ...Array.from({ length: 200 }, (_, i) => `h${i + 1}.bench.test`), ...WORK_NAMES];
const SECRET = 'bench-secret-' + Math.random().toString(36).slice(2, 12);
const DUMMY_TOKEN = 'bench-placeholder-000000000000';

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

function prepare() {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  process.on('exit', () => rmSync(WORK, { recursive: true, force: true }));
  chmodSync(WORK, 0o755); // Squid runs as user proxy and must traverse it
  const c = (f) => join(WORK, f);
  sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '7', '-subj', '/CN=bench upstream CA', '-keyout', c('upstream-ca.key'), '-out', c('upstream-ca.pem')]);
  sh('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=bench.test', '-keyout', c('upstream.key'), '-out', c('upstream.csr')]);
  writeFileSync(c('upstream.ext'), 'subjectAltName=DNS:bench.test,DNS:*.bench.test,DNS:*.work.test\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n');
  sh('openssl', ['x509', '-req', '-in', c('upstream.csr'), '-CA', c('upstream-ca.pem'), '-CAkey', c('upstream-ca.key'), '-CAcreateserial', '-days', '7', '-sha256', '-extfile', c('upstream.ext'), '-out', c('upstream.pem')]);
  // bare-node's CA and its one leaf for every bench name
  sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '7', '-subj', '/CN=bench bare-node CA', '-keyout', c('bare-ca.key'), '-out', c('bare-ca.pem')]);
  sh('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=bench.test', '-keyout', c('bare-leaf.key'), '-out', c('bare-leaf.csr')]);
  sh('openssl', ['x509', '-req', '-in', c('bare-leaf.csr'), '-CA', c('bare-ca.pem'), '-CAkey', c('bare-ca.key'), '-CAcreateserial', '-days', '7', '-sha256', '-extfile', c('upstream.ext'), '-out', c('bare-leaf.pem')]);
  const lines = [];
  for (let i = 0; i < ALL_NAMES.length; i += 10) lines.push(`127.0.0.1 ${ALL_NAMES.slice(i, i + 10).join(' ')}`);
  writeFileSync(hostsFile, lines.join('\n') + '\n');
  for (const f of readdirSync(WORK)) chmodSync(c(f), 0o644);
}

function writePolicies(upstreamPort, workPorts = []) {
  const allow =
    `allow:\n  - host: bench.test\n    ports: [${upstreamPort}]\n  - host: "*.bench.test"\n    ports: [${upstreamPort}]\n` +
    (workPorts.length ? `  - host: "*.work.test"\n    ports: [${workPorts.join(', ')}]\n` : '');
  const head = `# Written by bench/run.mjs: the bench hosts, one credential swapped by the broker.\nversion: 1\nname: bench\nmode: enforce\n`;
  const creds = `credentials:\n  - name: bench\n    env: [BENCH_TOKEN]\n    secret: { env: AIRLOCK_BENCH_SECRET }\n    hosts: [bench.test, "*.bench.test"]\n`;
  writeFileSync(join(WORK, 'policy.yaml'), head + allow + creds);
  writeFileSync(join(WORK, 'policy-nocreds.yaml'), head.replace('name: bench', 'name: bench-nocreds') + allow + 'credentials: []\n');
}

// ---- targets

let upstream; // { child, port }
/** The workload servers, when a workload scenario runs: { registryPort, gitPort, stop }. */
let workServers = null;
const peersStarted = new Set();
function stopPeers() {
  for (const p of peersStarted) {
    try {
      sh('bash', [join(BENCH, 'setup.sh'), 'stop', p, join(WORK, 'peers')]);
    } catch {}
  }
  peersStarted.clear();
}

function basicAuth(proxyUrl) {
  const u = new URL(proxyUrl);
  return 'Basic ' + Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64');
}

/** A launcher's ready line: one JSON object with "ready": true (anything else is not it yet). */
function jsonReady(line) {
  try {
    const v = JSON.parse(line);
    return v.ready ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A Node proxy launcher in bench/ (no authentication; it prints its port and CA when ready). */
async function startNodePeer(name, base, script, args, notes, nodeFlags = []) {
  const { child, value: ready } = await spawnReady(process.execPath, [...nodeFlags, join(BENCH, script), ...args], { cwd: ROOT }, jsonReady);
  return {
    name,
    pid: child.pid,
    child,
    target: { ...base, proxyHost: '127.0.0.1', proxyPort: ready.port, proxyAuth: null, ca: ready.ca },
    notes,
    stop: () => stopChild(child),
  };
}

/** The V8 flags the `airlock` command runs with (its shebang), so the bench runs Airlock alike. */
function airlockNodeFlags(root = ROOT) {
  const first = readFileSync(join(root, 'dist', 'cli', 'main.js'), 'utf8').split('\n')[0];
  const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

/** Direct: no proxy process; what the load generator needs, and the upstream as the process to watch. */
function startDirect() {
  return {
    name: 'direct',
    pid: null,
    target: { upstreamPort: upstream.port, token: DUMMY_TOKEN, direct: true, ca: join(WORK, 'upstream-ca.pem') },
    watch: { pid: upstream.child.pid, upstreamPid: null },
    notes: [],
    stop: async () => {},
  };
}

async function startTarget(name, { cpuProf, nodeFlags = [] } = {}) {
  const base = { upstreamPort: upstream.port, token: DUMMY_TOKEN };
  if (name === 'direct') return startDirect();
  if (name === 'airlock' || name === 'airlock-nocreds' || name === 'airlock-view' || name === 'airlock-base') {
    const nocreds = name === 'airlock-nocreds';
    if (name === 'airlock-base' && !baseRoot) throw new Error('airlock-base needs --base DIR (a built checkout)');
    const root = name === 'airlock-base' ? baseRoot : ROOT;
    const stateDir = join(WORK, `airlock-state-${Date.now()}`);
    const memFile = join(WORK, `airlock-mem-${Date.now()}.json`);
    const nodeArgs = airlockNodeFlags(root).concat(cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${cpuProf.dir}`, `--cpu-prof-name=${cpuProf.name}`] : [], nodeFlags);
    const { child, value: ready } = await spawnReady(
      process.execPath,
      [
        ...nodeArgs,
        join(root, 'bench', 'airlock-proxy.mjs'),
        ...(nocreds
          ? ['--policy', join(WORK, 'policy-nocreds.yaml')]
          : ['--policy', join(WORK, 'policy.yaml'), '--fallback-policy', join(WORK, 'policy-nocreds.yaml')]),
        '--state-dir', stateDir,
        '--upstream-ca', join(WORK, 'upstream-ca.pem'),
        '--hosts', hostsFile,
        '--upstream-port', String(upstream.port),
        ...(workServers ? ['--extra-ports', `${workServers.registryPort},${workServers.gitPort}`] : []),
        '--mem-file', memFile,
        ...(name === 'airlock-view' ? ['--view'] : []),
      ],
      { env: { ...process.env, AIRLOCK_BENCH_SECRET: SECRET }, cwd: ROOT },
      jsonReady,
    );
    const notes = [];
    let token = DUMMY_TOKEN;
    if (ready.view) notes.push(`live view open, a page following the session: ${ready.view}`);
    if (nocreds) {
      notes.push('diagnostic: policy without credentials');
    } else if (ready.credentials) {
      token = ready.session.env.BENCH_TOKEN;
      if (!token) notes.push('session env has no BENCH_TOKEN placeholder');
    } else {
      notes.push(`WARNING: ${ready.warning}`);
      log(`airlock: WARNING: ${ready.warning}`);
    }
    return {
      name,
      pid: child.pid,
      child,
      credentials: ready.credentials && !nocreds,
      target: { ...base, token, proxyHost: '127.0.0.1', proxyPort: ready.port, proxyAuth: basicAuth(ready.session.proxy_url), ca: ready.ca },
      notes,
      audit: ready.session.audit,
      memory: async () => {
        rmSync(memFile, { force: true });
        child.kill('SIGUSR2');
        for (let i = 0; i < 20 && !existsSync(memFile); i++) await sleep(50);
        try {
          return JSON.parse(readFileSync(memFile, 'utf8'));
        } catch {
          return null;
        }
      },
      stop: () => stopChild(child),
    };
  }
  if (name === 'squid' || name === 'squid-log' || name === 'mitmproxy') {
    const peer = name === 'squid-log' ? 'squid' : name;
    const peersDir = join(WORK, 'peers');
    mkdirSync(peersDir, { recursive: true });
    chmodSync(peersDir, 0o755);
    // A free port, not the default: another engineer's bench may hold 3128 on a shared machine.
    const port = await freePort();
    const env = { ...process.env, SQUID_ACCESS_LOG: name === 'squid-log' ? '1' : '' };
    const out = sh('bash', [join(BENCH, 'setup.sh'), 'start', peer, peersDir, join(WORK, 'upstream-ca.pem'), hostsFile, String(port)], { timeout: 600_000, env });
    peersStarted.add(peer);
    const m = /port=(\d+) pid=(\d+) ca=(\S+)/.exec(out);
    if (!m) throw new Error(`setup.sh start ${name}: unexpected output ${out}`);
    return {
      name,
      pid: Number(m[2]),
      target: { ...base, proxyHost: '127.0.0.1', proxyPort: Number(m[1]), proxyAuth: null, ca: m[3] },
      notes: name === 'squid-log' ? ['diagnostic: Squid with its access log written to a file (one line per request)'] : [],
      stop: async () => {
        sh('bash', [join(BENCH, 'setup.sh'), 'stop', peer, peersDir]);
        peersStarted.delete(peer);
      },
    };
  }
  if (name === 'bare-node' || name === 'raw-relay') {
    const args = ['--cert', join(WORK, 'bare-leaf.pem'), '--key', join(WORK, 'bare-leaf.key'), '--ca', join(WORK, 'bare-ca.pem'), '--upstream-ca', join(WORK, 'upstream-ca.pem'), '--hosts', hostsFile];
    return name === 'raw-relay'
      ? startNodePeer(name, base, 'bare-node-proxy.mjs', [...args, '--raw'], ['diagnostic: TLS relay, no HTTP parsed'], nodeFlags)
      : startNodePeer(name, base, 'bare-node-proxy.mjs', args, ['diagnostic: minimal Node interception path, no policy, audit or credentials'], nodeFlags);
  }
  if (name === 'http-mitm-proxy') {
    const caDir = join(WORK, `http-mitm-proxy-${Date.now()}`);
    return startNodePeer(name, base, 'http-mitm-proxy.mjs', ['--ca-dir', caDir, '--upstream-ca', join(WORK, 'upstream-ca.pem'), '--hosts', hostsFile], [], nodeFlags);
  }
  throw new Error(`unknown target ${name}`);
}

// ---- one target, one round

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The scenarios that are compared with direct, by the key their result is stored under. */
const PAIRED = {
  npm: 'npm_install', git: 'git_clone', llm: 'llm_stream',
  c1curl: 'curl_c1', c64curl: 'curl_c64', c1py: 'python_c1', c64py: 'python_c64',
  c1: 'latency_c1', c64: 'keepalive_c64', c1u: 'undici_c1', c64u: 'undici_c64', newconn: 'newconn', download: 'download', upload: 'upload', sse: 'sse' };
// With any proxy to compare, direct is measured in slices next to each proxy's (below) instead of
// in a round of its own; its own round then runs only the scenarios that are not compared.
const pairing = () => targets.some((t) => t !== 'direct');
/** Each compared scenario's main figure (to pick the median slice). */
const PAIR_FIGURE = {
  c1: (r) => r.latencyMs.p50,
  c64: (r) => r.rps,
  c1u: (r) => r.latencyMs.p50,
  c64u: (r) => r.rps,
  npm: (r) => r.seconds,
  git: (r) => r.seconds,
  llm: (r) => r.delayMs.p50,
  c1curl: (r) => r.seconds,
  c64curl: (r) => r.rps,
  c1py: (r) => r.latencyMs.p50,
  c64py: (r) => r.rps,
  newconn: (r) => r.rps,
  download: (r) => r.mibps,
  upload: (r) => r.mibps,
  sse: (r) => r.delayMs.p50,
};

async function runTarget(name, round) {
  const quiet = await waitQuiet(quietWait);
  log(`round ${round}: ${name}: starting (other processes using ${(quiet.busy * 100).toFixed(0)}% of CPUs)`);
  const t = await startTarget(name);
  const out = { target: name, round, notes: [...t.notes], scenarios: {}, pairs: {}, otherCpuBusy: quiet.busy, loadavg1: os.loadavg()[0] };
  const watch = t.pid ? { pid: t.pid, upstreamPid: upstream.child.pid } : t.watch;
  // One measurement, retried up to `opts.attempts` times; failures are logged (and kept for the notes).
  const measure = async (target, who, key, spec, opts = {}) => {
    const attempts = opts.attempts ?? 1;
    const failures = [];
    for (let i = 0; i < attempts; i++) {
      const r = await loadgen(target, spec, opts);
      if (r.ok) return { result: failures.length ? { ...r.result, failedAttempts: failures } : r.result };
      failures.push(r.error);
      log(`round ${round}: ${who}: ${key} FAILED (attempt ${i + 1}/${attempts}): ${r.error}${r.stderr ? `\n${r.stderr}` : ''}`);
    }
    return { error: failures.at(-1), failures };
  };
  const run = async (key, spec, opts = {}) => {
    const m = await measure(t.target, name, key, spec, opts);
    out.scenarios[key] = m.result ?? { error: m.error, failedAttempts: m.failures };
    return m.result ?? null;
  };
  try {
    // Credential swap check: what Authorization did the upstream receive?
    const probe = await loadgen(t.target, { scenario: 'probe' });
    if (!probe.ok) throw new Error(`probe failed: ${probe.error}${probe.stderr ? `\n${probe.stderr}` : ''}`);
    out.upstreamAuthorization = probe.result.auth;
    if (name === 'airlock' || name === 'airlock-nocreds' || name === 'airlock-view' || name === 'airlock-base') {
      out.credentialSwap = t.credentials
        ? probe.result.auth === 'secret' ? 'verified' : `NOT swapped (upstream saw ${probe.result.auth})`
        : name === 'airlock' ? 'off (fallback policy)' : 'off (diagnostic target)';
      if (t.credentials && probe.result.auth !== 'secret') log(`airlock: WARNING: credential swap not seen upstream (${probe.result.auth})`);
    }
    await run('warmup', { scenario: 'keepalive', connections: 16, seconds: P.warmup });
    if (t.pid) {
      await sleep(500);
      out.rssIdleMiB = rssMiB(tree(t.pid));
      if (t.memory) out.memoryAfterWarmup = await t.memory();
    }
    // A scenario compared with direct. Paired: direct and this target alternate in `n` slices
    // (direct first, then the target first, and so on), so each ratio compares two measurements
    // taken seconds apart: this machine's speed drifts by tens of percent within minutes.
    const compared = async (scenario, spec, opts = {}) => {
      if (!scenarios.has(scenario)) return;
      const key = PAIRED[scenario];
      const n = P.pairs[scenario];
      if (name === 'direct') {
        if (!pairing()) await run(key, spec, opts);
        return;
      }
      // Transfers are short (a third of a second at 300 MiB/s): the first through a proxy that
      // has only served small GETs runs cold code, so each proxy gets one unmeasured transfer.
      if (opts.warmTransfer) await measure(t.target, name, `${key} warm-up`, spec, { ...opts, attempts: 1 });
      const slice = { ...spec };
      if (spec.seconds) slice.seconds = spec.seconds / n;
      if (spec.maxRequests) slice.maxRequests = Math.ceil(spec.maxRequests / n);
      const direct = startDirect();
      const pairs = [];
      const results = [];
      for (let i = 0; i < n; i++) {
        const order = i % 2 === 0 ? ['direct', name] : [name, 'direct'];
        const pair = {};
        for (const who of order) {
          const m = who === 'direct'
            ? await measure(direct.target, `${name} (paired direct)`, key, slice, { ...opts, watch: opts.watch ? direct.watch : undefined })
            : await measure(t.target, name, key, slice, opts);
          if (m.result) pair[who === 'direct' ? 'direct' : 'target'] = m.result;
          else out.notes.push(`${key} slice ${i + 1}/${n}${who === 'direct' ? ' (paired direct)' : ''} failed: ${m.error}`);
        }
        if (pair.direct && pair.target) pairs.push(pair);
        if (pair.target) results.push(pair.target);
      }
      // What the table shows for this round: the slice with the median value of the scenario's
      // main figure; peak RSS over all slices.
      if (!results.length) {
        out.scenarios[key] = { error: `all ${n} slices failed` };
      } else {
        const main = PAIR_FIGURE[scenario];
        const sorted = [...results].sort((a, b) => main(a) - main(b));
        const mid = { ...sorted[Math.floor((sorted.length - 1) / 2)] };
        if (results.some((r) => r.proxyRssPeakMiB !== undefined)) mid.proxyRssPeakMiB = Math.max(...results.map((r) => r.proxyRssPeakMiB ?? 0));
        // A workload's wall time moves with this machine's load; the proxy's CPU seconds per run
        // much less, so they are kept beside it (median over the slices).
        if (opts.cpuPerRun && results.every((r) => r.cpu)) mid.proxyCpuSeconds = median(results.map((r) => r.cpu.proxyCores * r.cpu.wallSeconds));
        if (opts.cpuPerRequest && results.every((r) => r.cpu && r.rps)) mid.proxyCpuUsPerRequest = median(results.map((r) => (r.cpu.proxyCores / r.rps) * 1e6));
        out.scenarios[key] = mid;
      }
      out.pairs[key] = pairs;
    };
    // The workloads first: they are what a user compares.
    if (workServers) {
      const w = { registryPort: workServers.registryPort, gitPort: workServers.gitPort, work: join(WORK, 'tools') };
      if (scenarios.has('npm')) log(`round ${round}: ${name}: npm ci (${NPM_PACKAGES} packages) from the bench registry`);
      await compared('npm', { scenario: 'tool', tool: 'npm', ...w }, { timeoutMs: 600_000, watch, cpuPerRun: true });
      if (scenarios.has('git')) log(`round ${round}: ${name}: git clone (${(workServers.packBytes / 1e6).toFixed(0)} MB pack)`);
      await compared('git', { scenario: 'tool', tool: 'git', ...w }, { timeoutMs: 600_000, watch, cpuPerRun: true });
    }
    if (scenarios.has('llm')) log(`round ${round}: ${name}: LLM-style stream, ${P.llmEvents} events`);
    await compared('llm', { scenario: 'sse', streams: 1, events: P.llmEvents, intervalMs: P.llmIntervalMs, llm: true }, { timeoutMs: 600_000 });
    const tools = { work: join(WORK, 'tools') };
    if (scenarios.has('c1curl') || scenarios.has('c64curl')) log(`round ${round}: ${name}: curl keep-alive c=1, c=64`);
    await compared('c1curl', { scenario: 'tool', tool: 'curl', connections: 1, requests: P.curlC1, ...tools });
    await compared('c64curl', { scenario: 'tool', tool: 'curl', connections: 64, requests: P.curlC64, ...tools }, { watch });
    if (scenarios.has('c1py') || scenarios.has('c64py')) log(`round ${round}: ${name}: Python requests keep-alive c=1, c=64`);
    await compared('c1py', { scenario: 'tool', tool: 'python', connections: 1, requests: P.pyC1, ...tools });
    await compared('c64py', { scenario: 'tool', tool: 'python', connections: 64, requests: P.pyC64, ...tools }, { watch });
    if (scenarios.has('c1')) log(`round ${round}: ${name}: keep-alive c=1`);
    await compared('c1', { scenario: 'keepalive', connections: 1, seconds: P.latencySeconds, maxRequests: P.latencyRequests });
    if (scenarios.has('c64')) log(`round ${round}: ${name}: keep-alive c=64`);
    await compared('c64', { scenario: 'keepalive', connections: 64, seconds: P.c64 }, { watch, cpuPerRequest: true });
    if (scenarios.has('c1u')) log(`round ${round}: ${name}: undici ProxyAgent keep-alive c=1`);
    await compared('c1u', { scenario: 'keepalive-undici', connections: 1, seconds: P.latencySeconds, maxRequests: P.latencyRequests });
    if (scenarios.has('c64u')) log(`round ${round}: ${name}: undici ProxyAgent keep-alive c=64`);
    await compared('c64u', { scenario: 'keepalive-undici', connections: 64, seconds: P.c64 }, { watch, cpuPerRequest: true });
    if (scenarios.has('newconn')) log(`round ${round}: ${name}: new connection per request`);
    await compared('newconn', { scenario: 'newconn', concurrency: P.newconnC, seconds: P.newconn }, { watch });
    if (scenarios.has('download') || scenarios.has('upload')) log(`round ${round}: ${name}: 100 MB download / upload`);
    // A failed transfer is retried (twice) and reported in the notes.
    await compared('download', { scenario: 'download', bytes: P.transfer }, { watch, attempts: 3, warmTransfer: true });
    await compared('upload', { scenario: 'upload', bytes: P.transfer }, { watch, attempts: 3, warmTransfer: true });
    if (scenarios.has('newhosts')) log(`round ${round}: ${name}: ${NEW_HOSTS.length} new hosts`);
    if (scenarios.has('newhosts')) await run('newhosts', { scenario: 'newhosts', hosts: NEW_HOSTS }, { timeoutMs: 600_000 });
    if (scenarios.has('sse')) log(`round ${round}: ${name}: SSE`);
    await compared('sse', { scenario: 'sse', streams: P.sseStreams, events: 100, intervalMs: 10 });
    let idleRss = null;
    const before = t.pid ? rssMiB(tree(t.pid)) : null;
    if (scenarios.has('idle')) log(`round ${round}: ${name}: ${P.idle} idle tunnels`);
    if (scenarios.has('idle')) await run(
      'idle',
      { scenario: 'idle', count: P.idle, parallel: 32 },
      {
        timeoutMs: 300_000,
        onHolding: async () => {
          await sleep(1500);
          if (!t.pid) return;
          let max = 0;
          for (let i = 0; i < 3; i++) {
            max = Math.max(max, rssMiB(tree(t.pid)));
            await sleep(300);
          }
          idleRss = max;
          if (t.memory) out.memoryIdleTunnels = await t.memory();
        },
      },
    );
    if (out.scenarios.idle && !out.scenarios.idle.error) {
      out.scenarios.idle.proxyRssMiB = idleRss;
      out.scenarios.idle.proxyRssBeforeMiB = before;
    }
    if (t.audit) {
      // Audit on: count the lines it wrote (it is flushed asynchronously; give it a moment).
      await sleep(300);
      try {
        out.auditLines = readFileSync(t.audit, 'utf8').split('\n').filter(Boolean).length;
      } catch {
        out.auditLines = null;
      }
    }
  } catch (err) {
    out.error = err.message;
    log(`round ${round}: ${name}: FAILED: ${err.message}`);
  } finally {
    await t.stop();
  }
  return out;
}

// ---- metrics and the table

const NPM_PACKAGES = (() => {
  try {
    return Object.keys(JSON.parse(readFileSync(join(BENCH, 'npm-tree', 'package-lock.json'), 'utf8')).packages).length - 1;
  } catch {
    return '?';
  }
})();
const METRICS = [
  { key: 'npm', needs: 'npm', label: `npm ci, ${NPM_PACKAGES} packages from a Verdaccio registry, clean cache`, unit: 's', better: 'lower', rel: 'addedPct', get: (s) => s.npm_install?.seconds },
  { key: 'git', needs: 'git', label: 'git clone, 112 MB pack, git http-backend', unit: 's', better: 'lower', rel: 'addedPct', get: (s) => s.git_clone?.seconds },
  { key: 'npm_cpu', needs: 'npm', label: 'npm ci: proxy CPU per run (median)', unit: 's', better: 'lower', rel: null, proxyOnly: true, get: (s) => s.npm_install?.proxyCpuSeconds },
  { key: 'git_cpu', needs: 'git', label: 'git clone: proxy CPU per run (median)', unit: 's', better: 'lower', rel: null, proxyOnly: true, get: (s) => s.git_clone?.proxyCpuSeconds },
  { key: 'llm_first', needs: 'llm', label: 'LLM-style SSE stream (2,000 events, 230 B, 5 ms apart): first event', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.llm_stream?.firstEventMs?.p50 },
  { key: 'llm_p50', needs: 'llm', label: 'LLM-style SSE stream: per-event delay, p50', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.llm_stream?.delayMs?.p50 },
  { key: 'llm_p99', needs: 'llm', label: 'LLM-style SSE stream: per-event delay, p99', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.llm_stream?.delayMs?.p99 },
  { key: 'u_c1_p50', needs: 'c1u', label: 'undici ProxyAgent, keep-alive 1 KB GET, c=1: p50 latency', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.undici_c1?.latencyMs?.p50 },
  { key: 'u_c64_rps', needs: 'c64u', label: 'undici ProxyAgent, keep-alive 1 KB GET, c=64', unit: 'req/s', better: 'higher', rel: 'ratio', get: (s) => s.undici_c64?.rps },
  { key: 'u_c64_cpu', needs: 'c64u', label: 'undici ProxyAgent, c=64: proxy CPU per request (median)', unit: 'µs', better: 'lower', rel: null, proxyOnly: true, get: (s) => s.undici_c64?.proxyCpuUsPerRequest },
  { key: 'curl_c1', needs: 'c1curl', label: 'curl, one connection, sequential 1 KB GETs: mean per request', unit: 'ms', better: 'lower', rel: 'added', get: (s) => (s.curl_c1 ? (s.curl_c1.seconds / s.curl_c1.requests) * 1000 : undefined) },
  { key: 'curl_c1_p50', needs: 'c1curl', label: 'curl, same run: p50 of each request as curl timed it', unit: 'ms', better: 'lower', rel: 'added', optional: true, get: (s) => (s.curl_c1?.connections === 1 ? s.curl_c1.latencyMs?.p50 : undefined) },
  { key: 'curl_c64', needs: 'c64curl', label: 'curl --parallel-max 64, 1 KB GETs', unit: 'req/s', better: 'higher', rel: 'ratio', get: (s) => s.curl_c64?.rps },
  { key: 'py_c1', needs: 'c1py', label: 'Python requests Session, c=1: p50 latency', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.python_c1?.latencyMs?.p50 },
  { key: 'py_c64', needs: 'c64py', label: 'Python requests, 64 threads with a Session each', unit: 'req/s', better: 'higher', rel: 'ratio', get: (s) => s.python_c64?.rps },
  { key: 'c1_p50', needs: 'c1', label: 'Keep-alive 1 KB GET, c=1: p50 latency', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.latency_c1?.latencyMs?.p50 },
  { key: 'c1_p99', needs: 'c1', label: 'Keep-alive 1 KB GET, c=1: p99 latency', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.latency_c1?.latencyMs?.p99 },
  { key: 'c64_rps', needs: 'c64', label: 'Keep-alive 1 KB GET, c=64', unit: 'req/s', better: 'higher', rel: 'ratio', get: (s) => s.keepalive_c64?.rps },
  { key: 'c64_cpu', needs: 'c64', label: 'Keep-alive 1 KB GET, c=64: proxy CPU per request (median)', unit: 'µs', better: 'lower', rel: null, proxyOnly: true, get: (s) => s.keepalive_c64?.proxyCpuUsPerRequest },
  { key: 'newconn_rps', needs: 'newconn', label: `New connection per request, c=${P.newconnC}`, unit: 'req/s', better: 'higher', rel: 'ratio', get: (s) => s.newconn?.rps },
  { key: 'download', needs: 'download', label: '100 MB download', unit: 'MiB/s', better: 'higher', rel: 'ratio', get: (s) => s.download?.mibps },
  { key: 'upload', needs: 'upload', label: '100 MB upload', unit: 'MiB/s', better: 'higher', rel: 'ratio', get: (s) => s.upload?.mibps },
  { key: 'newhost_p50', needs: 'newhosts', label: `First request to a new host (${P.newHosts} hosts), p50`, unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.newhosts?.newHostMs?.p50 },
  { key: 'knownhost_p50', needs: 'newhosts', label: 'Same, known host (new connection), p50', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.newhosts?.knownHostMs?.p50 },
  { key: 'newhost_added', needs: 'newhosts', label: 'New host: added over known host (p50)', unit: 'ms', better: 'lower', rel: null, get: (s) => sub(s.newhosts?.newHostMs?.p50, s.newhosts?.knownHostMs?.p50) },
  { key: 'sse_p50', needs: 'sse', label: 'SSE per-event delay, p50', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.sse?.delayMs?.p50 },
  { key: 'sse_p99', needs: 'sse', label: 'SSE per-event delay, p99', unit: 'ms', better: 'lower', rel: 'added', get: (s) => s.sse?.delayMs?.p99 },
  { key: 'rss_idle', label: 'Proxy RSS after warm-up', unit: 'MiB', better: 'lower', rel: null, proxyOnly: true, get: (s, r) => r.rssIdleMiB },
  { key: 'rss_c64', needs: 'c64', label: 'Proxy RSS peak under c=64', unit: 'MiB', better: 'lower', rel: null, proxyOnly: true, get: (s) => s.keepalive_c64?.proxyRssPeakMiB },
  { key: 'rss_idle1000', needs: 'idle', label: `Proxy RSS with ${P.idle.toLocaleString('en-US')} idle tunnels`, unit: 'MiB', better: 'lower', rel: null, proxyOnly: true, get: (s) => s.idle?.proxyRssMiB },
];
function sub(a, b) {
  return typeof a === 'number' && typeof b === 'number' ? a - b : undefined;
}

const median = (xs) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
};
const finite = (v) => typeof v === 'number' && Number.isFinite(v);

/**
 * Per target and metric: the figure shown, and against direct a ratio or an added figure. For a
 * compared scenario measured in pairs, the ratio (or added figure) is the median over all pairs
 * of all rounds, each pair's proxy slice against its own direct slice, with the range over the
 * pairs; the figure shown is the median slice. Otherwise (a result saved before pairs existed,
 * or only direct run): the best round, and the ratio of the best rounds.
 */
function aggregate(runs) {
  const byTarget = {};
  const directSlices = {};
  for (const t of targets) {
    byTarget[t] = {};
    const rs = runs.filter((r) => r.target === t);
    for (const m of METRICS) {
      const key = PAIRED[m.needs];
      const pairs = key && t !== 'direct' ? rs.flatMap((r) => r.pairs?.[key] ?? []) : [];
      const fig = (res) => m.get({ [key]: res }, {});
      const usable = pairs.filter((p) => finite(fig(p.target)) && finite(fig(p.direct)));
      if (m.rel && usable.length) {
        const mine = usable.map((p) => fig(p.target));
        const theirs = usable.map((p) => fig(p.direct));
        (directSlices[m.key] ??= []).push(...theirs);
        const rel = usable.map((p) =>
          m.rel === 'ratio' ? fig(p.target) / fig(p.direct) : m.rel === 'addedPct' ? ((fig(p.target) - fig(p.direct)) / fig(p.direct)) * 100 : fig(p.target) - fig(p.direct),
        );
        const shown = median(mine);
        byTarget[t][m.key] = {
          best: shown,
          rounds: mine,
          spreadPct: shown !== 0 ? ((Math.max(...mine) - Math.min(...mine)) / Math.abs(shown)) * 100 : 0,
          pairs: usable.length,
          relRange: [Math.min(...rel), Math.max(...rel)],
          [m.rel]: median(rel),
        };
        continue;
      }
      const vals = rs.map((r) => m.get(r.scenarios ?? {}, r)).filter(finite);
      if (vals.length === 0) {
        byTarget[t][m.key] = null;
        continue;
      }
      const best = m.better === 'higher' ? Math.max(...vals) : Math.min(...vals);
      const worst = m.better === 'higher' ? Math.min(...vals) : Math.max(...vals);
      byTarget[t][m.key] = { best, rounds: vals, spreadPct: best !== 0 ? (Math.abs(worst - best) / Math.abs(best)) * 100 : 0 };
    }
  }
  // Direct's column, for the compared scenarios: the median of every direct slice.
  for (const [k, vals] of Object.entries(directSlices)) {
    if (!byTarget.direct || byTarget.direct[k]) continue;
    const shown = median(vals);
    byTarget.direct[k] = { best: shown, rounds: vals, spreadPct: shown !== 0 ? ((Math.max(...vals) - Math.min(...vals)) / Math.abs(shown)) * 100 : 0, pairs: vals.length };
  }
  // Unpaired: against direct's best round.
  for (const t of targets) {
    for (const m of METRICS) {
      const v = byTarget[t][m.key];
      const d = byTarget.direct?.[m.key];
      if (!v || !d || !m.rel || t === 'direct' || v.pairs) continue;
      if (m.rel === 'ratio') v.ratio = v.best / d.best;
      if (m.rel === 'added') v.added = v.best - d.best;
      if (m.rel === 'addedPct') v.addedPct = ((v.best - d.best) / d.best) * 100;
    }
  }
  return byTarget;
}

function fmt(v, unit) {
  if (v === null || v === undefined) return '–';
  const a = Math.abs(v);
  if (unit === 'req/s') return Math.round(v).toLocaleString('en-US');
  if (unit === 'MiB' || unit === 'MiB/s') return a >= 100 ? v.toFixed(0) : v.toFixed(1);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

function cell(t, m, agg, rounds) {
  if (t === 'direct' && m.proxyOnly) return 'n/a';
  const v = agg[t][m.key];
  if (!v) return m.needs && !scenarios.has(m.needs) ? 'not run' : 'failed';
  let s = fmt(v.best, m.unit);
  const signed = (x) => `${x >= 0 ? '+' : '−'}${fmt(Math.abs(x), m.unit)}`;
  const pct = (x) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)}%`;
  const range = v.relRange && v.pairs > 1
    ? ` [${m.rel === 'ratio' ? v.relRange.map((x) => x.toFixed(2)).join('–') : m.rel === 'addedPct' ? v.relRange.map(pct).join(' … ') : v.relRange.map(signed).join(' … ')}]`
    : '';
  if (t !== 'direct' && v.ratio !== undefined) s += ` (${v.ratio.toFixed(2)}×${range})`;
  if (t !== 'direct' && v.added !== undefined) s += ` (${signed(v.added)}${range})`;
  if (t !== 'direct' && v.addedPct !== undefined) s += ` (${pct(v.addedPct)}${range})`;
  if (!v.relRange && v.rounds.length > 1 && (rounds > 1 || v.pairs)) s += ` ±${v.spreadPct.toFixed(0)}%`;
  return s;
}

const pctOf = (x) => (typeof x === 'number' ? `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)}%` : '–');
const TARGET_CHECKS = [
  { label: 'npm ci added ≤ 5% over direct', ok: (a) => a.npm?.addedPct <= 5, show: (a) => pctOf(a.npm?.addedPct) },
  { label: 'git clone added ≤ 5% over direct', ok: (a) => a.git?.addedPct <= 5, show: (a) => pctOf(a.git?.addedPct) },
  { label: 'npm ci and git clone added below Squid', ok: (a, all) => a.npm?.addedPct < all.squid?.npm?.addedPct && a.git?.addedPct < all.squid?.git?.addedPct, show: (a, all) => `npm ${pctOf(a.npm?.addedPct)} vs ${pctOf(all.squid?.npm?.addedPct)}, git ${pctOf(a.git?.addedPct)} vs ${pctOf(all.squid?.git?.addedPct)}` },
  { label: 'undici ProxyAgent c=64 ≥ Squid', ok: (a, all) => a.u_c64_rps?.ratio >= all.squid?.u_c64_rps?.ratio, show: (a, all) => `${a.u_c64_rps?.ratio?.toFixed(2)}× vs ${all.squid?.u_c64_rps?.ratio?.toFixed(2)}×` },
  { label: 'undici ProxyAgent c=64: proxy CPU per request ≤ Squid', ok: (a, all) => a.u_c64_cpu?.best <= all.squid?.u_c64_cpu?.best, show: (a, all) => `${a.u_c64_cpu?.best?.toFixed(0)} µs vs ${all.squid?.u_c64_cpu?.best?.toFixed(0)} µs` },
  { label: '100 MB upload ≥ Squid', ok: (a, all) => a.upload?.ratio >= all.squid?.upload?.ratio, show: (a, all) => `${a.upload?.ratio?.toFixed(2)}× vs ${all.squid?.upload?.ratio?.toFixed(2)}×` },
  { label: 'LLM stream ≤ 1 ms added per event (p99)', ok: (a) => a.llm_p99?.added <= 1, show: (a) => `+${fmt(a.llm_p99?.added, 'ms')} ms` },
  { label: 'keep-alive c=64 ≥ 0.5× direct', ok: (a) => a.c64_rps?.ratio >= 0.5, show: (a) => `${a.c64_rps?.ratio?.toFixed(2)}×` },
  { label: 'added p50 at c=1 ≤ 0.25 ms', ok: (a) => a.c1_p50?.added <= 0.25, show: (a) => `+${fmt(a.c1_p50?.added, 'ms')} ms` },
  { label: '100 MB download ≥ 0.45× direct', ok: (a) => a.download?.ratio >= 0.45, show: (a) => `${a.download?.ratio?.toFixed(2)}×` },
  { label: '100 MB upload ≥ 0.45× direct', ok: (a) => a.upload?.ratio >= 0.45, show: (a) => `${a.upload?.ratio?.toFixed(2)}×` },
  { label: 'new host ≤ 5 ms over known host (p50)', ok: (a) => a.newhost_added?.best <= 5, show: (a) => `${fmt(a.newhost_added?.best, 'ms')} ms` },
  { label: 'SSE ≤ 1 ms added per event (p99)', ok: (a) => a.sse_p99?.added <= 1, show: (a) => `+${fmt(a.sse_p99?.added, 'ms')} ms` },
  { label: 'RSS under c=64 ≤ 100 MB', ok: (a) => a.rss_c64?.best <= 100, show: (a) => `${fmt(a.rss_c64?.best, 'MiB')} MiB` },
  { label: `${P.idle.toLocaleString('en-US')} idle tunnels ≤ 150 MB${P.idle !== 1000 ? ' (target is for 1,000)' : ''}`, ok: (a) => a.rss_idle1000?.best <= 150, show: (a) => `${fmt(a.rss_idle1000?.best, 'MiB')} MiB` },
];

function markdown(report) {
  const { agg, machine, runs } = report;
  const L = [];
  L.push(`### Airlock benchmark${report.quick ? ' (--quick)' : ''}`);
  L.push('');
  L.push(
    `${machine.date.slice(0, 10)} · ${machine.cpu} × ${machine.cores} cores · ${machine.memGiB} GiB · Linux ${machine.kernel} · Node ${machine.node} · ` +
      `Airlock ${machine.airlock} · ${machine.squid} · ${machine.mitmproxy} · http-mitm-proxy ${machine.httpMitmProxy} · ` +
      `${rounds} round${rounds > 1 ? 's' : ''}`,
  );
  L.push('');
  L.push(`| Scenario | ${targets.join(' | ')} |`);
  L.push(`|---|${targets.map(() => '---:').join('|')}|`);
  for (const m of METRICS) {
    // A row added after a result was taken (rendered again with --render) is left out.
    if (m.optional && targets.every((t) => !agg[t]?.[m.key])) continue;
    L.push(`| ${m.label} (${m.unit}) | ${targets.map((t) => cell(t, m, agg, rounds)).join(' | ')} |`);
  }
  L.push('');
  const paired = runs.some((r) => Object.values(r.pairs ?? {}).some((p) => p.length));
  if (paired) {
    const n = Object.entries(P.pairs).map(([k, v]) => `${k} ${v}`).join(', ');
    L.push(
      `(N×) = ratio to direct; (+N) = added over direct. Latency, throughput and SSE are measured in pairs: direct and the proxy alternate in short slices ` +
        `(per proxy and round: ${n}), and each ratio or added figure is the median over the pairs of all rounds, each proxy slice against its own direct slice; ` +
        `[a–b] is the range over those pairs. Figures shown are medians of the slices; direct's are over all its slices. ` +
        `Other rows: best of the rounds, ± the spread between rounds.`,
    );
  } else {
    L.push(`(N×) = ratio to direct; (+N) = added over direct. Best of the rounds shown${rounds > 1 ? '; ±: spread between rounds' : ''}.`);
  }
  L.push("RSS is the sum over the proxy's process tree (Squid: master, worker and certificate helpers).");
  L.push('All proxies intercept TLS (CONNECT + a minted leaf per host); Airlock runs with its policy, audit log and credential broker on.');
  if (agg.airlock) {
    L.push('');
    L.push('Airlock against its targets (2 shared cores):');
    L.push('');
    for (const c of TARGET_CHECKS) {
      let ok = false;
      try {
        ok = c.ok(agg.airlock, agg);
      } catch {}
      L.push(`- ${ok ? 'PASS' : 'MISS'} ${c.label}: ${(() => { try { return c.show(agg.airlock, agg); } catch { return '–'; } })()}`);
    }
  }
  const notes = [];
  for (const r of runs) {
    if (r.credentialSwap) notes.push(`round ${r.round} airlock: credential swap ${r.credentialSwap}; audit lines written: ${r.auditLines ?? '?'}`);
    for (const n of r.notes) notes.push(`round ${r.round} ${r.target}: ${n}`);
    if (r.error) notes.push(`round ${r.round} ${r.target}: FAILED: ${r.error.split('\n')[0]}`);
    for (const [k, s] of Object.entries(r.scenarios ?? {})) {
      const known = r.target === 'squid' && k === 'upload' && (s?.error || s?.failedAttempts)
        ? ' (Squid 5.7 bug 5405, "large uploads fill request buffer and die": a zero-size read taken for EOF; fixed upstream in 2024, squid-cache/squid#1887)'
        : '';
      if (s?.error) notes.push(`round ${r.round} ${r.target} ${k}: failed: ${s.error}${known}`);
      else if (s?.failedAttempts) notes.push(`round ${r.round} ${r.target} ${k}: ${s.failedAttempts.length} failed attempt(s) before success: ${s.failedAttempts.join('; ')}${known}`);
      else if (s?.errors) notes.push(`round ${r.round} ${r.target} ${k}: ${s.errors} request errors`);
      if (k === 'idle' && s && !s.error && s.open < s.count) notes.push(`round ${r.round} ${r.target} idle: only ${s.open} of ${s.count} tunnels opened`);
      if (k === 'idle' && s && !s.error && s.aliveAtRelease < s.open) notes.push(`round ${r.round} ${r.target} idle: ${s.open - s.aliveAtRelease} tunnels closed by the proxy while held`);
    }
    if (r.otherCpuBusy >= 0.25) notes.push(`round ${r.round} ${r.target}: other processes were using ${(r.otherCpuBusy * 100).toFixed(0)}% of the CPUs when it started: its numbers are noisy`);
    const m0 = r.memoryAfterWarmup;
    const m1 = r.memoryIdleTunnels;
    if (m0 && m1) {
      const f = (m) => `RSS ${m.rss}, V8 heap ${m.heapTotal} (used ${m.heapUsed}), external ${m.external} (array buffers ${m.arrayBuffers})`;
      notes.push(`round ${r.round} ${r.target} memory (MiB): after warm-up ${f(m0)}; with idle tunnels ${f(m1)}`);
    }
    const cpuNote = (who, cpu) =>
      `round ${r.round} ${who} c=64 CPU (cores): ${who === 'direct' ? 'upstream' : 'proxy'} ${cpu.proxyCores.toFixed(2)}${cpu.upstreamCores !== null ? `, upstream ${cpu.upstreamCores.toFixed(2)}` : ''}, load generator ${cpu.loadgenCores?.toFixed(2) ?? '?'}`;
    const c64Pairs = r.pairs?.keepalive_c64 ?? [];
    const pairedDirect = c64Pairs.map((p) => p.direct).sort((a, b) => a.rps - b.rps)[Math.floor((c64Pairs.length - 1) / 2)];
    if (pairedDirect?.cpu) notes.push(cpuNote('direct', pairedDirect.cpu) + ` (median slice paired with ${r.target})`);
    const cpu = r.scenarios?.keepalive_c64?.cpu;
    if (cpu) notes.push(cpuNote(r.target, cpu) + (c64Pairs.length ? ' (median slice)' : ''));
  }
  if (notes.length) {
    L.push('');
    L.push('<details><summary>Notes</summary>');
    L.push('');
    for (const n of notes) L.push(`- ${n}`);
    L.push('');
    L.push('</details>');
  }
  return L.join('\n') + '\n';
}

function machineInfo() {
  const tryOut = (fn) => {
    try {
      return fn();
    } catch {
      return 'unknown';
    }
  };
  return {
    date: new Date().toISOString(),
    cpu: os.cpus()[0]?.model?.trim() ?? 'unknown',
    cores: os.availableParallelism?.() ?? os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    airlock: tryOut(() => {
      const rev = sh('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).trim();
      const dirty = sh('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT }).trim() ? '+dirty src' : '';
      return rev + dirty;
    }),
    squid: tryOut(() => sh('squid', ['-v']).split('\n')[0].replace('Squid Cache: Version', 'Squid').trim()),
    mitmproxy: tryOut(() => sh('mitmdump', ['--version']).split('\n')[0].replace('Mitmproxy:', 'mitmproxy').trim()),
    httpMitmProxy: tryOut(() => JSON.parse(readFileSync(join(ROOT, 'node_modules/http-mitm-proxy/package.json'), 'utf8')).version),
    loadavgAtStart: os.loadavg(),
    params: P,
  };
}

// ---- workload servers

/** The bench registry and git server (set up once into the cache; see workloads.mjs). */
async function startWorkServers() {
  const cert = join(WORK, 'upstream.pem');
  const key = join(WORK, 'upstream.key');
  log('workloads: preparing the git repository and the npm registry (cached after the first run)');
  const repo = prepareGitRepo();
  const storage = await prepareRegistry({ cert, key, ca: join(WORK, 'upstream-ca.pem'), work: WORK });
  const registry = await startRegistry({ storage, cert, key, work: WORK });
  track(registry.child);
  const git = await spawnReady(process.execPath, [join(BENCH, 'git-server.mjs'), '--cert', cert, '--key', key, '--root', repo.root], {}, (line) =>
    line.startsWith('READY ') ? Number(line.slice(6)) : undefined,
  );
  const packBytes = repoPackBytes(repo.bare);
  log(`workloads: registry on ${registry.port}, git on ${git.value} (${(packBytes / 1e6).toFixed(0)} MB pack)`);
  return {
    registryPort: registry.port,
    gitPort: git.value,
    packBytes,
    stop: async () => {
      await stopChild(registry.child);
      await stopChild(git.child);
    },
  };
}

// ---- start-up pass: airlock exec

/**
 * `airlock exec` start-up, wall time of the whole command, interleaved runs: `-- true` (the
 * launcher's own cost; `node -e 0` beside it for what Node alone takes here), and `-- curl` of one
 * 1 KB GET through the session (start to the first byte back), beside the same curl direct.
 */
async function execPass() {
  const n = P.execRuns;
  const main = join(ROOT, 'dist', 'cli', 'main.cjs'); // the installed command (package.json bin)
  const state = join(WORK, 'exec-state');
  const policy = join(WORK, 'policy-nocreds.yaml');
  const url = `https://bench.test:${upstream.port}/1k`;
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(https?|no|all)_proxy$/i.test(k)) delete env[k];
  const curl = ['curl', '-sS', '-o', '/dev/null', '--fail'];
  const cases = {
    'node -e 0': [process.execPath, ['-e', '0']],
    'airlock exec -- true': [process.execPath, [...airlockNodeFlags(), main, 'exec', '--state-dir', state, '--policy', policy, '--', 'true']],
    'curl one GET, direct': [curl[0], [...curl.slice(1), '--cacert', join(WORK, 'upstream-ca.pem'), '--resolve', `bench.test:${upstream.port}:127.0.0.1`, url]],
    'airlock exec -- curl one GET': [
      process.execPath,
      [...airlockNodeFlags(), main, 'exec', '--state-dir', state, '--policy', policy, '--resolve', `bench.test:${upstream.port}:127.0.0.1`, '--upstream-ca', join(WORK, 'upstream-ca.pem'), '--', ...curl, url],
    ],
  };
  const times = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  log(`start-up: ${n} interleaved runs of ${Object.keys(cases).join(', ')}`);
  const loadBefore = os.loadavg()[0];
  for (let i = 0; i < n; i++) {
    for (const [name, [cmd, args]] of Object.entries(cases)) {
      const t0 = process.hrtime.bigint();
      const r = await new Promise((resolve) => {
        const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
        let err = '';
        child.stderr.on('data', (d) => (err += d));
        child.once('exit', (code) => resolve({ code, err }));
      });
      const msTaken = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.code !== 0) throw new Error(`start-up: ${name} exited ${r.code}: ${r.err.slice(-500)}`);
      times[name].push(msTaken);
    }
  }
  const rows = Object.entries(times).map(([name, t]) => ({ name, median: median(t), min: Math.min(...t), max: Math.max(...t) }));
  const text =
    `### airlock exec start-up (${n} interleaved runs, wall ms; 1-min load average ${loadBefore.toFixed(2)} → ${os.loadavg()[0].toFixed(2)})\n\n` +
    `| command | median | min | max |\n|---|---:|---:|---:|\n` +
    rows.map((r) => `| \`${r.name}\` | ${r.median.toFixed(0)} | ${r.min.toFixed(0)} | ${r.max.toFixed(0)} |`).join('\n') +
    '\n';
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, `${outStem}-startup.md`), text);
  writeFileSync(join(RESULTS, `${outStem}-startup.json`), JSON.stringify({ runs: n, loadavg: [loadBefore, os.loadavg()[0]], times }, null, 2) + '\n');
  process.stdout.write('\n' + text);
}

// ---- profile pass

async function profilePass() {
  mkdirSync(RESULTS, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const specs = {
    keepalive: { title: `keep-alive 1 KB GETs, c=64, ${P.profileSeconds} s`, tag: 'keepalive-c64', spec: { scenario: 'keepalive', connections: 64, seconds: P.profileSeconds } },
    newhosts: { title: `first request to ${P.newHosts} new hosts (alternating with a known host)`, tag: 'newhosts', spec: { scenario: 'newhosts', hosts: NEW_HOSTS } },
    download: { title: '100 MB download', tag: 'download', spec: { scenario: 'download', bytes: P.transfer } },
    upload: { title: '100 MB upload', tag: 'upload', spec: { scenario: 'upload', bytes: P.transfer } },
    sse: { title: `SSE, ${P.sseStreams} × 100 events`, tag: 'sse', spec: { scenario: 'sse', streams: P.sseStreams, events: 100, intervalMs: 10 } },
  };
  if (workServers) {
    const w = { registryPort: workServers.registryPort, gitPort: workServers.gitPort, work: join(WORK, 'tools') };
    specs.npm = { title: `npm ci of ${NPM_PACKAGES} packages`, tag: 'npm', spec: { scenario: 'tool', tool: 'npm', ...w } };
    specs.git = { title: 'git clone, 112 MB pack', tag: 'git', spec: { scenario: 'tool', tool: 'git', ...w } };
  }
  const chosen = specs[profileScenario];
  const name = `airlock-${chosen.tag}-${stamp}.cpuprofile`;
  await waitQuiet(quietWait);
  log(`profile: Airlock under --cpu-prof: ${chosen.title}`);
  const t = await startTarget('airlock', { cpuProf: { dir: RESULTS, name } });
  let r;
  const window = [0, 0];
  try {
    await loadgen(t.target, { scenario: 'keepalive', connections: 16, seconds: P.warmup });
    window[0] = Number(process.hrtime.bigint() / 1000n);
    r = await loadgen(t.target, chosen.spec, { watch: { pid: t.pid, upstreamPid: upstream.child.pid }, timeoutMs: 600_000 });
    window[1] = Number(process.hrtime.bigint() / 1000n);
  } finally {
    await t.stop();
  }
  const file = join(RESULTS, name);
  for (let i = 0; i < 20 && !existsSync(file); i++) await sleep(100);
  if (!existsSync(file)) throw new Error(`no profile written at ${file}`);
  const summary = summariseProfile(JSON.parse(readFileSync(file, 'utf8')), { root: ROOT, window });
  const res = r?.ok ? r.result : null;
  const what = !res
    ? `run failed: ${r?.error}`
    : [
        res.rps !== undefined ? `${Math.round(res.rps).toLocaleString('en-US')} req/s under the profiler` : null,
        res.mibps !== undefined ? `${res.mibps.toFixed(0)} MiB/s under the profiler` : null,
        res.newHostMs ? `new host p50 ${res.newHostMs.p50.toFixed(2)} ms, known host p50 ${res.knownHostMs.p50.toFixed(2)} ms under the profiler` : null,
        res.delayMs ? `per-event delay p50 ${res.delayMs.p50.toFixed(2)} ms under the profiler` : null,
        res.cpu ? `proxy ${res.cpu.proxyCores.toFixed(2)} cores, upstream ${res.cpu.upstreamCores?.toFixed(2)}, load generator ${res.cpu.loadgenCores?.toFixed(2)}` : null,
      ]
        .filter(Boolean)
        .join('; ');
  const header =
    `### Airlock CPU profile: ${chosen.title}\n\n` +
    `${new Date().toISOString().slice(0, 10)} · ${os.cpus()[0]?.model?.trim()} × ${os.availableParallelism?.() ?? os.cpus().length} · Node ${process.version} · ${what}\n\n` +
    `Profile: bench/results/${name}\n\n`;
  const text = header + formatProfile(summary, { top: 30 });
  writeFileSync(join(RESULTS, profileScenario === 'keepalive' ? 'profile-latest.md' : `profile-${chosen.tag}-latest.md`), text);
  process.stdout.write('\n' + text);
}

// ---- perf: CPU per request by component

/**
 * Keep-alive c=64 under `perf record` for direct and each of --perf-targets: the proxy's process
 * tree in one recording, the upstream and load generator in another, both over the same window
 * in the middle of the run. Per request = samples / rate / requests in the window.
 */
async function perfPass() {
  const why = perfUnavailable();
  if (why) {
    log(`perf: skipped: ${why}`);
    return;
  }
  mkdirSync(RESULTS, { recursive: true });
  const transfer = perfScenario === 'download' || perfScenario === 'upload';
  const bytes = quick ? 256 * 1048576 : 1024 * 1048576;
  const seconds = P.profileSeconds;
  const cols = [];
  for (const name of ['direct', ...perfTargets]) {
    await waitQuiet(quietWait);
    log(`perf: ${name}: ${transfer ? `${perfScenario} of ${bytes / 1048576} MiB` : 'keep-alive c=64'}`);
    const t = await startTarget(name, { nodeFlags: ['--perf-basic-prof'] });
    try {
      await loadgen(t.target, { scenario: 'keepalive', connections: 16, seconds: P.warmup });
      const proxyFile = join(WORK, `perf-${name}-proxy.data`);
      const endsFile = join(WORK, `perf-${name}-ends.data`);
      let recorders = [];
      let windowS;
      let units;
      let rate;
      if (transfer) {
        // The whole transfer (the load generator's start is a few ms of it), per MiB moved.
        const started = process.hrtime.bigint();
        const r = await loadgen(t.target, { scenario: perfScenario, bytes }, {
          onSpawn: (pid) => {
            recorders = [t.pid ? startPerf(tree(t.pid), proxyFile) : null, startPerf([upstream.child.pid, pid], endsFile)];
          },
        });
        await Promise.all(recorders.map((x) => x?.stop()));
        windowS = Number(process.hrtime.bigint() - started) / 1e9;
        if (!r.ok) throw new Error(r.error);
        units = bytes / 1048576;
        rate = r.result.mibps;
      } else {
        // Sampled in the middle of a steady run (its connections are open before it starts),
        // so the window holds its share of the requests.
        windowS = Math.max(2, seconds - 4);
        let genPid = null;
        const running = loadgen(t.target, { scenario: perfClient === 'undici' ? 'keepalive-undici' : 'keepalive', connections: 64, seconds }, { onSpawn: (pid) => (genPid = pid) });
        await sleep(2000);
        recorders = [t.pid ? startPerf(tree(t.pid), proxyFile) : null, startPerf([upstream.child.pid, genPid], endsFile)];
        await sleep(windowS * 1000);
        await Promise.all(recorders.map((x) => x?.stop()));
        const r = await running;
        if (!r.ok) throw new Error(r.error);
        units = r.result.rps * windowS;
        rate = r.result.rps;
      }
      const proxy = t.pid ? readPerf(proxyFile) : null;
      const endsSummary = readPerf(endsFile);
      cols.push({
        name,
        rate,
        proxy: proxy ? perUnit(proxy, units) : null,
        proxyCores: proxy ? proxy.total / PERF_HZ / windowS : null,
        ends: perUnit(endsSummary, units).total,
        endsCores: endsSummary.total / PERF_HZ / windowS,
      });
    } catch (err) {
      log(`perf: ${name}: FAILED: ${err.message}`);
    } finally {
      await t.stop();
    }
  }
  const text = perfMarkdown(cols, { transfer, bytes });
  writeFileSync(join(RESULTS, perfScenario === 'keepalive' ? (perfClient === 'undici' ? 'perf-undici-latest.md' : 'perf-latest.md') : `perf-${perfScenario}-latest.md`), text);
  process.stdout.write('\n' + text);
}

function perfMarkdown(cols, { transfer, bytes }) {
  const proxies = cols.filter((c) => c.proxy);
  const direct = cols.find((c) => c.name === 'direct');
  const per = transfer ? 'MiB' : 'request';
  const comps = [...new Set(proxies.flatMap((c) => c.proxy.rows.map((r) => r.component)))];
  const usOf = (c, comp) => c.proxy.rows.find((r) => r.component === comp)?.us ?? 0;
  comps.sort((a, b) => usOf(proxies[0], b) - usOf(proxies[0], a));
  const f1 = (x) => (x === null || x === undefined ? '–' : x.toFixed(1));
  const rateOf = (c) => (transfer ? `${c.rate.toFixed(0)} MiB/s` : `${Math.round(c.rate).toLocaleString('en-US')} req/s`);
  const m = machineInfo();
  const L = [];
  L.push(
    `### CPU per ${per} by component: ${transfer ? `${perfScenario} of ${bytes / 1048576} MiB, one connection` : `keep-alive 1 KB GETs, c=64${perfClient === 'undici' ? ", undici's ProxyAgent as the client" : ''}`} ` +
      `(Linux perf, cpu-clock at ${PERF_HZ} Hz)`,
  );
  L.push('');
  L.push(`${m.date.slice(0, 10)} · ${m.cpu} × ${m.cores} cores · Linux ${m.kernel} · Node ${m.node} · Airlock ${m.airlock} · ${m.squid}`);
  L.push('');
  L.push(`On-CPU samples only (a thread waiting for a core is not counted), kernel and OpenSSL included; microseconds of CPU per ${per}.`);
  L.push('');
  L.push(`| | ${proxies.map((c) => c.name).join(' | ')} |`);
  L.push(`|---|${proxies.map(() => '---:').join('|')}|`);
  for (const comp of comps) L.push(`| ${comp} | ${proxies.map((c) => f1(usOf(c, comp))).join(' | ')} |`);
  L.push(`| **proxy, all threads** | ${proxies.map((c) => `**${f1(c.proxy.total)}**`).join(' | ')} |`);
  L.push(`| proxy, busiest thread (the event loop) | ${proxies.map((c) => f1(c.proxy.busiestThread)).join(' | ')} |`);
  L.push(`| upstream + load generator | ${proxies.map((c) => f1(c.ends)).join(' | ')} |`);
  L.push(`| ${transfer ? 'MiB/s' : 'req/s'} while sampled | ${proxies.map(rateOf).join(' | ')} |`);
  L.push(`| cores: proxy / upstream + load generator | ${proxies.map((c) => `${c.proxyCores.toFixed(2)} / ${c.endsCores.toFixed(2)}`).join(' | ')} |`);
  if (direct) {
    L.push('');
    L.push(`Direct, sampled the same way: ${rateOf(direct)}, upstream + load generator ${f1(direct.ends)} µs per ${per} on ${direct.endsCores.toFixed(2)} cores.`);
    // What a proxy may spend at half of direct's rate: its event loop gives at most 1 s of CPU
    // per second; the machine, its cores less what the upstream and load generator still use.
    const half = direct.rate / 2;
    const loopBudget = 1e6 / half;
    const machineBudget = ((m.cores - direct.endsCores / 2) * 1e6) / half;
    L.push(
      `At 0.5× direct (${transfer ? `${half.toFixed(0)} MiB/s` : `${Math.round(half).toLocaleString('en-US')} req/s`}) a proxy's event loop may spend at most ` +
        `${f1(loopBudget)} µs per ${per}, and the whole proxy at most ${f1(machineBudget)} µs if the ${m.cores} cores were otherwise idle (the upstream and ` +
        `load generator still take half of direct's ${direct.endsCores.toFixed(2)} cores, and more per ${per} when proxied, as the table shows; ` +
        `interrupts and the bench itself take some of the rest).`,
    );
  }
  return L.join('\n') + '\n';
}

// ---- main

async function main() {
  if (rendered) {
    rendered.agg = aggregate(rendered.runs);
    const md = markdown(rendered);
    writeFileSync(renderFile.replace(/\.json$/, '.md'), md);
    process.stdout.write(md);
    return;
  }
  if (!existsSync(join(ROOT, 'dist/sessions/runtime.js'))) die('dist/ is missing: run `npm run build` first');
  if (targets.some((t) => t.startsWith('squid') || t === 'mitmproxy') || (doPerf && perfTargets.some((t) => t.startsWith('squid')))) {
    log('checking peers (bench/setup.sh install)');
    sh('bash', [join(BENCH, 'setup.sh'), 'install'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 900_000 });
  }
  prepare();
  const machine = machineInfo();
  if (machine.loadavgAtStart[0] > 0.5) {
    log(`WARNING: the machine is busy (1-min load average ${machine.loadavgAtStart[0].toFixed(2)} on ${machine.cores} cores): results will be noisy`);
  }
  const up = await spawnReady(
    process.execPath,
    [join(BENCH, 'upstream.mjs'), '--cert', join(WORK, 'upstream.pem'), '--key', join(WORK, 'upstream.key')],
    { env: { ...process.env, AIRLOCK_BENCH_SECRET: SECRET } },
    (line) => (line.startsWith('READY ') ? Number(line.slice(6)) : undefined),
  );
  upstream = { child: up.child, port: up.value };
  if ((targets.length > 0 && (scenarios.has('npm') || scenarios.has('git'))) || (doProfile && ['npm', 'git'].includes(profileScenario))) workServers = await startWorkServers();
  writePolicies(upstream.port, workServers ? [workServers.registryPort, workServers.gitPort] : []);
  log(`upstream on 127.0.0.1:${upstream.port}; work dir ${WORK}`);

  const runs = [];
  if (targets.length > 0) {
    const t0 = Date.now();
    for (let round = 1; round <= rounds; round++) {
      for (const name of targets) runs.push(await runTarget(name, round));
    }
    const agg = aggregate(runs);
    const report = { machine, quick, rounds, targets, agg, runs, seconds: (Date.now() - t0) / 1000 };
    const md = markdown(report);
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(join(RESULTS, `${outStem}.json`), JSON.stringify(report, null, 2) + '\n');
    writeFileSync(join(RESULTS, `${outStem}.md`), md);
    process.stdout.write('\n' + md);
    log(`wrote bench/results/${outStem}.md and .json (${Math.round(report.seconds)} s)`);
  }
  if (scenarios.has('exec') && !rendered && (targets.includes('airlock') || flag('exec-only'))) await execPass();
  if (doProfile) await profilePass();
  if (doPerf) await perfPass();
  await workServers?.stop();
  await stopChild(upstream.child);
}

main().then(
  () => process.exit(0),
  (err) => {
    log(`failed: ${err.stack ?? err.message}`);
    stopPeers();
    cleanup();
    process.exit(1);
  },
);
