#!/usr/bin/env node
// Bench upstream: one HTTPS server in its own process, answering for bench.test and *.bench.test.
//   node bench/upstream.mjs --cert FILE --key FILE [--host 127.0.0.1] [--port 0]
// Prints "READY <port>" on stdout once listening. Routes:
//   GET  /1k                 1024-byte body, Content-Length
//   GET  /download/<bytes>   streamed body of that many bytes, Content-Length, with backpressure
//   POST /upload             consumes the body, answers {"bytes": N}
//   GET  /sse?n=100&ms=10    text/event-stream (chunked): n events, ms apart (llm=1: chat-completion
//                            chunks, ~230 bytes, the first at once); each event's data starts with
//                            process.hrtime.bigint() at send (CLOCK_MONOTONIC, comparable across
//                            processes on one machine), so the client can compute per-event delay
//   GET  /auth               says which Authorization arrived: "secret" (the value of
//                            $AIRLOCK_BENCH_SECRET, i.e. swapped in by a credential broker),
//                            "other" or "none"; used to verify the credential swap
import https from 'node:https';
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? dflt : args[i + 1];
};

const ONE_K = Buffer.alloc(1024, 'a');
/**
 * Download bodies: pseudo-random bytes from a fixed seed, like the compressed archives and images
 * large downloads mostly are. Not a run of one byte: Airlock scans response bodies for echoed
 * secrets with Buffer.indexOf, whose Boyer-Moore-Horspool search crawls through a run of a byte
 * that sits near the end of the needle (~4 ms per MiB instead of ~0.16), so with the bench's
 * random secret a constant body made every tenth run or so a test of that worst case
 * (bench/README.md, Caveats).
 */
const CHUNK = Buffer.alloc(64 * 1024);
for (let i = 0, x = 0x9e3779b9; i < CHUNK.length; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  CHUNK[i] = x & 0xff;
}
const TOKENS = [' the', ' proxy', ' forwards', ' each', ' event', ' as', ' it', ' arrives', ',', ' so', ' a', ' model', "'s", ' answer', ' streams', ' token', ' by', ' token', '.', '\\n'];
const SECRET = process.env.AIRLOCK_BENCH_SECRET ? `Bearer ${process.env.AIRLOCK_BENCH_SECRET}` : null;

const server = https.createServer(
  {
    key: readFileSync(opt('key')),
    cert: readFileSync(opt('cert')),
    keepAliveTimeout: 120_000,
    headersTimeout: 60_000,
    requestTimeout: 0,
  },
  (req, res) => {
    const url = req.url ?? '/';
    if (url === '/1k') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': 1024 });
      res.end(ONE_K);
      req.resume();
      return;
    }
    if (url.startsWith('/download/')) {
      const total = Number(url.slice('/download/'.length));
      if (!Number.isSafeInteger(total) || total < 0) return fail(res, 400);
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': total });
      let left = total;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, CHUNK.length);
          left -= n;
          const more = res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
          if (!more) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('close', () => (left = 0));
      pump();
      req.resume();
      return;
    }
    if (url === '/upload') {
      let bytes = 0;
      req.on('data', (c) => (bytes += c.length));
      req.on('end', () => {
        const body = JSON.stringify({ bytes });
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      });
      return;
    }
    if (url.startsWith('/sse')) {
      const q = new URLSearchParams(url.split('?')[1] ?? '');
      const n = Math.min(Number(q.get('n') ?? 100), 10_000);
      const ms = Math.min(Number(q.get('ms') ?? 10), 10_000);
      // llm=1: each event shaped like a chat-completion chunk (~230 bytes of JSON carrying a token),
      // the first one at once, as a model's stream starts.
      const llm = q.get('llm') === '1';
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      res.flushHeaders();
      let i = 0;
      const tick = () => {
        if (res.destroyed) return;
        res.write(
          llm
            ? `data: ${process.hrtime.bigint()} {"id":"chatcmpl-bench0000000000000000000","object":"chat.completion.chunk","created":1764633600,"model":"bench-model-2026-01-01","choices":[{"index":0,"delta":{"content":"${TOKENS[i % TOKENS.length]}"},"finish_reason":null}]}\n\n`
            : `id: ${i}\ndata: ${process.hrtime.bigint()}\n\n`,
        );
        if (++i >= n) return void res.end();
        timer = setTimeout(tick, ms);
      };
      let timer = setTimeout(tick, llm ? 0 : ms);
      res.on('close', () => clearTimeout(timer));
      req.resume();
      return;
    }
    if (url === '/auth') {
      const auth = req.headers.authorization;
      const body = auth === undefined ? 'none' : SECRET !== null && auth === SECRET ? 'secret' : 'other';
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
      res.end(body);
      req.resume();
      return;
    }
    fail(res, 404);
    req.resume();
  },
);

function fail(res, status) {
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': 0 });
  res.end();
}

server.on('clientError', (_err, socket) => socket.destroy());
server.listen({ host: opt('host', '127.0.0.1'), port: Number(opt('port', '0')), backlog: 4096 }, () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
const stop = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
