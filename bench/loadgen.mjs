#!/usr/bin/env node
// Bench load generator, in its own process: raw net/tls sockets, one CONNECT + TLS per client
// connection (or TLS straight to the upstream in direct mode), HTTP/1.1 keep-alive inside, a
// minimal response parser (Content-Length, chunked, close-delimited). Latency with process.hrtime.
//   node bench/loadgen.mjs '<json spec>'
// The spec: { scenario, target: { direct, proxyHost, proxyPort, proxyAuth, ca, upstreamPort,
//   token }, ...scenario options }. Prints one JSON result line on stdout. The idle scenario
// prints {"event":"holding"} when its tunnels are open and releases them on a line from stdin.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const spec = JSON.parse(process.argv[2]);
const T = spec.target;
const secureContext = tls.createSecureContext({ ca: readFileSync(T.ca, 'utf8') });
const now = () => process.hrtime.bigint();
const ms = (a, b) => Number(b - a) / 1e6;
const CRLF2 = Buffer.from('\r\n\r\n');

// ---- connections

function readHead(socket) {
  // Reads a CONNECT response head; resolves with [status, leftover].
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      const end = buf.indexOf(CRLF2);
      if (end === -1) {
        if (buf.length > 16384) done(new Error('CONNECT response head too large'));
        return;
      }
      done(null, [Number(buf.subarray(9, 12).toString('latin1')), buf.subarray(end + 4), buf.subarray(0, end).toString('latin1')]);
    };
    const onErr = (e) => done(e ?? new Error('closed during CONNECT'));
    const onClose = () => done(new Error('proxy closed the connection during CONNECT'));
    function done(err, v) {
      socket.off('data', onData);
      socket.off('error', onErr);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(v);
    }
    socket.on('data', onData);
    socket.on('error', onErr);
    socket.on('close', onClose);
  });
}

function tlsConnect(opts) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ ...opts, secureContext }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** A client connection to `host` (an upstream name): CONNECT through the proxy, then TLS. */
async function openTls(host) {
  if (T.direct) {
    const s = await tlsConnect({ host: '127.0.0.1', port: T.upstreamPort, servername: host });
    s.setNoDelay(true);
    return s;
  }
  const raw = net.connect({ host: T.proxyHost, port: T.proxyPort, noDelay: true });
  await new Promise((resolve, reject) => {
    raw.once('connect', resolve);
    raw.once('error', reject);
  });
  const authority = `${host}:${T.upstreamPort}`;
  raw.write(
    `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n` +
      (T.proxyAuth ? `Proxy-Authorization: ${T.proxyAuth}\r\n` : '') +
      `User-Agent: airlock-bench\r\n\r\n`,
  );
  let status, leftover, head;
  try {
    [status, leftover, head] = await readHead(raw);
  } catch (e) {
    raw.destroy();
    throw e;
  }
  if (status !== 200) {
    raw.destroy();
    throw new Error(`CONNECT ${authority}: ${head.split('\r\n')[0]}`);
  }
  if (leftover.length) raw.unshift(leftover);
  return await tlsConnect({ socket: raw, servername: host });
}

// ---- HTTP/1.1 on one connection

const H_HEAD = 0, H_CL = 1, H_CHUNK_SIZE = 2, H_CHUNK_DATA = 3, H_CHUNK_CRLF = 4, H_TRAILER = 5, H_CLOSE = 6;

