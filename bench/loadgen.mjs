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
    const lat = [];
    let errors = 0;
    let done = 0;
    const start = now();
    const deadline = start + BigInt(Math.round(seconds * 1e9));
    let last = start;
    const loop = async (conn) => {
      while (done < maxRequests) {
        const t0 = now();
        if (t0 >= deadline) return;
        try {
          await get(conn, GET_1K);
        } catch (e) {
          errors++;
          if (errors <= 3) process.stderr.write(`keepalive: ${e.message}\n`);
          if (conn.closed) return;
          continue;
        }
        last = now();
        lat.push(ms(t0, last));
        done++;
      }
    };
    await Promise.all(conns.map(loop));
    for (const c of conns) c.close();
    const elapsed = ms(start, last) / 1000;
    return { connections, requests: done, errors, seconds: elapsed, rps: done / elapsed, latencyMs: summary(lat) };
  },

  /** A new connection (CONNECT + TLS) per request, `concurrency` loops for `seconds`. */
  async newconn({ concurrency = 16, seconds = 5 }) {
    const buf = reqHead('GET', HOST, '/1k', 'Connection: close\r\n');
    const lat = [];
    let errors = 0;
    let done = 0;
    const start = now();
    const deadline = start + BigInt(Math.round(seconds * 1e9));
    let last = start;
    const loop = async () => {
      for (;;) {
        const t0 = now();
        if (t0 >= deadline) return;
        let conn;
        try {
          conn = await openConn();
          await get(conn, buf);
        } catch (e) {
          errors++;
          if (errors <= 3) process.stderr.write(`newconn: ${e.message}\n`);
          conn?.close();
          if (errors > 1000) return;
          continue;
        }
        conn.close();
        last = now();
        lat.push(ms(t0, last));
        done++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    const elapsed = ms(start, last) / 1000;
    return { concurrency, requests: done, errors, seconds: elapsed, rps: done / elapsed, latencyMs: summary(lat) };
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
  async sse({ streams = 3, events = 100, intervalMs = 10 }) {
    const conn = await openConn();
    await get(conn, GET_1K);
    const delays = [];
    // The slowest events, with where they fell in their stream (the tail is what p99 shows).
    const worst = [];
    let received = 0;
    for (let i = 0; i < streams; i++) {
      let text = '';
      let index = 0;
      const r = await conn.request(reqHead('GET', HOST, `/sse?n=${events}&ms=${intervalMs}`), (d) => {
        const at = now();
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
    return { streams, events, delayMs: summary(delays), worst };
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
