#!/usr/bin/env node
// The cost of the relay hop of `airlock run --network-mode none` against the bridge mode, on the
// real engine, with the proxy left out: a small HTTP server on the host answers 1 KiB, and a Node
// client inside a container sends keep-alive requests to it
//   bridge: over an --internal network to the server on the network's gateway address
//   none:   to 127.0.0.1:3128 in the relay's namespace, socat, the unix socket, the server
// c=1: median and p99 round trip (the added latency is the difference); c=64: requests/s.
//   npm run build && node bench/relay-hop.mjs [--seconds 10] [--image airlock-agent:test] [--relay-image airlock-relay:test]
// Everything it creates is labelled airlock-bench=relay-hop and removed at the end.
import http from 'node:http';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { relayCommand } from '../dist/launcher/relay.js';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const SECONDS = Number(arg('seconds', '10'));
const IMAGE = arg('image', 'airlock-agent:test');
const RELAY_IMAGE = arg('relay-image', 'airlock-relay:test');
const ID = `${process.pid}`;
const LABEL = ['--label', 'airlock-bench=relay-hop'];

const docker = (...args) => execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

// The client: keep-alive requests, c at a time, for SECONDS; prints JSON.
const CLIENT = `
const http = require('http');
const [url, c, seconds] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const agent = new http.Agent({ keepAlive: true, maxSockets: c });
const times = []; let done = 0; const end = Date.now() + seconds * 1000; const warm = Date.now() + 1000;
function one() {
  const t = process.hrtime.bigint();
  http.get(url, { agent }, (res) => { res.resume(); res.on('end', () => {
    const now = Date.now();
    if (now > warm) { done++; if (c === 1) times.push(Number(process.hrtime.bigint() - t) / 1e6); }
    if (now < end) one(); else if (--running === 0) report();
  }); }).on('error', (e) => { console.error(e.message); process.exit(1); });
}
let running = c; for (let i = 0; i < c; i++) one();
function report() {
  times.sort((a, b) => a - b);
  const q = (p) => times.length ? times[Math.min(times.length - 1, Math.floor(p * times.length))] : null;
  console.log(JSON.stringify({ c, rps: done / (seconds - 1), p50: q(0.5), p99: q(0.99) }));
  process.exit(0); // the keep-alive sockets would hold the process open
}
`;

/** Runs the client in a container; async, since the servers answering it live in this process. */
function client(network, url, c) {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', ['run', '--rm', ...LABEL, '--network', network, '--entrypoint', 'node', IMAGE, '-e', CLIENT, url, String(c), String(SECONDS)]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), (SECONDS + 60) * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`client failed (${code}): ${err}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

const body = Buffer.alloc(1024, 'x');
const handler = (req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length });
  res.end(body);
};
const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-relay-'));
const cleanup = [];
try {
  // bridge
  const net = `airlock-bench-${ID}`;
  docker('network', 'create', '--internal', ...LABEL, net);
  cleanup.push(() => docker('network', 'rm', net));
  const gateway = JSON.parse(docker('network', 'inspect', net))[0].IPAM.Config[0].Gateway;
  const tcp = http.createServer(handler);
  await new Promise((resolve) => tcp.listen(0, gateway, resolve));
  cleanup.push(() => tcp.close());
  // none: the relay as airlock runs it (same command), the socket owned by the relay's uid
  const sock = join(dir, 'proxy.sock');
  const unix = http.createServer(handler);
  await new Promise((resolve) => unix.listen(sock, resolve));
  cleanup.push(() => unix.close());
  const owner = process.getuid() === 0 ? 65534 : process.getuid();
  if (process.getuid() === 0) {
    chownSync(dir, owner, owner);
    chownSync(sock, owner, owner);
  }
  chmodSync(dir, 0o700);
  chmodSync(sock, 0o600);
  const relay = `airlock-bench-relay-${ID}`;
  docker('run', '-d', ...LABEL, '--name', relay, '--network', 'none', '--user', `${owner}:${owner}`, '--read-only', '--cap-drop', 'ALL',
    '--security-opt', 'no-new-privileges', '--pids-limit', '300', '--memory', '128m', '-v', `${dir}:/run/airlock:ro`, '--entrypoint', 'socat', RELAY_IMAGE, ...relayCommand());
  cleanup.push(() => docker('rm', '-f', relay));
  await new Promise((resolve) => setTimeout(resolve, 1000));

  const rows = [];
  for (const c of [1, 64]) {
    for (let round = 0; round < 2; round++) {
      rows.push({ mode: 'bridge', round, ...(await client(net, `http://${gateway}:${tcp.address().port}/`, c)) });
      rows.push({ mode: 'none', round, ...(await client(`container:${relay}`, 'http://127.0.0.1:3128/', c)) });
    }
  }
  const fmt = (v, d = 3) => (v == null ? '-' : v.toFixed(d));
  console.log(`relay hop vs bridge, ${SECONDS} s per measurement (first second not counted), 1 KiB responses, keep-alive`);
  console.log('| mode | c | round | req/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.mode} | ${r.c} | ${r.round} | ${fmt(r.rps, 0)} | ${fmt(r.p50)} | ${fmt(r.p99)} |`);
  const best = (mode, c, key, pick) => pick(...rows.filter((r) => r.mode === mode && r.c === c).map((r) => r[key]));
  const added = best('none', 1, 'p50', Math.min) - best('bridge', 1, 'p50', Math.min);
  const loss = 1 - best('none', 64, 'rps', Math.max) / best('bridge', 64, 'rps', Math.max);
  console.log(`\nadded latency at c=1 (best p50 none - bridge): ${fmt(added)} ms (target <= 0.05 ms)`);
  console.log(`throughput at c=64 (best of rounds): ${fmt(loss * 100, 1)}% below bridge (target <= 5%)`);
} finally {
  for (const step of cleanup.reverse()) {
    try {
      step();
    } catch (err) {
      console.error(`cleanup: ${err.message}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
