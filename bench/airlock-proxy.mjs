#!/usr/bin/env node
// Bench-only launcher: Airlock's ProxyRuntime from dist/, wired as `airlock proxy` wires it (same
// roots, credential factory and logger), with a resolve map for the bench names instead of 200
// --resolve flags. Creates one session and prints {"ready": ...} with the session as the admin
// API describes it (proxy URL, bundle, env with the credential placeholder).
//   node bench/airlock-proxy.mjs --policy FILE [--fallback-policy FILE] --state-dir DIR
//     --upstream-ca FILE --hosts FILE --upstream-port N [--extra-ports N,N] [--listen 127.0.0.1:0]
// --fallback-policy: used (with a warning on stderr) when creating the session with --policy
// fails, e.g. while the credential broker cannot yet serve the policy's credentials.
// SIGTERM/SIGINT close the runtime and exit 0 (so --cpu-prof writes its profile).
// --mem-file FILE: on SIGUSR2, write a memory breakdown (process.memoryUsage, MiB) to FILE.
// --view: also serve the live view and start bench/view-follower.mjs, a page's worth of client
// following the session's events, so the view's cost shows in the proxy's figures.
import { readFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { setFlagsFromString } from 'node:v8';

// As the airlock command does (scripts/cli-main.cjs): run with the shebang's flags, then
// --max-semi-space-size set back to its default once the heap is made (the heap keeps its cap;
// Node's own modules load from their code cache again).
setFlagsFromString('--max-semi-space-size=0');

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => import(join(root, 'dist', p));
const { ProxyRuntime } = await dist('sessions/runtime.js');
const { describeSession } = await dist('sessions/admin.js');
const { loadPolicy, upstreamRoots } = await dist('cli/config.js');
const { credentialsFactory } = await dist('credentials/sources.js');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? dflt : args[i + 1];
};

const stateDir = opt('state-dir');
const upstreamPort = Number(opt('upstream-port'));
const [listenHost, listenPort] = opt('listen', '127.0.0.1:0').split(':');
mkdirSync(stateDir, { recursive: true, mode: 0o700 });

// Every name in the hosts file ("ADDRESS NAME..." lines), at the upstream port and at each of
// --extra-ports (the workload servers: registry, git).
const ports = [upstreamPort, ...(opt('extra-ports', '') || '').split(',').filter(Boolean).map(Number)];
const resolve = new Map();
for (const line of readFileSync(opt('hosts'), 'utf8').split('\n')) {
  const [address, ...names] = line.trim().split(/\s+/);
  if (!address || address.startsWith('#')) continue;
  for (const name of names) for (const port of ports) resolve.set(`${name.toLowerCase()}:${port}`, { address, port });
}

const roots = upstreamRoots([opt('upstream-ca')]);
const log = pino({ base: null, name: 'airlock' }, pino.destination(2));
const runtime = new ProxyRuntime({
  stateDir,
  trustRoots: roots,
  upstreamCa: roots,
  resolve,
  log,
  credentials: credentialsFactory(process.env),
});
const address = await runtime.proxy.listen(listenHost, Number(listenPort));

let session;
let credentials = true;
let warning = null;
try {
  session = await runtime.sessions.create(loadPolicy(opt('policy')));
} catch (err) {
  const fallback = opt('fallback-policy');
  if (!fallback) throw err;
  credentials = false;
  warning = `session with credentials failed (${err.message}); using the policy without credentials`;
  process.stderr.write(`airlock-proxy: WARNING: ${warning}\n`);
  session = await runtime.sessions.create(loadPolicy(fallback));
}
const info = describeSession(session, address.address, address.port);
let view = null;
if (args.includes('--view')) {
  const { startRuntimeView } = await dist('view/runtime-view.js');
  const { spawn } = await import('node:child_process');
  const server = await startRuntimeView(runtime, { host: '127.0.0.1', port: 0 });
  const follower = spawn(process.execPath, [join(root, 'bench', 'view-follower.mjs'), server.url, session.id], { stdio: ['ignore', 'ignore', 'inherit'] });
  process.once('exit', () => follower.kill());
  view = `${server.address.address}:${server.address.port}`;
}
process.stdout.write(
  JSON.stringify({
    ready: true,
    pid: process.pid,
    port: address.port,
    credentials,
    warning,
    view,
    session: info,
    ca: join(session.dir, 'ca.pem'),
  }) + '\n',
);

// SIGUSR2: write process.memoryUsage() and V8 heap numbers (MiB) as one JSON line to
// --mem-file, so the bench can say where the RSS goes.
const memFile = opt('mem-file');
if (memFile) {
  const { writeFileSync } = await import('node:fs');
  const v8 = await import('node:v8');
  process.on('SIGUSR2', () => {
    const mib = (n) => Math.round((n / 1048576) * 10) / 10;
    const m = process.memoryUsage();
    const h = v8.getHeapStatistics();
    writeFileSync(
      memFile,
      JSON.stringify({
        rss: mib(m.rss),
        heapTotal: mib(m.heapTotal),
        heapUsed: mib(m.heapUsed),
        external: mib(m.external),
        arrayBuffers: mib(m.arrayBuffers),
        v8Total: mib(h.total_heap_size),
        mallocedMemory: mib(h.malloced_memory),
      }) + '\n',
    );
  });
}

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 3000).unref();
  await runtime.close().catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
