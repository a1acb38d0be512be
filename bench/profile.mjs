#!/usr/bin/env node
// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function, inclusive time per
// function, and self time per area (Airlock, undici, pino, Node internals, GC, native).
//   node bench/profile.mjs FILE.cpuprofile [--top N]
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

function area(frame) {
  const { url, functionName } = frame;
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(program)') return 'program (V8/native, unattributed)';
  if (functionName === '(root)') return 'root';
  if (!url) return 'native/builtins';
  if (url.includes('/node_modules/undici/')) return 'undici (upstream client)';
  if (/\/node_modules\/(pino|sonic-boom|thread-stream|fast-redact|quick-format-unescaped|on-exit-leak-free|atomic-sleep)/.test(url)) return 'pino (audit + log)';
  if (url.includes('/node_modules/')) return 'other node_modules';
  if (url.includes('/dist/')) return 'Airlock (dist/)';
  if (url.startsWith('node:internal/tls') || url.startsWith('node:tls') || url.startsWith('node:_tls')) return 'Node TLS';
  if (url.startsWith('node:_http') || url.startsWith('node:http') || url.includes('internal/http')) return 'Node HTTP';
  if (url.startsWith('node:internal/streams') || url.startsWith('node:stream') || url.startsWith('node:net') || url.includes('stream_base')) return 'Node net/streams';
  if (url.startsWith('node:')) return 'Node other';
  return 'other';
}

function where(frame, root) {
  let url = frame.url || '';
  if (url.startsWith('file://')) {
    try {
      url = fileURLToPath(url);
    } catch {}
  }
  if (root && url.startsWith('/')) url = relative(root, url);
  return url ? `${url}:${frame.lineNumber + 1}` : '';
}

/**
 * `window`: [fromUs, toUs] on the profile's clock (CLOCK_MONOTONIC in µs, the same clock as
 * process.hrtime), to count only the samples taken during a measurement.
 */
export function summariseProfile(profile, { root, window } = {}) {
  const nodes = new Map();
  const parent = new Map();
  for (const n of profile.nodes) {
    nodes.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const { samples, timeDeltas } = profile;
  const self = new Map(); // node id -> µs
  let total = 0;
  let at = profile.startTime;
  let windowed = false;
  if (window && window[0] < profile.endTime && window[1] > profile.startTime) windowed = true;
  let counted = 0;
  for (let i = 0; i < samples.length; i++) {
    at += timeDeltas[i];
    const dt = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : 0;
    if (dt < 0) continue;
    if (windowed && (at < window[0] || at > window[1])) continue;
    counted++;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + dt);
    total += dt;
  }
  const key = (f) => `${f.functionName || '(anonymous)'}\u0000${f.url}\u0000${f.lineNumber}`;
  const fnSelf = new Map();
  const fnIncl = new Map();
  const areas = new Map();
  let idle = 0;
  for (const [id, us] of self) {
    const f = nodes.get(id).callFrame;
    const a = area(f);
    if (a === 'idle') {
      idle += us;
      continue;
    }
    areas.set(a, (areas.get(a) ?? 0) + us);
    const k = key(f);
    const e = fnSelf.get(k) ?? { name: f.functionName || '(anonymous)', where: where(f, root), area: a, us: 0 };
    e.us += us;
    fnSelf.set(k, e);
    // inclusive: every distinct function on this sample's stack
    const seen = new Set();
    for (let p = id; p !== undefined; p = parent.get(p)) {
      const pf = nodes.get(p).callFrame;
      if (pf.functionName === '(root)') continue;
      const pk = key(pf);
      if (seen.has(pk)) continue;
      seen.add(pk);
      const ie = fnIncl.get(pk) ?? { name: pf.functionName || '(anonymous)', where: where(pf, root), area: area(pf), us: 0 };
      ie.us += us;
      fnIncl.set(pk, ie);
    }
  }
  const busy = total - idle;
  const sortDesc = (m) => [...m.values()].sort((a, b) => b.us - a.us);
  return {
    window: windowed ? { fromS: (window[0] - profile.startTime) / 1e6, toS: (window[1] - profile.startTime) / 1e6 } : null,
    profileSeconds: (profile.endTime - profile.startTime) / 1e6,
    totalMs: total / 1000,
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    samples: counted,
    self: sortDesc(fnSelf).map((e) => ({ ...e, ms: e.us / 1000, pct: (e.us / busy) * 100 })),
    inclusive: sortDesc(fnIncl).map((e) => ({ ...e, ms: e.us / 1000, pct: (e.us / busy) * 100 })),
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, ms: us / 1000, pct: (us / busy) * 100 })),
  };
}

export function formatProfile(s, { top = 25 } = {}) {
  const L = [];
  if (s.window) L.push(`Samples from ${s.window.fromS.toFixed(1)} s to ${s.window.toS.toFixed(1)} s of the ${s.profileSeconds.toFixed(1)} s profile (the measurement; start-up and warm-up left out).`);
  L.push(`Sampled ${(s.totalMs / 1000).toFixed(1)} s: busy ${(s.busyMs / 1000).toFixed(1)} s, idle ${(s.idleMs / 1000).toFixed(1)} s (${((s.busyMs / s.totalMs) * 100).toFixed(0)}% of one core). Percentages are of busy time.`);
  L.push('');
  L.push('Self time by area:');
  L.push('');
  L.push('| Area | self ms | % |');
  L.push('|---|---:|---:|');
  for (const a of s.areas) L.push(`| ${a.name} | ${a.ms.toFixed(0)} | ${a.pct.toFixed(1)} |`);
  L.push('');
  L.push(`Top ${top} functions by self time:`);
  L.push('');
  L.push('| # | self ms | % | function | where | area |');
  L.push('|---:|---:|---:|---|---|---|');
  s.self.slice(0, top).forEach((e, i) => L.push(`| ${i + 1} | ${e.ms.toFixed(0)} | ${e.pct.toFixed(1)} | \`${e.name}\` | ${e.where} | ${e.area} |`));
  L.push('');
  const mine = s.inclusive.filter((e) => e.area === 'Airlock (dist/)' || e.area === 'undici (upstream client)' || e.area === 'pino (audit + log)');
  L.push('Airlock, undici and pino functions by inclusive time (self + callees):');
  L.push('');
  L.push('| # | incl. ms | % | function | where |');
  L.push('|---:|---:|---:|---|---|');
  mine.slice(0, 20).forEach((e, i) => L.push(`| ${i + 1} | ${e.ms.toFixed(0)} | ${e.pct.toFixed(1)} | \`${e.name}\` | ${e.where} |`));
  return L.join('\n') + '\n';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node bench/profile.mjs FILE.cpuprofile [--top N]\n');
    process.exit(2);
  }
  const i = process.argv.indexOf('--top');
  const top = i === -1 ? 25 : Number(process.argv[i + 1]);
  const root = fileURLToPath(new URL('..', import.meta.url));
  process.stdout.write(formatProfile(summariseProfile(JSON.parse(readFileSync(file, 'utf8')), { root }), { top }));
}
