#!/usr/bin/env node
// npm ci of bench/npm-tree from the bench's Verdaccio (which gzip-encodes tarballs on top of
// their own gzip): direct, through Airlock with an npm token bound to the registry, and through
// Airlock without a credential (no scrubbing: what the search inside the tarballs adds shows as
// the difference), in interleaved runs with a clean npm cache each. Prints each run and medians.
//   node bench/npm-credential.mjs [--pairs N]
// Needs dist/ (npm run build) and the bench cache filled by `npm run bench` (the registry storage).
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { CACHE, startRegistry } from './workloads.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const pairs = Number(process.argv[process.argv.indexOf('--pairs') + 1] || 3) || 3;
const storage = execFileSync('sh', ['-c', `ls -d ${CACHE}/registry-*/ | head -1`], { encoding: 'utf8' }).trim();
if (!storage || !existsSync(join(storage, '.filled'))) throw new Error(`no filled registry storage under ${CACHE}: run npm run bench once`);

const work = mkdtempSync(join(os.tmpdir(), 'airlock-npm-cred-'));
const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
const ca = join(work, 'ca.pem');
const cert = join(work, 'leaf.pem');
const key = join(work, 'leaf.key');
sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(work, 'ca.key'), '-out', ca, '-days', '2', '-subj', '/CN=bench npm CA']);
sh('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', join(work, 'leaf.csr'), '-subj', '/CN=registry.work.test']);
writeFileSync(join(work, 'ext'), 'subjectAltName=DNS:registry.work.test\n');
sh('openssl', ['x509', '-req', '-in', join(work, 'leaf.csr'), '-CA', ca, '-CAkey', join(work, 'ca.key'), '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', join(work, 'ext')]);

const registry = await startRegistry({ storage, cert, key, work });
const port = registry.port;
const origin = `https://registry.work.test:${port}`;
const SECRET = `npm_benchRealToken${Date.now()}`;
const PLACEHOLDER = 'npm_airlock-npm-bench000000000000000000';
writeFileSync(
  join(work, 'policy.yaml'),
  `version: 1\nname: npm-credential\nallow:\n  - host: registry.work.test\n    ports: [${port}]\ncredentials:\n  - preset: npm\n    placeholder: ${PLACEHOLDER}\n    secret: { env: AIRLOCK_NPM_TOKEN }\n    hosts: [registry.work.test]\n`,
);
writeFileSync(join(work, 'policy-nocreds.yaml'), `version: 1\nname: npm-no-credential\nallow:\n  - host: registry.work.test\n    ports: [${port}]\n`);
writeFileSync(join(work, 'hosts'), '127.0.0.1 registry.work.test\n');

