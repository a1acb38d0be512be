// The view's server from a client's side, without a browser: who gets in (token → cookie, Host,
// Origin), what every answer carries (CSP), and the event stream's resume points.
import http from 'node:http';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startView } from '../../src/view/server.js';
import type { ViewServer } from '../../src/view/server.js';
import { cookieValue, isLoopback, writeRefusal, viewHosts } from '../../src/view/access.js';
import { AuditFeed, sseEvents } from '../../src/view/feed.js';
import type { ViewSession } from '../../src/view/source.js';
import { operatorInbox } from '../../src/view/runtime-view.js';
import { Inbox } from '../../src/sessions/inbox.js';
import { ApprovalError } from '../../src/sessions/approve.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import { rmTmp, tmpDir } from '../helpers/servers.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string; until?: RegExp } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        // An event stream never ends: stop once what the test waits for has come.
        if (opts.until?.test(body)) {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
          res.destroy();
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const line = (i: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ time: `2026-01-01T00:00:${String(i % 60).padStart(2, '0')}.000Z`, session: 's-test-view', id: `r${i}`, kind: 'request', method: 'GET', scheme: 'https', host: 'api.example.test', port: 443, path: `/p/${i}`, status: 200, action: 'allow', rule: 'allow[0] api.example.test', reason: 'allowed', credentials: [], bytes_up: 0, bytes_down: 1, duration_ms: 1, ...extra }) + '\n';

/** A reload that failed: the page shows it in a banner. */
const STATUS = { version: 'sha256:0123abcd', loadedAt: '2026-01-01T00:00:00.000Z', error: 'p.yaml:3: allow[0].host: "" is not a host' };

/** The log's first lines: two allowed, one denied. */
const written = [line(0), line(1), line(2, { action: 'deny', status: 403, rule: null, reason: 'no_rule', host: 'denied.example.test' })];

