#!/usr/bin/env node
// Bench-only: what a live-view page does to the proxy, without a browser. Trades the printed
// token for the view's cookie, then follows one session's events and drops them (counting
// bytes), reconnecting as a browser's EventSource would.
//   node bench/view-follower.mjs VIEW_URL_WITH_TOKEN SESSION_ID
import http from 'node:http';

const [viewUrl, sessionId] = process.argv.slice(2);
const url = new URL(viewUrl);
const get = (path, headers = {}) =>
  new Promise((resolve, reject) => {
    const req = http.get({ host: url.hostname, port: url.port, path, headers: { host: url.host, ...headers } }, resolve);
    req.on('error', reject);
  });

const login = await get(`/?token=${encodeURIComponent(url.searchParams.get('token') ?? '')}`);
login.resume();
const cookie = String(login.headers['set-cookie'] ?? '').split(';')[0];
if (login.statusCode !== 303 || !cookie) {
  process.stderr.write(`view-follower: login answered ${login.statusCode}\n`);
  process.exit(1);
}
let bytes = 0;
let lastId = '';
// What it received, so a run shows the view really streamed.
process.once('SIGTERM', () => {
  process.stderr.write(`view-follower: ${bytes} bytes of events received\n`);
  process.exit(0);
});
for (;;) {
  const res = await get(`/api/sessions/${sessionId}/events`, { cookie, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) });
  if (res.statusCode !== 200) {
    process.stderr.write(`view-follower: events answered ${res.statusCode}\n`);
    process.exit(1);
  }
  res.setEncoding('utf8');
  for await (const chunk of res) {
    bytes += chunk.length;
    const ids = chunk.match(/^id: *(\d+)$/gm);
    if (ids) lastId = ids[ids.length - 1].replace(/^id: */, '');
  }
}
