#!/usr/bin/env node
// Bench git server: Debian's `git http-backend` (CGI) behind one Node HTTPS server, for the clone
// scenario. Serves the repositories under --root (read-only: upload-pack only).
//   node bench/git-server.mjs --cert FILE --key FILE --root DIR
// Prints "READY <port>" when listening.
import https from 'node:https';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name) => args[args.indexOf(`--${name}`) + 1];
const root = opt('root');

const server = https.createServer({ key: readFileSync(opt('key')), cert: readFileSync(opt('cert')), keepAliveTimeout: 60_000 }, (req, res) => {
  const url = new URL(req.url ?? '/', 'https://git.work.test');
  const env = {
    PATH: process.env.PATH,
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    GIT_CONFIG_NOSYSTEM: '1',
    HOME: root,
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    REQUEST_METHOD: req.method ?? 'GET',
    CONTENT_TYPE: req.headers['content-type'] ?? '',
    REMOTE_ADDR: '127.0.0.1',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_PROTOCOL: 'HTTP/1.1',
  };
  if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
  if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
  if (req.headers['git-protocol']) env.GIT_PROTOCOL = String(req.headers['git-protocol']);
  const cgi = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  cgi.stderr.on('data', (c) => (stderr += c));
  cgi.stdin.on('error', () => {});
  req.pipe(cgi.stdin);
  let head = Buffer.alloc(0);
  let started = false;
  cgi.stdout.on('data', (chunk) => {
    if (started) {
      if (!res.write(chunk)) {
        cgi.stdout.pause();
        res.once('drain', () => cgi.stdout.resume());
      }
      return;
    }
    head = Buffer.concat([head, chunk]);
    const crlf = head.indexOf('\r\n\r\n');
    const lf = head.indexOf('\n\n');
    const [end, sep] = lf !== -1 && (crlf === -1 || lf < crlf) ? [lf, 2] : [crlf, 4];
    if (end === -1) return;
    started = true;
    let status = 200;
    const headers = {};
    for (const line of head.subarray(0, end).toString('latin1').split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number(value.slice(0, 3));
      else headers[name] = value;
    }
    res.writeHead(status, headers);
    const rest = head.subarray(end + sep);
    if (rest.length) res.write(rest);
  });
  cgi.on('close', (code) => {
    if (!started) {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`git http-backend exited ${code}: ${stderr}\n`);
    } else res.end();
  });
  res.on('close', () => cgi.exitCode === null && cgi.kill('SIGTERM'));
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`READY ${server.address().port}\n`));
const stop = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
