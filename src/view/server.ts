// The live view's HTTP server: the page (HTML, JS and CSS served as files, under a strict CSP), a
// JSON API over the sessions, their rules and the inbox, each session's audit log as server-sent
// events and as a JSONL download. Loopback only; see access.ts for who may use it.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { cookieValue, isLoopback, sameBytes, SECURITY_HEADERS, viewHosts, writeRefusal } from './access.js';
import { Feeds } from './feeds.js';
import type { KnownSession } from './feeds.js';
import type { AuditFeed } from './feed.js';
import { InboxError } from './source.js';
import type { InboxSource, SessionSource } from './source.js';

export interface ViewOptions {
  /** A loopback address. */
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly sessions: SessionSource;
  /** The proxy's inbox of denials and access requests, with approve and dismiss. */
  readonly inbox: InboxSource;
  /** Default: a fresh random token. */
  readonly token?: string;
}

export interface ViewServer {
  /** The URL to open, token included: print it, never log it elsewhere. */
  readonly url: string;
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/**
 * The page's files, read once; served only by these names. Named from the folder above, so the
 * path is right both here (src/view, dist/view) and in the CLI bundle's chunks (dist/cli).
 */
const PAGE_DIR = new URL('../view/page/', import.meta.url);
const FILES: Record<string, { name: string; type: string }> = {
  '/': { name: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { name: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { name: 'app.css', type: 'text/css; charset=utf-8' },
};

const SESSION_ID = /^[a-z0-9][a-z0-9-]{2,62}$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: http.ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A session as the page gets it: names, counts and rules; nothing else of the runner's. */
function describe(s: KnownSession, feed: AuditFeed | undefined) {
  const hits = feed?.ruleHits ?? new Map<string, number>();
  const rules = (s.rules ?? []).map((r) => ({ label: r.label, hits: hits.get(r.label) ?? 0 }));
  const listed = new Set(rules.map((r) => r.label));
  // Rules that matched under an earlier version of the policy, or all of them when the runner
  // cannot tell the policy's rules.
  const other = [...hits].filter(([label]) => !listed.has(label)).map(([label, n]) => ({ label, hits: n }));
  return {
    id: s.id,
    policy: s.policy,
    created: s.created,
    live: s.live,
    rulesKnown: s.rules !== null,
    rules,
    otherRules: other,
    totals: feed?.totals ?? { allow: 0, deny: 0, would_deny: 0 },
    policyStatus: s.policyStatus ?? null,
  };
}

export async function startView(options: ViewOptions): Promise<ViewServer> {
  if (!isLoopback(options.host)) {
    throw new Error(`the view listens on loopback only (127.0.0.1 or ::1), not ${JSON.stringify(options.host)}: it shows every session's traffic`);
  }
  const token = options.token ?? randomBytes(24).toString('base64url');
  const cookieSecret = randomBytes(24).toString('base64url');
  const files = Object.fromEntries(Object.entries(FILES).map(([path, f]) => [path, { ...f, body: readFileSync(new URL(f.name, PAGE_DIR)) }]));
  const feeds = new Feeds(options.sessions);
  const { inbox } = options;
  let hosts = new Set<string>();
  let cookieName = 'airlock_view';
  const streams = new Set<http.ServerResponse>();

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    // DNS rebinding: a page on another name that resolves here still sends its own name.
    if (!hosts.has(req.headers.host ?? '')) throw new HttpError(421, 'this view answers only to its loopback address (Host header)');
    const url = new URL(req.url ?? '/', 'http://view');
    const method = req.method ?? 'GET';
    const reading = method === 'GET' || method === 'HEAD';
    if (reading && url.pathname === '/' && url.searchParams.has('token')) {
      if (!sameBytes(token, url.searchParams.get('token') ?? '')) throw new HttpError(403, 'wrong view token: open the URL airlock printed');
      // The token leaves the address bar (and history) at once; the cookie stands in for it.
      res.writeHead(303, {
        ...SECURITY_HEADERS,
        'Set-Cookie': `${cookieName}=${cookieSecret}; HttpOnly; SameSite=Strict; Path=/`,
        Location: '/',
        'Content-Length': 0,
      });
      res.end();
      return;
    }
    if (!sameBytes(cookieSecret, cookieValue(req.headers.cookie, cookieName))) {
      throw new HttpError(401, 'open the URL airlock printed (it carries the access token)');
    }
    if (!reading) {
      const refusal = writeRefusal(req.headers, hosts);
      if (refusal) throw new HttpError(403, `refused: ${refusal}`);
    }
    const file = reading ? files[url.pathname] : undefined;
    if (file) {
      res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': file.type, 'Content-Length': file.body.length });
      res.end(method === 'HEAD' ? undefined : file.body);
      return;
    }
    if (reading && url.pathname === '/api/sessions') {
      const list = await feeds.sessions();
      return send(res, 200, list.map((s) => describe(s, feeds.feed(s.id))));
    }
    if (reading && url.pathname === '/api/inbox') {
      return send(res, 200, await inbox.list());
    }
    const inboxAction = /^\/api\/inbox\/([0-9a-zA-Z_-]{1,128})\/(preview|approve|dismiss)$/.exec(url.pathname);
    if (inboxAction && method === 'POST') {
      const [, id, action] = inboxAction;
      if (action === 'preview') return send(res, 200, await inbox.approvePreview(id!));
      if (action === 'approve') return send(res, 200, await inbox.approve(id!));
      await inbox.dismiss(id!);
      return send(res, 200, { dismissed: id });
    }
    const sessionRoute = /^\/api\/sessions\/([^/]+)\/(events|export\.jsonl)$/.exec(url.pathname);
    if (reading && sessionRoute) {
      const [, id, what] = sessionRoute;
      if (!SESSION_ID.test(id!)) throw new HttpError(404, 'no such session');
      if (!feeds.feed(id!)) await feeds.sessions();
      const feed = feeds.feed(id!);
      const session = feeds.session(id!);
      if (!feed || !session) throw new HttpError(404, `no session ${id}`);
      if (what === 'events') return stream(req, res, feed, url);
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'Content-Type': 'application/x-ndjson',
        'Content-Disposition': `attachment; filename="airlock-audit-${id}.jsonl"`,
      });
      createReadStream(session.auditFile)
        .on('error', () => res.end())
        .pipe(res);
      return;
    }
    throw new HttpError(reading || inboxAction ? 404 : 405, reading || inboxAction ? 'not found' : `${method} not allowed here`);
  };

