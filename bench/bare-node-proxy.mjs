#!/usr/bin/env node
// Diagnostic bench targets: the least a Node TLS-intercepting proxy can do, with no policy, no
// audit, no credentials, one pre-made leaf for every bench name; floors Airlock is measured against
// on the same machine, not products.
//   bare-node (default): Node's http server inside the tunnel, https.request upstream.
//   raw-relay (--raw):   TLS terminated and re-originated, bytes piped, no HTTP parsed at all.
//   node bench/bare-node-proxy.mjs --cert FILE --key FILE --ca FILE --upstream-ca FILE --hosts FILE [--raw]
// Prints {"ready": true, "port": N, "ca": FILE} once listening.
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name) => args[args.indexOf(`--${name}`) + 1];
const names = new Map();
for (const line of readFileSync(opt('hosts'), 'utf8').split('\n')) {
  const [address, ...rest] = line.trim().split(/\s+/);
  if (address && !address.startsWith('#')) for (const n of rest) names.set(n, address);
}
const lookup = (host, o, cb) => (o?.all ? cb(null, [{ address: names.get(host), family: 4 }]) : cb(null, names.get(host), 4));
const agent = new https.Agent({ keepAlive: true, maxSockets: 256, ca: readFileSync(opt('upstream-ca')), lookup });
const leaf = tls.createSecureContext({ cert: readFileSync(opt('cert')), key: readFileSync(opt('key')) });
const upstreamContext = tls.createSecureContext({ ca: readFileSync(opt('upstream-ca')) });
const raw = args.includes('--raw');

const inner = http.createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  const [host, port] = req.socket.authority.split(':');
  const up = https.request({ host, port, servername: host, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
    res.writeHead(ur.statusCode, ur.headers);
    ur.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
});
const outer = http.createServer();
outer.on('connect', (req, socket, head) => {
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length) socket.unshift(head);
  const t = new tls.TLSSocket(socket, { isServer: true, secureContext: leaf });
  t.authority = req.url;
  t.on('error', () => socket.destroy());
  if (!raw) return void inner.emit('connection', t);
  const [host, port] = req.url.split(':');
  const u = tls.connect({ host: names.get(host), port: Number(port), servername: host, secureContext: upstreamContext });
  u.on('error', () => t.destroy());
  t.on('close', () => u.destroy());
  t.pipe(u).pipe(t);
});
outer.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, port: outer.address().port, ca: opt('ca') }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