class Conn {
  constructor(socket) {
    this.socket = socket;
    this.state = H_HEAD;
    this.acc = null;
    this.pending = null;
    this.onBody = null;
    this.closed = false;
    socket.on('data', (d) => this.onData(d));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => {
      this.closed = true;
      if (this.pending && this.state === H_CLOSE) this.complete();
      else this.fail(new Error('connection closed'));
    });
  }

  /** Sends a request (a prebuilt Buffer); resolves { status, bytes, head } on the full response. */
  request(buf, onBody = null) {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.onBody = onBody;
      this.bytes = 0;
      this.socket.write(buf);
    });
  }

  /** Starts a request whose body the caller writes to this.socket itself. */
  begin(head, onBody = null) {
    return this.request(head, onBody);
  }

  fail(err) {
    const p = this.pending;
    this.pending = null;
    if (p) p.reject(err);
  }

  complete() {
    const p = this.pending;
    this.pending = null;
    this.state = H_HEAD;
    this.acc = null;
    if (p) p.resolve({ status: this.status, bytes: this.bytes, head: this.head });
  }

  body(d) {
    this.bytes += d.length;
    if (this.onBody) this.onBody(d);
  }

  /** Passes up to `remaining` bytes of `d` to the body; returns the rest of `d`. */
  takeBody(d) {
    const take = Math.min(this.remaining, d.length);
    this.body(take === d.length ? d : d.subarray(0, take));
    this.remaining -= take;
    return d.subarray(take);
  }

  onData(d) {
    while (d.length > 0) {
      switch (this.state) {
        case H_HEAD: {
          if (this.acc) d = Buffer.concat([this.acc, d]);
          const end = d.indexOf(CRLF2);
          if (end === -1) {
            this.acc = d;
            if (d.length > 65536) this.fail(new Error('response head too large'));
            return;
          }
          this.acc = null;
          const head = d.latin1Slice(0, end);
          d = d.subarray(end + 4);
          this.status = (head.charCodeAt(9) - 48) * 100 + (head.charCodeAt(10) - 48) * 10 + (head.charCodeAt(11) - 48);
          this.head = head;
          if (this.status >= 100 && this.status < 200) continue; // interim response
          const cl = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
          if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
            this.state = H_CHUNK_SIZE;
            this.line = '';
          } else if (cl) {
            this.remaining = Number(cl[1]);
            this.state = H_CL;
            if (this.remaining === 0) this.complete();
          } else if (this.status === 204 || this.status === 304) {
            this.complete();
          } else {
            this.state = H_CLOSE;
          }
          break;
        }
        case H_CL: {
          d = this.takeBody(d);
          if (this.remaining === 0) this.complete();
          break;
        }
        case H_CHUNK_SIZE: {
          const nl = d.indexOf(10);
          if (nl === -1) {
            this.line += d.latin1Slice(0, d.length);
            return;
          }
          this.line += d.latin1Slice(0, nl);
          d = d.subarray(nl + 1);
          const size = parseInt(this.line, 16);
          this.line = '';
          if (Number.isNaN(size)) return this.fail(new Error('bad chunk size'));
          if (size === 0) {
            this.state = H_TRAILER;
          } else {
            this.remaining = size;
            this.state = H_CHUNK_DATA;
          }
          break;
        }
        case H_CHUNK_DATA: {
          d = this.takeBody(d);
          if (this.remaining === 0) {
            this.state = H_CHUNK_CRLF;
            this.crlf = 2;
          }
          break;
        }
        case H_CHUNK_CRLF: {
          const take = Math.min(this.crlf, d.length);
          this.crlf -= take;
          d = d.subarray(take);
          if (this.crlf === 0) this.state = H_CHUNK_SIZE;
          break;
        }
        case H_TRAILER: {
          // Lines until an empty one.
          const nl = d.indexOf(10);
          if (nl === -1) {
            this.line += d.latin1Slice(0, d.length);
            return;
          }
          const line = this.line + d.latin1Slice(0, nl);
          this.line = '';
          d = d.subarray(nl + 1);
          if (line === '' || line === '\r') {
            this.complete();
          }
          break;
        }
        case H_CLOSE:
          this.body(d);
          return;
      }
    }
  }

  close() {
    this.closed = true;
    this.socket.destroy();
  }
}