describe('the view server', () => {
  let dir: string;
  let audit: string;
  let view: ViewServer;
  let port: number;
  let cookie: string;
  let ended = false;
  const queued = new Inbox({ sessionExists: () => true });
  const session = (): ViewSession => ({ id: 's-test-view', policy: 'p', created: '2026-01-01T00:00:00.000Z', auditFile: audit, rules: [{ label: 'allow[0] api.example.test', inspect: true }, { label: 'allow[1] unused.example.test', inspect: true }], policyStatus: STATUS });

  beforeAll(async () => {
    dir = tmpDir();
    mkdirSync(join(dir, 's'));
    audit = join(dir, 's', 'audit.jsonl');
    writeFileSync(audit, written.join(''));
    // The proxy's inbox holding the denied line; this server has no policy file to approve into.
    queued.noteAudit(JSON.parse(written[2]!) as AuditEntry);
    const inbox = operatorInbox({
      list: async () => queued.list(),
      plan: () => Promise.reject(new ApprovalError('session s-test-view follows no policy file', 409)),
      approve: () => Promise.reject(new ApprovalError('session s-test-view follows no policy file', 409)),
      deny: async (id) => queued.settle(id, 'dismissed'),
    });
    view = await startView({ host: '127.0.0.1', port: 0, sessions: { list: async () => (ended ? [] : [session()]) }, inbox, token: 'the-view-token' });
    port = view.address.port;
    const traded = await request(port, '/?token=the-view-token', { headers: { Host: `127.0.0.1:${port}` } });
    cookie = String(traded.headers['set-cookie']?.[0]).split(';')[0]!;
  });

  afterAll(async () => {
    await view?.close();
    rmTmp(dir);
  });

  const host = () => ({ Host: `127.0.0.1:${port}` });

  it('listens on loopback only', async () => {
    await expect(startView({ host: '0.0.0.0', port: 0, sessions: { list: async () => [] }, inbox: operatorInbox({ list: async () => [], plan: () => Promise.reject(new Error()), approve: () => Promise.reject(new Error()), deny: async () => false }) })).rejects.toThrow(/loopback only/);
    expect(isLoopback('127.0.0.1')).toBe(true);
    expect(isLoopback('::1')).toBe(true);
    expect(isLoopback('192.168.1.2')).toBe(false);
    expect(isLoopback('::ffff:127.0.0.1')).toBe(false);
  });

  it('trades the token for an HttpOnly SameSite=Strict cookie and a redirect that drops it from the URL', async () => {
    const res = await request(port, '/?token=the-view-token', { headers: host() });
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/');
    const set = String(res.headers['set-cookie']);
    expect(set).toMatch(/; HttpOnly/);
    expect(set).toMatch(/; SameSite=Strict/);
    expect(set).not.toContain('the-view-token');
    expect((await request(port, '/?token=wrong', { headers: host() })).status).toBe(403);
    expect((await request(port, '/', { headers: host() })).status).toBe(401);
    expect((await request(port, '/api/sessions', { headers: host() })).status).toBe(401);
    expect((await request(port, '/api/sessions', { headers: { ...host(), Cookie: `${cookie}x` } })).status).toBe(401);
    // Another view's cookie (another port) is not this one's.
    expect((await request(port, '/api/sessions', { headers: { ...host(), Cookie: cookie.replace(/^airlock_view_\d+/, 'airlock_view_1') } })).status).toBe(401);
    expect((await request(port, '/api/sessions', { headers: { ...host(), Cookie: cookie } })).status).toBe(200);
  });

  it('answers only to its loopback Host names (DNS rebinding), the token and the cookie notwithstanding', async () => {
    for (const name of ['attacker.example', `attacker.example:${port}`, `127.0.0.1:${port + 1}`, '127.0.0.1', `127.0.0.2:${port}`]) {
      expect((await request(port, '/?token=the-view-token', { headers: { Host: name } })).status, name).toBe(421);
      expect((await request(port, '/api/sessions', { headers: { Host: name, Cookie: cookie } })).status, name).toBe(421);
    }
    expect((await request(port, '/api/sessions', { headers: { Host: `localhost:${port}`, Cookie: cookie } })).status).toBe(200);
  });

  it('serves a page with a strict CSP and no inline script or style', async () => {
    const page = await request(port, '/', { headers: { ...host(), Cookie: cookie } });
    expect(page.status).toBe(200);
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    // Every script is a file; no style element or attribute, no inline handler.
    for (const tag of page.body.match(/<script\b[^>]*>/g) ?? []) expect(tag).toMatch(/\bsrc="\/app\.js"/);
    expect(page.body).not.toMatch(/<script\b[^>]*>[^<\s]/);
    expect(page.body).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
    for (const path of ['/app.js', '/app.css', '/api/sessions', '/api/inbox']) {
      const res = await request(port, path, { headers: { ...host(), Cookie: cookie } });
      expect(res.status, path).toBe(200);
      expect(res.headers['content-security-policy'], path).toBe(csp);
    }
    // The script never parses markup out of data.
    const script = (await request(port, '/app.js', { headers: { ...host(), Cookie: cookie } })).body;
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
  });

  it('refuses a write without the view as its Origin', async () => {
    const id = ((await request(port, '/api/inbox', { headers: { ...host(), Cookie: cookie } }).then((r) => JSON.parse(r.body))) as { id: string }[])[0]!.id;
    const post = (headers: Record<string, string>) => request(port, `/api/inbox/${id}/dismiss`, { method: 'POST', headers: { ...host(), Cookie: cookie, ...headers }, body: '{}' });
    expect((await post({})).status).toBe(403); // says neither where it came from
    expect((await post({ Origin: 'http://attacker.example' })).status).toBe(403);
    expect((await post({ Origin: `http://127.0.0.1:${port + 1}` })).status).toBe(403);
    expect((await post({ Origin: 'null' })).status).toBe(403);
    expect((await post({ 'Sec-Fetch-Site': 'same-site' })).status).toBe(403);
    expect((await post({ 'Sec-Fetch-Site': 'cross-site', Origin: `http://127.0.0.1:${port}` })).status).toBe(403);
    expect((await post({ Origin: `http://127.0.0.1:${port}`, 'Sec-Fetch-Site': 'same-origin' })).status).toBe(200);
    expect(writeRefusal({ 'sec-fetch-site': 'same-origin' }, viewHosts('127.0.0.1', port))).toBeNull();
    expect(writeRefusal({ origin: `http://[::1]:${port}` }, viewHosts('::1', port))).toBeNull();
    expect(cookieValue('a=1; airlock_view_5=xyz; b=2', 'airlock_view_5')).toBe('xyz');
  });

  it('streams events whose ids are byte offsets, and resumes after a Last-Event-ID without loss or repeat', async () => {
    const headers = { ...host(), Cookie: cookie };
    const first = await request(port, '/api/sessions/s-test-view/events', { headers, until: /"id":"r2"/ });
    expect(first.headers['content-type']).toMatch(/^text\/event-stream/);
    const ids = [...first.body.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids).toEqual([1, 2, 3].map((n) => Buffer.byteLength(written.slice(0, n).join(''))));
    appendFileSync(audit, line(3) + line(4));
    const resumed = await request(port, '/api/sessions/s-test-view/events', { headers: { ...headers, 'Last-Event-ID': String(ids[0]) }, until: /"id":"r4"/ });
    expect([...resumed.body.matchAll(/"id":"(r\d)"/g)].map((m) => m[1])).toEqual(['r1', 'r2', 'r3', 'r4']);
    // An id that is no line boundary of this log (a stale or forged one): the recent lines instead.
    const forged = await request(port, '/api/sessions/s-test-view/events?lastEventId=5', { headers, until: /"id":"r4"/ });
    expect([...forged.body.matchAll(/"id":"(r\d)"/g)].map((m) => m[1])).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
    expect((await request(port, '/api/sessions/s-nope-nope/events', { headers })).status).toBe(404);
    expect((await request(port, '/api/sessions/..%2f..%2fetc/events', { headers })).status).toBe(404);
  });

  it('counts rule hits (rules never hit included); the inbox is the proxy inbox, its refusals shown as it words them', async () => {
    const headers = { ...host(), Cookie: cookie };
    const [s] = JSON.parse((await request(port, '/api/sessions', { headers })).body) as { rules: { label: string; hits: number }[]; policyStatus: unknown }[];
    expect(s!.policyStatus).toEqual(STATUS);
    expect(s!.rules).toEqual([
      { label: 'allow[0] api.example.test', hits: 4 },
      { label: 'allow[1] unused.example.test', hits: 0 },
    ]);
    const inboxNow = async () => JSON.parse((await request(port, '/api/inbox', { headers })).body) as { id: string; host: string; count: number }[];
    // Dismissed by the write test above; a refusal of another path is a new item.
    expect(await inboxNow()).toEqual([]);
    queued.noteAudit(JSON.parse(line(5, { action: 'deny', status: 403, rule: null, reason: 'no_rule', host: 'denied.example.test' })) as AuditEntry);
    const inbox = await inboxNow();
    expect(inbox.map((i) => [i.host, i.count])).toEqual([['denied.example.test', 1]]);
    const post = (path: string) => request(port, path, { method: 'POST', headers: { ...headers, Origin: `http://127.0.0.1:${port}` } });
    const preview = await post(`/api/inbox/${inbox[0]!.id}/preview`);
    expect(preview.status).toBe(409);
    expect(JSON.parse(preview.body)).toEqual({ error: 'session s-test-view follows no policy file' });
    // Confirming a change that was never shown is refused before the proxy is asked.
    expect((await post(`/api/inbox/${inbox[0]!.id}/approve`)).status).toBe(409);
  });

  it('keeps listing a session that ended, with its counts', async () => {
    ended = true;
    try {
      const [s] = JSON.parse((await request(port, '/api/sessions', { headers: { ...host(), Cookie: cookie } })).body) as { id: string; live: boolean; totals: { allow: number } }[];
      expect(s).toMatchObject({ id: 's-test-view', live: false, totals: { allow: 4 } });
    } finally {
      ended = false;
    }
  });
});

