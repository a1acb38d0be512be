// On-CPU sampling of a proxy with Linux `perf` (cpu-clock, so it works on VMs without hardware
// counters), summarised as CPU microseconds per request by component: kernel, TLS (OpenSSL),
// JavaScript, V8's builtins, runtime and GC, Node's C++ and libuv, libc. Unlike --cpu-prof it
// counts only time on a CPU (a thread waiting for a core is not sampled), it sees the kernel and
// OpenSSL, and it works for any process (Squid too), so proxies can be compared per request.
//   node bench/perf.mjs FILE.data UNITS [HZ]   # summarise a recording again (UNITS: requests or MiB)
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PERF_HZ = 999;

/** Why `perf record` cannot run here, or null when it can. */
export function perfUnavailable() {
  try {
    execFileSync('perf', ['record', '-e', 'cpu-clock', '-F', String(PERF_HZ), '-o', '/dev/null', '--', 'true'], { stdio: 'pipe', timeout: 20_000 });
    return null;
  } catch (err) {
    if (err.code === 'ENOENT') return 'perf is not installed (Debian: linux-perf)';
    return `perf record failed: ${String(err.stderr || err.message).trim().split('\n')[0]}`;
  }
}

/**
 * Starts recording the processes `pids`; `stop()` ends the recording (SIGINT, as perf expects)
 * and resolves when the file is written.
 */
export function startPerf(pids, file) {
  const child = spawn('perf', ['record', '-e', 'cpu-clock', '-F', String(PERF_HZ), '-p', pids.join(','), '-o', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
  const exited = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => (code === 0 || signal === 'SIGINT' ? resolve() : reject(new Error(`perf record exited ${code ?? signal}: ${stderr.trim()}`))));
  });
  return {
    stop: () => {
      child.kill('SIGINT');
      return exited;
    },
  };
}

const OPENSSL = /^(ssl|SSL|tls|TLS|EVP|evp|aes|_aesni|aesni|gcm|GCM|BIO|ossl|OSSL|CRYPTO|OPENSSL|ERR_|RAND|sha|SHA|_x86_64|bn_|BN_|ec_|EC_|ecp_|do_ssl|dtls|WPACKET|PACKET|cipher|ctr|ChaCha|chacha|Poly|poly1305|ghash|_vpaes|x25519|X25519|OBJ_|ASN1|asn1)/;
const GC = /Scaveng|Heap::|MarkCompact|Marking|Sweep|Evacuat|GCTracer|MemoryChunk|ArrayBufferSweeper|MinorM|PagedSpace|NewSpace|SemiSpace|Compactor/;

/** The component a sample belongs to, from its DSO and symbol. */
export function component(dso, sym) {
  const inNode = dso === 'node' || dso.endsWith('/node'); // OpenSSL is linked into Node's binary
  if (dso.startsWith('[kernel')) return 'kernel';
  if (/libssl|libcrypto/.test(dso) || (inNode && OPENSSL.test(sym))) return 'TLS (OpenSSL)';
  if (dso.startsWith('[JIT]') || dso.startsWith('perf-') || dso.includes('/tmp/perf-')) return sym.startsWith('RegExp:') ? 'JavaScript (regular expressions)' : 'JavaScript (compiled)';
  if (/libc\.so|libc-|ld-linux/.test(dso)) return 'libc (malloc, memcpy)';
  if (inNode) {
    if (GC.test(sym)) return 'V8 garbage collector';
    if (sym.startsWith('Builtins_')) return 'V8 builtins';
    if (sym.startsWith('v8::') || sym.startsWith('Runtime_')) return 'V8 runtime';
    if (sym.startsWith('node::crypto')) return 'Node TLS glue';
    if (sym.startsWith('node::') || sym.startsWith('uv_')) return 'Node C++ and libuv';
    return 'Node binary, other';
  }
  if (/squid/.test(dso)) return 'Squid';
  if (dso === '[unknown]' || dso.startsWith('//anon') || dso.startsWith('[anon')) return 'JavaScript (compiled)';
  return 'other libraries';
}

/**
 * Reads a recording: samples per component, per thread (the busiest thread is the one a single
 * event loop saturates), and in all.
 */
export function readPerf(file) {
  const report = (sort) =>
    execFileSync('perf', ['report', '-i', file, '--no-children', '--sort', sort, '-g', 'none', '--stdio', '-F', `sample,${sort}`, '--field-separator', '\x1f'], {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split('\x1f').map((f) => f.trim()));
  const byComponent = {};
  let total = 0;
  for (const [n, dso, sym] of report('dso,sym')) {
    const samples = Number(n);
    if (!Number.isFinite(samples)) continue;
    const c = component(dso ?? '', (sym ?? '').replace(/^\[.\]\s*/, ''));
    byComponent[c] = (byComponent[c] ?? 0) + samples;
    total += samples;
  }
  // perf's "pid" key is the thread (task) id
  const threads = report('pid')
    .map(([n, tid]) => ({ samples: Number(n), tid }))
    .filter((t) => Number.isFinite(t.samples))
    .sort((a, b) => b.samples - a.samples);
  return { total, byComponent, busiestThread: threads[0]?.samples ?? 0, threads: threads.length };
}

/** Microseconds of CPU per unit of work (a request, a MiB), per component. */
export function perUnit(summary, units, hz = PERF_HZ) {
  const us = (samples) => (samples / hz / units) * 1e6;
  const rows = Object.entries(summary.byComponent)
    .map(([c, s]) => ({ component: c, us: us(s) }))
    .sort((a, b) => b.us - a.us);
  return { rows, total: us(summary.total), busiestThread: us(summary.busiestThread) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, units, hz] = process.argv.slice(2);
  if (!file || !units) {
    process.stderr.write('usage: node bench/perf.mjs FILE.data UNITS [HZ]   (UNITS: requests, or MiB moved)\n');
    process.exit(2);
  }
  const r = perUnit(readPerf(file), Number(units), Number(hz ?? PERF_HZ));
  for (const row of r.rows) process.stdout.write(`${row.component.padEnd(36)} ${row.us.toFixed(1).padStart(7)} µs per unit\n`);
  process.stdout.write(`${'total'.padEnd(36)} ${r.total.toFixed(1).padStart(7)} µs per unit (busiest thread ${r.busiestThread.toFixed(1)})\n`);
}