/** One Airlock (bench/airlock-proxy.mjs) with one session following `policy`. */
async function startProxy(policy, state) {
  const child = spawn(process.execPath, [join(BENCH, 'airlock-proxy.mjs'), '--policy', join(work, policy), '--state-dir', join(work, state), '--upstream-ca', ca, '--hosts', join(work, 'hosts'), '--upstream-port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, AIRLOCK_NPM_TOKEN: SECRET },
  });
  let log = '';
  child.stderr.on('data', (d) => (log = (log + d).slice(-20000)));
  const ready = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const msg = JSON.parse(line);
        if (msg.ready) resolve(msg);
      } catch {
        /* not the ready line */
      }
    });
    child.once('exit', (code) => reject(new Error(`airlock-proxy exited ${code}: ${log}`)));
  });
  return { child, proxyUrl: ready.session.proxy_url, bundle: ready.session.bundle, audit: ready.session.audit };
}
const proxies = { airlock: await startProxy('policy.yaml', 'state'), 'no-cred': await startProxy('policy-nocreds.yaml', 'state-nocreds') };

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function npmCi(mode) {
  const dir = join(work, `run-${mode}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  for (const f of ['package.json', 'package-lock.json']) cpSync(join(BENCH, 'npm-tree', f), join(dir, f));
  const env = { PATH: process.env.PATH, HOME: dir, npm_config_cache: join(dir, '.cache'), npm_config_registry: `${origin}/`, npm_config_update_notifier: 'false' };
  if (mode === 'direct') Object.assign(env, { npm_config_cafile: ca, NODE_OPTIONS: `--require ${join(BENCH, 'bench-names.cjs')}` });
  else {
    Object.assign(env, { npm_config_cafile: proxies[mode].bundle, npm_config_https_proxy: proxies[mode].proxyUrl });
    if (mode === 'airlock') writeFileSync(join(dir, '.npmrc'), `//registry.work.test:${port}/:_authToken=${PLACEHOLDER}\n`);
  }
  const cpu0 = mode === 'direct' ? 0 : cpuSeconds(proxies[mode].child.pid);
  const t0 = process.hrtime.bigint();
  const child = spawn('npm', ['ci', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error', '--fetch-retries=0'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
  const code = await new Promise((r) => child.on('exit', r));
  clearTimeout(timer);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const proxyCpu = mode === 'direct' ? 0 : cpuSeconds(proxies[mode].child.pid) - cpu0;
  if (out.includes(SECRET)) throw new Error('the real token reached npm output');
  rmSync(dir, { recursive: true, force: true });
  return { code, seconds, proxyCpu, out: out.trim().split('\n').slice(-3).join(' | ') };
}

const results = { direct: [], airlock: [], 'no-cred': [] };
const cpu = { airlock: [], 'no-cred': [] };
const orders = [
  ['direct', 'airlock', 'no-cred'],
  ['airlock', 'no-cred', 'direct'],
  ['no-cred', 'direct', 'airlock'],
];
try {
  for (let i = 0; i < pairs; i++) {
    for (const mode of orders[i % orders.length]) {
      const r = await npmCi(mode);
      results[mode].push(r.seconds);
      if (mode !== 'direct') cpu[mode].push(r.proxyCpu);
      const proxyCpu = mode === 'direct' ? '' : `, proxy CPU ${r.proxyCpu.toFixed(2)} s`;
      process.stdout.write(`${mode.padEnd(7)} run ${i + 1}: exit ${r.code}, ${r.seconds.toFixed(2)} s${proxyCpu}${r.code ? `  ${r.out}` : ''}\n`);
    }
  }
  const audit = readFileSync(proxies.airlock.audit, 'utf8');
  const lines = audit.trim().split('\n').map((l) => JSON.parse(l));
  const tgz = lines.filter((l) => String(l.path ?? '').endsWith('.tgz') && l.status !== undefined);
  const statuses = {};
  for (const l of tgz) statuses[l.status] = (statuses[l.status] ?? 0) + 1;
  if (audit.includes(SECRET)) throw new Error('the real token reached the audit log');
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  process.stdout.write(`tarball answers through Airlock by status: ${JSON.stringify(statuses)}; credentials used: ${JSON.stringify([...new Set(tgz.flatMap((l) => l.credentials ?? []))])}\n`);
  const added = (mode) => `${median(results[mode]).toFixed(2)} s (${((median(results[mode]) / median(results.direct) - 1) * 100).toFixed(0)}% added)`;
  process.stdout.write(`median: direct ${median(results.direct).toFixed(2)} s, airlock with the token bound ${added('airlock')}, airlock without a credential ${added('no-cred')}\n`);
  process.stdout.write(`median proxy CPU per npm ci: with the token bound ${median(cpu.airlock).toFixed(2)} s, without a credential ${median(cpu['no-cred']).toFixed(2)} s\n`);
} finally {
  for (const p of Object.values(proxies)) p.child.kill('SIGTERM');
  registry.child.kill('SIGTERM');
  setTimeout(() => rmSync(work, { recursive: true, force: true }), 1000);
}
