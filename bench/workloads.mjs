// Real servers for the workload scenarios, on loopback, set up once and cached:
// - an npm registry: Verdaccio 6.8.0 (from npm; 6.10 wants Node 22, and 6.8.0 needs node-fetch
//   pinned to 2.7.0 to install on Node 20), serving bench/npm-tree's locked tree over HTTPS as
//   registry.work.test, uplinks off. Its storage is filled once, at setup, from the npm registry
//   (the one fetch from outside this machine the bench makes), and kept in the cache directory.
// - a git server: `git http-backend` behind HTTPS (bench/git-server.mjs) as git.work.test, over a
//   generated repository of ~110 MB packed (pseudo-random binary files and source-like text,
//   fixed seeds), generated once and cached.
// The cache is $AIRLOCK_BENCH_CACHE or ~/.cache/airlock-bench.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync, readdirSync, cpSync } from 'node:fs';
import { createHash } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH = dirname(fileURLToPath(import.meta.url));
export const CACHE = process.env.AIRLOCK_BENCH_CACHE ?? join(os.homedir(), '.cache', 'airlock-bench');
const VERDACCIO_DIR = join(CACHE, 'verdaccio-6.8.0');
const TREE = join(BENCH, 'npm-tree');
/** The host CA bundle: this network may inspect TLS to the npm registry (setup only). */
const HOST_CA = '/etc/ssl/certs/ca-certificates.crt';

const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitPort(port, ms = 30_000) {
  const t0 = Date.now();
  for (;;) {
    const ok = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() - t0 > ms) throw new Error(`nothing listening on ${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---- npm registry

function verdaccioConfig({ storage, port, cert, key, uplink }) {
  const proxy = uplink ? '\n    proxy: npmjs' : '';
  return `# Written by bench/workloads.mjs
storage: ${storage}
${uplink ? 'uplinks:\n  npmjs:\n    url: https://registry.npmjs.org/\n    timeout: 60s\n' : 'uplinks: {}\n'}packages:
  '@*/*':
    access: $all
    publish: $authenticated${proxy}
  '**':
    access: $all
    publish: $authenticated${proxy}
listen: https://127.0.0.1:${port}
https:
  key: ${key}
  cert: ${cert}
server:
  keepAliveTimeout: 60
log: { type: stdout, format: json, level: error }
web:
  enable: false
`;
}

function treeDigest() {
  return createHash('sha256').update(readFileSync(join(TREE, 'package-lock.json'))).digest('hex').slice(0, 12);
}

/** Installs Verdaccio into the cache (once). */
function ensureVerdaccio() {
  if (existsSync(join(VERDACCIO_DIR, 'node_modules', 'verdaccio', 'bin', 'verdaccio'))) return;
  log(`installing Verdaccio 6.8.0 into ${VERDACCIO_DIR} (once)`);
  mkdirSync(VERDACCIO_DIR, { recursive: true });
  writeFileSync(
    join(VERDACCIO_DIR, 'package.json'),
    JSON.stringify({ name: 'airlock-bench-registry', private: true, dependencies: { verdaccio: '6.8.0' }, overrides: { 'node-fetch': '2.7.0' } }, null, 2) + '\n',
  );
  sh('npm', ['install', '--no-audit', '--no-fund'], { cwd: VERDACCIO_DIR, env: { ...process.env, npm_config_cafile: HOST_CA }, timeout: 900_000 });
}

function startVerdaccio(configFile, port) {
  const child = spawn(process.execPath, [join(VERDACCIO_DIR, 'node_modules', 'verdaccio', 'bin', 'verdaccio'), '--config', configFile], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, NODE_EXTRA_CA_CERTS: HOST_CA },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  return waitPort(port).then(
    () => ({ child, port, stderr: () => stderr }),
    (err) => {
      child.kill('SIGKILL');
      throw new Error(`verdaccio did not start: ${err.message}\n${stderr}`);
    },
  );
}

/**
 * The registry's storage holding bench/npm-tree's locked tree: filled once from the npm registry
 * through a Verdaccio with its uplink on, then served with uplinks off.
 */
export async function prepareRegistry({ cert, key, ca, work }) {
  ensureVerdaccio();
  const storage = join(CACHE, `registry-${treeDigest()}`);
  if (existsSync(join(storage, '.filled'))) return storage;
  log(`filling the bench registry from the npm registry (once): ${storage}`);
  rmSync(storage, { recursive: true, force: true });
  mkdirSync(storage, { recursive: true });
  const port = await freePort();
  const configFile = join(work, 'verdaccio-fill.yaml');
  writeFileSync(configFile, verdaccioConfig({ storage, port, cert, key, uplink: true }));
  const v = await startVerdaccio(configFile, port);
  try {
    const dir = join(work, 'npm-fill');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    for (const f of ['package.json', 'package-lock.json']) cpSync(join(TREE, f), join(dir, f));
    sh('npm', ['ci', '--no-audit', '--no-fund', '--ignore-scripts', `--registry=https://registry.work.test:${port}/`], {
      cwd: dir,
      env: { ...process.env, npm_config_cafile: ca, npm_config_cache: join(work, 'npm-fill-cache'), NODE_OPTIONS: `--require ${join(BENCH, 'bench-names.cjs')}` },
      timeout: 900_000,
    });
    rmSync(dir, { recursive: true, force: true });
  } finally {
    v.child.kill('SIGTERM');
  }
  writeFileSync(join(storage, '.filled'), new Date().toISOString() + '\n');
  return storage;
}

