#!/usr/bin/env node
// Bench-only launcher for http-mitm-proxy (npm; a dev dependency used by the bench only).
//   node bench/http-mitm-proxy.mjs --ca-dir DIR --upstream-ca FILE --hosts FILE [--listen 127.0.0.1:0]
// Configured as a user who cares about speed would: keep-alive on, one keep-alive agent that
// trusts the bench upstream CA and maps the bench names (hosts file) to their address.
// Prints {"ready": true, "port": N, "ca": FILE} once listening.
import https from 'node:https';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mitm from 'http-mitm-proxy';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? dflt : args[i + 1];
};

const names = new Map();
for (const line of readFileSync(opt('hosts'), 'utf8').split('\n')) {
  const [address, ...rest] = line.trim().split(/\s+/);
  if (!address || address.startsWith('#')) continue;
  for (const name of rest) names.set(name.toLowerCase(), address);
}
function lookup(host, options, callback) {
  const address = names.get(String(host).toLowerCase());
  if (!address) return callback(Object.assign(new Error(`bench: unknown host ${host}`), { code: 'ENOTFOUND' }));
  if (options && options.all) return callback(null, [{ address, family: 4 }]);
  return callback(null, address, 4);
}

// http-mitm-proxy narrates every new host on stdout (console.debug); keep stdout for the ready line.
console.debug = () => {};
console.info = () => {};

const caDir = opt('ca-dir');
const [host, port] = opt('listen', '127.0.0.1:0').split(':');
const Proxy = mitm.Proxy ?? mitm.default?.Proxy ?? mitm;
const proxy = new Proxy();
proxy.onError((ctx, err, kind) => {
  if (err && err.code !== 'ECONNRESET' && err.code !== 'EPIPE') process.stderr.write(`http-mitm-proxy: ${kind}: ${err.message}\n`);
});
proxy.listen(
  {
    host,
    port: Number(port),
    sslCaDir: caDir,
    keepAlive: true,
    httpAgent: new http.Agent({ keepAlive: true, lookup }),
    httpsAgent: new https.Agent({ keepAlive: true, maxSockets: 256, ca: readFileSync(opt('upstream-ca'), 'utf8'), lookup }),
  },
  (err) => {
    if (err) {
      process.stderr.write(`http-mitm-proxy: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, port: proxy.httpPort, ca: join(caDir, 'certs', 'ca.pem') }) + '\n');
  },
);
const stop = () => {
  try {
    proxy.close();
  } catch {}
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