  const stream = (req: http.IncomingMessage, res: http.ServerResponse, feed: AuditFeed, url: URL) => {
    // The browser's own reconnect sends Last-Event-ID; a reloaded page passes the id it kept.
    const given = req.headers['last-event-id'] ?? url.searchParams.get('lastEventId') ?? '';
    const after = /^\d{1,15}$/.test(String(given)) ? Number(given) : null;
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', 'X-Accel-Buffering': 'no' });
    res.socket?.setNoDelay(true);
    streams.add(res);
    const stop = feeds.follow(
      feed,
      {
        write: (chunk) => void res.write(chunk),
        get backlog() {
          return res.writableLength;
        },
        end: () => res.end(),
      },
      after,
    );
    res.once('close', () => {
      stop();
      streams.delete(res);
    });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof HttpError) return sendText(res, err.status, err.message + '\n');
      // An inbox may be implemented elsewhere: any error that names a 4xx status is the
      // operator's to read (unknown item, invalid policy edit), the rest is the view's fault.
      const status = err instanceof InboxError ? err.status : (err as { status?: unknown }).status;
      if (typeof status === 'number' && status >= 400 && status < 500) return send(res, status, { error: err.message });
      send(res, 500, { error: err.message });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  hosts = viewHosts(address.address, address.port);
  // Cookies are per host, not per port: one view's cookie must not pass at another's.
  cookieName = `airlock_view_${address.port}`;
  const literal = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${literal}:${address.port}/?token=${token}`,
    address,
    async close() {
      for (const res of streams) res.destroy();
      feeds.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