/** Verdaccio over the filled storage, uplinks off: { child, port }. */
export async function startRegistry({ storage, cert, key, work }) {
  const port = await freePort();
  const configFile = join(work, 'verdaccio.yaml');
  writeFileSync(configFile, verdaccioConfig({ storage, port, cert, key, uplink: false }));
  return startVerdaccio(configFile, port);
}

// ---- git repository

const REPO_VERSION = 'v1';

/** xorshift32 bytes from a seed. */
function noise(bytes, seed) {
  const out = Buffer.allocUnsafe(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const WORDS = 'const let return function if else for while await async import export from class this new throw try catch value result request response buffer stream socket error options config state'.split(' ');
function sourceText(bytes, seed) {
  let x = seed >>> 0 || 1;
  const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
  const lines = [];
  let n = 0;
  while (n < bytes) {
    const depth = rnd() % 4;
    const words = Array.from({ length: 3 + (rnd() % 9) }, () => WORDS[rnd() % WORDS.length] + (rnd() % 5 === 0 ? `_${rnd() % 1000}` : ''));
    const line = '  '.repeat(depth) + words.join(' ') + (rnd() % 3 ? ';' : ' {');
    lines.push(line);
    n += line.length + 1;
  }
  return lines.join('\n') + '\n';
}

/**
 * A bare repository of ~110 MB packed (20 commits of pseudo-random binary files and source-like
 * text), generated once into the cache, fully repacked so a clone streams the existing pack.
 */
export function prepareGitRepo() {
  const root = join(CACHE, `git-${REPO_VERSION}`);
  const bare = join(root, 'repo.git');
  if (existsSync(join(root, '.done'))) return { root, name: 'repo.git', bare };
  log(`generating the bench git repository (once): ${root}`);
  rmSync(root, { recursive: true, force: true });
  const work = join(root, 'work');
  mkdirSync(work, { recursive: true });
  const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: root, GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@bench.test', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@bench.test' };
  const git = (...args) => sh('git', args, { cwd: work, env, maxBuffer: 1 << 26 });
  git('init', '-q', '-b', 'main');
  for (let c = 0; c < 20; c++) {
    mkdirSync(join(work, 'assets', String(c)), { recursive: true });
    mkdirSync(join(work, 'src', String(c)), { recursive: true });
    // 5 MiB of binary (like images and archives) and ~1.5 MB of text per commit.
    for (let f = 0; f < 10; f++) writeFileSync(join(work, 'assets', String(c), `blob-${f}.bin`), noise(512 * 1024, c * 100 + f + 1));
    for (let f = 0; f < 30; f++) writeFileSync(join(work, 'src', String(c), `module-${f}.js`), sourceText(50_000, c * 1000 + f + 7));
    git('add', '-A');
    git('commit', '-q', '-m', `commit ${c}`);
  }
  sh('git', ['clone', '-q', '--bare', work, bare], { cwd: root, env });
  sh('git', ['repack', '-a', '-d', '-q'], { cwd: bare, env });
  sh('git', ['config', 'http.uploadpack', 'true'], { cwd: bare, env });
  rmSync(work, { recursive: true, force: true });
  writeFileSync(join(root, '.done'), '');
  return { root, name: 'repo.git', bare };
}

export function repoPackBytes(bare) {
  const dir = join(bare, 'objects', 'pack');
  let total = 0;
  for (const f of readdirSync(dir)) if (f.endsWith('.pack')) total += Number(sh('stat', ['-c', '%s', join(dir, f)]).trim());
  return total;
}