describe('audit lines as server-sent events', () => {
  it('one event per complete line, its id the offset just past it; a partial line waits', () => {
    const text = Buffer.from('{"a":1}\n{"b":"é"}\n{"c":');
    expect(sseEvents(text, 100)).toBe(`id: 108\ndata: {"a":1}\n\nid: ${108 + Buffer.byteLength('{"b":"é"}\n')}\ndata: {"b":"é"}\n\n`);
    expect(sseEvents(text, 0, 1)).toBe(`id: ${8 + Buffer.byteLength('{"b":"é"}\n')}\ndata: {"b":"é"}\n\n`);
  });

  it('reads a log only when asked, and only what was appended', () => {
    const dir = tmpDir();
    try {
      const file = join(dir, 'audit.jsonl');
      const feed = new AuditFeed('s-x', file);
      feed.catchUp(); // not there yet
      writeFileSync(file, line(0) + line(1, { action: 'deny', rule: null }).slice(0, 20));
      feed.catchUp();
      expect(feed.totals).toEqual({ allow: 1, deny: 0, would_deny: 0 });
      appendFileSync(file, line(1, { action: 'deny', rule: null }).slice(20));
      feed.catchUp();
      expect(feed.totals).toEqual({ allow: 1, deny: 1, would_deny: 0 });
      // A path that spells out other fields is counted by the line's own fields.
      appendFileSync(file, line(2, { path: '/"action":"deny","kind":"tunnel","rule":"allow[9] forged"' }));
      feed.catchUp();
      expect(feed.totals).toEqual({ allow: 2, deny: 1, would_deny: 0 });
      expect([...feed.ruleHits]).toEqual([['allow[0] api.example.test', 2]]);
      feed.close();
    } finally {
      rmTmp(dir);
    }
  });

  it('a page too far behind gets a gap event and the recent lines, not megabytes of history', () => {
    const dir = tmpDir();
    try {
      const file = join(dir, 'audit.jsonl');
      const first = line(0);
      const rest = Array.from({ length: 30_000 }, (_, i) => line(i + 1)).join('');
      writeFileSync(file, first + rest);
      expect(rest.length).toBeGreaterThan(4 << 20);
      const feed = new AuditFeed('s-x', file);
      let got = '';
      const stop = feed.subscribe({ write: (c) => void (got += c), backlog: 0, end: () => {} }, Buffer.byteLength(first));
      expect(got).toMatch(/^retry: 1000\n\nevent: gap\ndata: \{"skipped_bytes":\d+\}\n\n/);
      expect(got.match(/^id: /gm)).toHaveLength(1000);
      // The rest of the log follows as the live stream catches up.
      feed.catchUp();
      expect(got).toContain('"id":"r30000"');
      stop();
      feed.close();
    } finally {
      rmTmp(dir);
    }
  });
});