function reqHead(method, host, path, extra = '') {
  return Buffer.from(
    `${method} ${path} HTTP/1.1\r\nHost: ${host}:${T.upstreamPort}\r\nUser-Agent: airlock-bench\r\nAccept: */*\r\n` +
      `Authorization: Bearer ${T.token}\r\n${extra}\r\n`,
    'latin1',
  );
}

const HOST = spec.host ?? 'bench.test';
const GET_1K = reqHead('GET', HOST, '/1k');

async function openConn(host = HOST) {
  return new Conn(await openTls(host));
}

async function get(conn, buf) {
  const r = await conn.request(buf);
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.head.split('\r\n')[0]}`);
  return r;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/**
 * One timed loop per worker until `seconds` pass (or `maxRequests` in all): `one(worker)` makes a
 * request and throws to count an error; after one, `giveUp(worker, errors)` ends that loop.
 */
async function timedLoops({ workers, seconds, maxRequests = Infinity, label, one, giveUp }) {
  const lat = [];
  let errors = 0;
  let done = 0;
  const start = now();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let last = start;
  const loop = async (worker) => {
    while (done < maxRequests) {
      const t0 = now();
      if (t0 >= deadline) return;
      try {
        await one(worker);
      } catch (e) {
        errors++;
        if (errors <= 3) process.stderr.write(`${label}: ${e.message}\n`);
        if (giveUp(worker, errors)) return;
        continue;
      }
      last = now();
      lat.push(ms(t0, last));
      done++;
    }
  };
  await Promise.all(workers.map(loop));
  const elapsed = ms(start, last) / 1000;
  return { requests: done, errors, seconds: elapsed, rps: done / elapsed, latencyMs: summary(lat) };
}

function summary(values) {
  const s = Float64Array.from(values).sort();
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    mean: s.length ? sum / s.length : null,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    max: s.length ? s[s.length - 1] : null,
  };
}

async function openMany(n, parallel, host = HOST) {
  const conns = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      conns.push(await openConn(host));
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  return conns;
}

// ---- scenarios

const scenarios = {
  /** One GET /auth: which Authorization reached the upstream. */
  async probe() {
    const conn = await openConn();
    const body = [];
    const r = await conn.request(reqHead('GET', HOST, '/auth'), (d) => body.push(Buffer.from(d)));
    conn.close();
    return { status: r.status, auth: Buffer.concat(body).toString() };
  },

  /** Keep-alive GETs on `connections` connections for `seconds`. */
  async keepalive({ connections = 64, seconds = 5, maxRequests = Infinity }) {
    const conns = await openMany(connections, 16);
    const result = await timedLoops({
      workers: conns,
      seconds,
      maxRequests,
      label: 'keepalive',
      one: (conn) => get(conn, GET_1K),
      giveUp: (conn) => conn.closed,
    });
    for (const c of conns) c.close();
    return { connections, ...result };
  },

  /**
   * Keep-alive GETs as undici's ProxyAgent (or Agent, direct) makes them: `connections` pooled
   * connections, each one CONNECT + TLS (session resumption as undici does it), `connections`
   * requests in flight, back to back, with the headers undici sends for request().
   */
  async 'keepalive-undici'({ connections = 64, seconds = 5, maxRequests = Infinity }) {
    const undici = await import('undici');
    const ca = readFileSync(T.ca, 'utf8');
    const origin = `https://${HOST}:${T.upstreamPort}`;
    const dispatcher = T.direct
      ? new undici.Agent({
          connections,
          connect: {
            ca,
            // bench.test is 127.0.0.1 (no resolver entry); Node asks with or without `all`.
            lookup: (_h, o, cb) => (o?.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)),
          },
        })
      : new undici.ProxyAgent({
          uri: `http://${T.proxyHost}:${T.proxyPort}`,
          token: T.proxyAuth ?? undefined,
          connections,
          requestTls: { ca },
        });
    const headers = { authorization: `Bearer ${T.token}` };
    // fetch: undici's fetch() (what Node's global fetch is), with the headers it adds.
    const one = spec.fetch
      ? async () => {
          const r = await undici.fetch(`${origin}/1k`, { dispatcher, headers });
          const bytes = (await r.arrayBuffer()).byteLength;
          if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
          return bytes;
        }
      : async () => {
      const r = await undici.request(`${origin}/1k`, { dispatcher, headers });
      let bytes = 0;
      for await (const c of r.body) bytes += c.length;
      if (r.statusCode !== 200) throw new Error(`HTTP ${r.statusCode}`);
      return bytes;
    };
    // Open the pool's connections first (as openMany does for the raw client).
    await Promise.all(Array.from({ length: connections }, one));
    const result = await timedLoops({
      workers: Array.from({ length: connections }),
      seconds,
      maxRequests,
      label: 'keepalive-undici',
      one,
      giveUp: (_, errors) => errors > 1000,
    });
    await dispatcher.close();
    return { client: 'undici', connections, ...result };
  },

  /**
   * A real client run as its own process: `npm ci` of bench/npm-tree from the bench registry
   * (clean cache), `git clone` from the bench git server, or curl / Python requests making
   * keep-alive GETs. Wall time of the process, as a user would feel it.
   */
  async tool({ tool, connections = 1, requests = 1000, registryPort, gitPort, work }) {
    const { spawn } = await import('node:child_process');
    const { mkdirSync, rmSync, cpSync, mkdtempSync } = await import('node:fs');
    const { join, dirname } = await import('node:path');
    const { fileURLToPath } = await import('node:url');
    const bench = dirname(fileURLToPath(import.meta.url));
    const auth = T.proxyAuth ? Buffer.from(T.proxyAuth.replace(/^Basic /, ''), 'base64').toString() : null;
    const proxyUrl = T.direct ? null : `http://${auth ? auth.split(':').map(encodeURIComponent).join(':') + '@' : ''}${T.proxyHost}:${T.proxyPort}`;
    const clean = { ...process.env };
    // Each tool gets its proxy and the CA it must trust from the bench alone (this machine's
    // environment may point CA variables at the host bundle).
    const CA_VARS = /^(SSL_CERT_FILE|SSL_CERT_DIR|CURL_CA_BUNDLE|GIT_SSL_CAINFO|REQUESTS_CA_BUNDLE|NODE_EXTRA_CA_CERTS|PIP_CERT|HTTPLIB2_CA_CERTS)$/;
    for (const k of Object.keys(clean)) if (/^(https?|no|all)_proxy$/i.test(k) || /^npm_config_/i.test(k) || CA_VARS.test(k)) delete clean[k];
    const run = (cmd, args, opts = {}) =>
      new Promise((resolve, reject) => {
        const t0 = now();
        const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err = (err + d).slice(-3000)));
        child.once('error', reject);
        child.once('exit', (code) => {
          const seconds = ms(t0, now()) / 1000;
          if (code !== 0) reject(new Error(`${cmd} exited ${code}: ${err.trim().split('\n').slice(-4).join(' | ')}`));
          else resolve({ seconds, out });
        });
      });
    mkdirSync(work, { recursive: true });
    const dir = mkdtempSync(join(work, `${tool}-`));
    try {
      if (tool === 'npm') {
        for (const f of ['package.json', 'package-lock.json']) cpSync(join(bench, 'npm-tree', f), join(dir, f));
        const env = { ...clean, npm_config_cache: join(dir, 'cache'), npm_config_cafile: T.ca, npm_config_update_notifier: 'false' };
        if (proxyUrl) Object.assign(env, { HTTPS_PROXY: proxyUrl, https_proxy: proxyUrl, npm_config_https_proxy: proxyUrl, npm_config_proxy: proxyUrl });
        else env.NODE_OPTIONS = `--require ${join(bench, 'bench-names.cjs')}`;
        const r = await run('npm', ['ci', '--no-audit', '--no-fund', '--ignore-scripts', `--registry=https://registry.work.test:${registryPort}/`], { cwd: dir, env });
        return { tool, seconds: r.seconds };
      }
      if (tool === 'git') {
        const cfg = ['-c', `http.sslCAInfo=${T.ca}`, '-c', 'protocol.version=2'];
        if (proxyUrl) cfg.push('-c', `http.proxy=${proxyUrl}`);
        else cfg.push('-c', `http.curloptResolve=git.work.test:${gitPort}:127.0.0.1`);
        const env = { ...clean, GIT_CONFIG_NOSYSTEM: '1', HOME: dir, GIT_TERMINAL_PROMPT: '0' };
        const r = await run('git', [...cfg, 'clone', '-q', '--no-checkout', `https://git.work.test:${gitPort}/repo.git`, join(dir, 'clone')], { cwd: dir, env });
        return { tool, seconds: r.seconds };
      }
      const url = `https://${HOST}:${T.upstreamPort}/1k`;
      if (tool === 'curl') {
        // One curl process, `requests` URLs over `connections` keep-alive connections.
        const lines = [`header = "Authorization: Bearer ${T.token}"`, `cacert = "${T.ca}"`, 'silent'];
        if (proxyUrl) lines.push(`proxy = "${proxyUrl}"`);
        else lines.push(`resolve = "${HOST}:${T.upstreamPort}:127.0.0.1"`);
        if (connections > 1) lines.push('parallel', `parallel-max = ${connections}`);
        for (let i = 0; i < requests; i++) lines.push(`url = "${url}"`, 'output = "/dev/null"');
        const { writeFileSync } = await import('node:fs');
        writeFileSync(join(dir, 'curl.cfg'), lines.join('\n') + '\n');
        const r = await run('curl', ['--config', join(dir, 'curl.cfg'), '--fail', '--write-out', '%{http_code} %{num_connects} %{time_total}\n'], { env: clean });
        const codes = r.out.trim().split('\n');
        const bad = codes.filter((l) => !l.startsWith('200 ')).length;
        if (bad) throw new Error(`curl: ${bad} of ${codes.length} requests not 200`);
        const connects = codes.reduce((a, l) => a + Number(l.split(' ')[1]), 0);
        // Each request's own time as curl measured it: the wall-time mean above also carries the
        // process start and any stall of a proxy that is still warming up; the p50 does not.
        const each = codes.map((l) => Number(l.split(' ')[2]) * 1000).sort((a, b) => a - b);
        const at = (q) => each[Math.min(each.length - 1, Math.floor(each.length * q))];
        return { tool, connections, requests, connects, seconds: r.seconds, rps: requests / r.seconds, latencyMs: { p50: at(0.5), p99: at(0.99) } };
      }
      if (tool === 'python') {
        // requests: one Session per thread (its pool keeps the connection alive), `connections` threads.
        const script = `
import json, socket, sys, threading, time, requests
spec = json.loads(sys.argv[1])
if spec["direct"]:
    real = socket.getaddrinfo
    socket.getaddrinfo = lambda h, *a, **k: real("127.0.0.1" if h.endswith(".test") else h, *a, **k)
proxies = {"https": spec["proxy"]} if spec["proxy"] else {}
n, c = spec["requests"], spec["connections"]
lat = []
errors = [0]
def worker(count):
    s = requests.Session()
    s.trust_env = False
    s.get(spec["url"], headers=spec["headers"], proxies=proxies, verify=spec["ca"]).content
    barrier.wait()
    for _ in range(count):
        t = time.perf_counter()
        r = s.get(spec["url"], headers=spec["headers"], proxies=proxies, verify=spec["ca"])
        r.content
        if r.status_code != 200: errors[0] += 1
        lat.append((time.perf_counter() - t) * 1000)
barrier = threading.Barrier(c + 1)
threads = [threading.Thread(target=worker, args=(n // c,)) for _ in range(c)]
for t in threads: t.start()
barrier.wait()
t0 = time.perf_counter()
for t in threads: t.join()
secs = time.perf_counter() - t0
lat.sort()
print(json.dumps({"requests": len(lat), "errors": errors[0], "seconds": secs, "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)]}))
`;
        const arg = JSON.stringify({ direct: !!T.direct, proxy: proxyUrl, url, ca: T.ca, requests, connections, headers: { Authorization: `Bearer ${T.token}` } });
        const r = await run('python3', ['-c', script, arg], { env: clean });
        const res = JSON.parse(r.out.trim().split('\n').pop());
        if (res.errors) throw new Error(`python: ${res.errors} requests not 200`);
        return { tool, connections, requests: res.requests, seconds: res.seconds, rps: res.requests / res.seconds, latencyMs: { p50: res.p50, p99: res.p99 } };
      }
      throw new Error(`unknown tool ${tool}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },

  /** A new connection (CONNECT + TLS) per request, `concurrency` loops for `seconds`. */
  async newconn({ concurrency = 16, seconds = 5 }) {
    const buf = reqHead('GET', HOST, '/1k', 'Connection: close\r\n');
    const result = await timedLoops({
      workers: Array.from({ length: concurrency }),
      seconds,
      label: 'newconn',
      // Closing is part of the request, as a client that does not keep connections pays it.
      one: async () => {
        let conn;
        try {
          conn = await openConn();
          await get(conn, buf);
        } finally {
          conn?.close();
        }
      },
      giveUp: (_, errors) => errors > 1000,
    });
    return { concurrency, ...result };
  },

  async download({ bytes = 100 * 1024 * 1024 }) {
    const conn = await openConn();
    await get(conn, GET_1K); // the tunnel is up and warm
    const t0 = now();
    const r = await get(conn, reqHead('GET', HOST, `/download/${bytes}`));
    const seconds = ms(t0, now()) / 1000;
    conn.close();
    if (r.bytes !== bytes) throw new Error(`download: got ${r.bytes} of ${bytes} bytes`);
    return { bytes, seconds, mibps: bytes / 1048576 / seconds };
  },

  async upload({ bytes = 100 * 1024 * 1024 }) {
    const conn = await openConn();
    await get(conn, GET_1K);
    const chunk = Buffer.alloc(64 * 1024, 'u');
    const body = [];
    const t0 = now();
    const response = conn.begin(
      reqHead('POST', HOST, '/upload', `Content-Type: application/octet-stream\r\nContent-Length: ${bytes}\r\n`),
      (d) => body.push(Buffer.from(d)),
    );
    let early = null; // the proxy may answer (or reset) before the body is sent
    response.catch((e) => (early = e));
    let left = bytes;
    const s = conn.socket;
    while (left > 0) {
      if (early || conn.closed) throw new Error(`upload: connection failed after ${bytes - left} bytes sent: ${early?.message ?? 'closed'}`);
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        await new Promise((resolve, reject) => {
          const onClose = () => reject(new Error(`upload: connection closed after ${bytes - left} bytes sent`));
          s.once('close', onClose);
          s.once('drain', () => {
            s.off('close', onClose);
            resolve();
          });
        });
      }
    }
    const r = await response;
    const seconds = ms(t0, now()) / 1000;
    conn.close();
    if (r.status !== 200) throw new Error(`upload: HTTP ${r.status}`);
    const got = JSON.parse(Buffer.concat(body).toString()).bytes;
    if (got !== bytes) throw new Error(`upload: upstream got ${got} of ${bytes} bytes`);
    return { bytes, seconds, mibps: bytes / 1048576 / seconds };
  },

  /** First request (new connection) to each of `hosts`, interleaved with one to the known host. */
  async newhosts({ hosts }) {
    const fresh = [];
    const known = [];
    let errors = 0;
    const once = async (host) => {
      const t0 = now();
      const conn = await openConn(host);
      await get(conn, reqHead('GET', host, '/1k', 'Connection: close\r\n'));
      const t = ms(t0, now());
      conn.close();
      return t;
    };
    await once(HOST); // the known host is known
    for (const host of hosts) {
      try {
        fresh.push(await once(host));
        known.push(await once(HOST));
      } catch (e) {
        errors++;
        if (errors <= 3) process.stderr.write(`newhosts ${host}: ${e.message}\n`);
      }
    }
    return { hosts: hosts.length, errors, newHostMs: summary(fresh), knownHostMs: summary(known) };
  },

  /** `streams` SSE streams of `events` events `intervalMs` apart; per-event delay in ms. */
  async sse({ streams = 3, events = 100, intervalMs = 10, llm = false }) {
    const conn = await openConn();
    await get(conn, GET_1K);
    const delays = [];
    // llm: time from sending the request to the first event (a model's stream starts at once).
    const firstEvent = [];
    // The slowest events, with where they fell in their stream (the tail is what p99 shows).
    const worst = [];
    let received = 0;
    for (let i = 0; i < streams; i++) {
      let text = '';
      let index = 0;
      const sent = now();
      const r = await conn.request(reqHead('GET', HOST, `/sse?n=${events}&ms=${intervalMs}${llm ? '&llm=1' : ''}`), (d) => {
        const at = now();
        if (index === 0 && firstEvent.length === i) firstEvent.push(ms(sent, at));
        text += d.latin1Slice(0, d.length);
        let end;
        while ((end = text.indexOf('\n\n')) !== -1) {
          const event = text.slice(0, end);
          text = text.slice(end + 2);
          const m = /(?:^|\n)data: (\d+)/.exec(event);
          if (m) {
            const delay = ms(BigInt(m[1]), at);
            delays.push(delay);
            worst.push({ stream: i, event: index++, ms: delay });
            worst.sort((a, b) => b.ms - a.ms);
            if (worst.length > 5) worst.pop();
            received++;
          }
        }
      });
      if (r.status !== 200) throw new Error(`sse: HTTP ${r.status}`);
    }
    conn.close();
    if (received !== streams * events) throw new Error(`sse: got ${received} of ${streams * events} events`);
    return { streams, events, delayMs: summary(delays), firstEventMs: llm ? summary(firstEvent) : undefined, worst };
  },

  /** Opens `count` tunnels with one GET each, holds them until a line on stdin, then closes. */
  async idle({ count = 1000, parallel = 32 }) {
    const t0 = now();
    const conns = [];
    let errors = 0;
    let next = 0;
    const worker = async () => {
      while (next < count) {
        next++;
        try {
          const c = await openConn();
          await get(c, GET_1K);
          conns.push(c);
        } catch (e) {
          errors++;
          if (errors <= 3) process.stderr.write(`idle: ${e.message}\n`);
        }
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    const openSeconds = ms(t0, now()) / 1000;
    process.stdout.write(JSON.stringify({ event: 'holding', open: conns.length }) + '\n');
    await new Promise((resolve) => {
      const rl = createInterface({ input: process.stdin });
      rl.once('line', () => {
        rl.close();
        resolve();
      });
      rl.once('close', resolve);
    });
    const alive = conns.filter((c) => !c.closed).length;
    for (const c of conns) c.close();
    return { count, open: conns.length, aliveAtRelease: alive, errors, openSeconds };
  },
};

const fn = scenarios[spec.scenario];
if (!fn) throw new Error(`unknown scenario ${spec.scenario}`);
fn(spec).then(
  (result) => {
    process.stdout.write(JSON.stringify({ ok: true, result }) + '\n');
    process.exit(0);
  },
  (err) => {
    process.stdout.write(JSON.stringify({ ok: false, error: err.message }) + '\n');
    process.exit(1);
  },
);
