// A hostile session against the proxy's per-request shortcuts on an inspected tunnel: the Basic
// check by first letter (any case, tabs, extra spaces), small answers leaving in one write with
// their scrubbed length set in place (around the 16 KiB join limit, echoes in header names and
// values, many headers), and upstream failures that reach the exchange through the upstream
// client's onFail instead of a promise (every failure still gets an answer and an audit line),
// and the keep-alive timer armed once per idle period (a request still being answered when it
// fires is not cut off).
// Everything the session receives is searched for the real value in every form the proxy writes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type tls from 'node:tls';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { createTestPki, freePort, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { tunnelThrough } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const SECRET = 'ghp_FastPathsRealToken7c1e93b2d4a6f0';
const BOUND = 'api.bound.test';
const OTHER = 'api.other.test';
const POLICY = `
version: 1
name: fast-paths
allow:
  - host: ${BOUND}
  - host: ${OTHER}
credentials:
  - name: gh
    env: [GH_TOKEN]
    secret: { env: AIRLOCK_FAST_SECRET }
    hosts: [${BOUND}]
    in: [header, basic]
`;

let pki: TestPki;
let bound: TestUpstream;
let other: TestUpstream;
let airlock: AirlockHandle;
let placeholder: string;
const boundAuth: string[] = [];
const otherAuth: string[] = [];

beforeAll(async () => {
  pki = await createTestPki();
  bound = await startHttpsUpstream({
    pki,
    names: [BOUND],
    handler: (req, res) => {
      const auth = String(req.headers.authorization ?? '');
      boundAuth.push(auth);
      const url = new URL(req.url!, 'https://x');
      if (url.pathname === '/reset') {
        req.socket.destroy();
        return;
      }
      if (url.pathname === '/cut') {
        res.writeHead(200, { 'Content-Length': 4096 });
        res.write(Buffer.alloc(100, 'c'));
        setTimeout(() => req.socket.destroy(), 50);
        return;
      }
      // An echo of the Authorization value as the upstream received it (the real secret), and the
      // secret alone, in a body of exactly `size` bytes, a header value, a header name and many headers.
      const size = Number(url.searchParams.get('size') ?? 64);
      const echo = Buffer.from(`auth=${auth};secret=${SECRET};`);
      const body = Buffer.alloc(size, '.');
      echo.copy(body, 0, 0, Math.min(echo.length, size));
      if (size > 2 * echo.length) echo.copy(body, size - echo.length);
      const headers: Record<string, string | number> = {
        'Content-Type': 'text/plain',
        'Content-Length': body.length,
        'X-Echo': auth,
        [`x-${SECRET}`]: 'name',
        'X-Long': `${'l'.repeat(6000)}${SECRET}${'l'.repeat(6000)}`,
      };
      for (let i = 0; i < 100; i++) headers[`X-Many-${i}`] = `${i}:${SECRET}`;
      res.writeHead(200, headers);
      res.end(body);
    },
  });
  other = await startHttpsUpstream({
    pki,
    names: [OTHER],
    handler: (req, res) => {
      otherAuth.push(String(req.headers.authorization ?? ''));
      if (req.url === '/slow') {
        setTimeout(() => {
          res.writeHead(200, { 'Content-Length': 4 });
          res.end('slow');
        }, 600);
        return;
      }
      if (req.url === '/cut-stream') {
        // No credential is bound here: the body streams through unscrubbed, head first.
        res.writeHead(200, { 'Content-Length': 1 << 20 });
        res.write(Buffer.alloc(1000, 's'));
        setTimeout(() => req.socket.destroy(), 50);
        return;
      }
      res.writeHead(200, { 'Content-Length': 2 });
      res.end('ok');
    },
  });
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { [`${BOUND}:443`]: bound.port, [`${OTHER}:443`]: other.port },
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_FAST_SECRET: SECRET }),
  });
  placeholder = airlock.session.credentials.sessionEnv.GH_TOKEN!;
});

afterAll(async () => {
  await airlock?.close();
  await bound?.close();
  await other?.close();
  rmTmp(pki?.dir);
});

interface Answer {
  status: number;
  head: string;
  body: Buffer;
  raw: Buffer;
}

/**
 * Reads responses off a kept-alive connection strictly by their Content-Length: a length that
 * does not match the body sent puts every later answer out of step.
 */
class Reader {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  closed = false;
  all = Buffer.alloc(0);
  constructor(private readonly socket: tls.TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.all = Buffer.concat([this.all, d]);
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  async next(timeoutMs = 5_000): Promise<Answer | 'closed'> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end !== -1) {
        const head = this.buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
        expect(Number.isFinite(length), `answer without Content-Length: ${head.slice(0, 200)}`).toBe(true);
        if (this.buf.length >= end + 4 + length) {
          const raw = this.buf.subarray(0, end + 4 + length);
          this.buf = this.buf.subarray(end + 4 + length);
          return { status: Number(head.split(' ')[1]), head, body: raw.subarray(end + 4), raw };
        }
      }
      if (this.closed) return 'closed';
      if (Date.now() > deadline) throw new Error(`no whole answer within ${timeoutMs} ms; have ${JSON.stringify(this.buf.subarray(0, 300).toString('latin1'))}`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 50);
      });
      this.wake = null;
    }
  }
}

function get(path: string, host: string, authorization?: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${authorization === undefined ? '' : `Authorization: ${authorization}\r\n`}\r\n`;
}

// Spellings of the Basic scheme a client may send; all of them are the Basic scheme.
const BASIC_SPELLINGS = ['Basic ', 'basic ', 'BASIC ', 'bAsIc ', 'Basic\t', 'BaSiC  \t '];

describe('Basic credentials in any spelling of the scheme', () => {
  it('have the placeholder inside them swapped on the bound host, and nothing of the secret comes back', async () => {
    const socket = await tunnelThrough(airlock, BOUND);
    const reader = new Reader(socket);
    try {
      for (const scheme of BASIC_SPELLINGS) {
        const sent = Buffer.from(`x-access-token:${placeholder}`).toString('base64');
        const before = boundAuth.length;
        socket.write(get('/basic?size=200', BOUND, `${scheme}${sent}`));
        const answer = await reader.next();
        expect(answer, scheme).not.toBe('closed');
        expect((answer as Answer).status, JSON.stringify(scheme)).toBe(200);
        // The upstream got the real value inside the same scheme spelling.
        expect(boundAuth.slice(before), JSON.stringify(scheme)).toEqual([`${scheme}${Buffer.from(`x-access-token:${SECRET}`).toString('base64')}`]);
      }
      expect(secretLeaks(reader.all, SECRET)).toEqual([]);
    } finally {
      socket.destroy();
    }
    const lines = (await airlock.auditLines()).filter((l) => l.path.startsWith('/basic'));
    expect(lines.filter((l) => l.status === 200 && l.credentials?.includes('gh'))).toHaveLength(BASIC_SPELLINGS.length);
    expect(secretLeaks(JSON.stringify(lines), SECRET)).toEqual([]);
  });

  it('are refused to a host the credential is not bound to, in every spelling', async () => {
    for (const scheme of BASIC_SPELLINGS) {
      const socket = await tunnelThrough(airlock, OTHER);
      const reader = new Reader(socket);
      try {
        const before = otherAuth.length;
        socket.write(get('/steal', OTHER, `${scheme}${Buffer.from(`x-access-token:${placeholder}`).toString('base64')}`));
        const answer = await reader.next();
        expect(answer, scheme).not.toBe('closed');
        expect((answer as Answer).status, JSON.stringify(scheme)).toBe(403);
        expect(otherAuth.length).toBe(before);
        expect(secretLeaks(reader.all, SECRET)).toEqual([]);
      } finally {
        socket.destroy();
      }
    }
    const lines = (await airlock.auditLines()).filter((l) => l.path === '/steal');
    expect(lines).toHaveLength(BASIC_SPELLINGS.length);
    for (const l of lines) expect(l.action).toBe('deny');
  });
});

describe('small scrubbed answers on a kept-alive tunnel', () => {
  it('around the 16 KiB one-write limit: every answer scrubbed, in header names, values and bodies, with its exact length', async () => {
    const socket = await tunnelThrough(airlock, BOUND);
    const reader = new Reader(socket);
    // Sizes on both sides of the one-write limit (16 KiB), up to the whole-body scrub's (64 KiB).
    const sizes = [1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024, 200];
    try {
      for (const size of sizes) {
        socket.write(get(`/echo?size=${size}`, BOUND, `Bearer ${placeholder}`));
        const answer = await reader.next();
        expect(answer, `size ${size}`).not.toBe('closed');
        const { status, head, body } = answer as Answer;
        expect(status).toBe(200);
        // The scrubbed body is whole and framed by its own length: the next answer parses.
        expect(body.subarray(-1).toString()).toMatch(size > 1 ? /[;.]/ : /./);
        expect(head).not.toMatch(/x-ghp_/i);
        expect(head).toMatch(/\r\nX-Many-99: 99:/i);
        expect(secretLeaks(head, SECRET)).toEqual([]);
        expect(secretLeaks(body, SECRET)).toEqual([]);
      }
      // One more, so a wrong length anywhere above would have left this one unreadable.
      socket.write(get('/echo?size=10', BOUND, `Bearer ${placeholder}`));
      expect(((await reader.next()) as Answer).status).toBe(200);
      expect(secretLeaks(reader.all, SECRET)).toEqual([]);
    } finally {
      socket.destroy();
    }
    const lines = (await airlock.auditLines()).filter((l) => l.path.startsWith('/echo'));
    expect(lines.length).toBeGreaterThanOrEqual(sizes.length + 1);
    expect(secretLeaks(JSON.stringify(lines), SECRET)).toEqual([]);
  });
});

describe('an upstream failure through the upstream client', () => {
  it('before the answer: the session gets a 502 and the exchange its audit line', async () => {
    const socket = await tunnelThrough(airlock, BOUND);
    const reader = new Reader(socket);
    try {
      socket.write(get('/reset', BOUND, `Bearer ${placeholder}`));
      const answer = await reader.next(5_000);
      expect(answer).not.toBe('closed');
      expect((answer as Answer).status).toBe(502);
      expect(secretLeaks(reader.all, SECRET)).toEqual([]);
    } finally {
      socket.destroy();
    }
    const line = await airlock.waitForAudit((l) => l.path === '/reset', 5_000);
    expect(line.status).toBe(502);
    expect(secretLeaks(JSON.stringify(line), SECRET)).toEqual([]);
  });

  it('mid-body: the session gets a 502 or a cut connection, never a hang, and the exchange its audit line', async () => {
    const socket = await tunnelThrough(airlock, BOUND);
    const reader = new Reader(socket);
    try {
      socket.write(get('/cut', BOUND, `Bearer ${placeholder}`));
      // The body cannot be finished: a body still held for scrubbing is answered 502; one under
      // way would have its connection closed.
      const answer = await reader.next(5_000);
      if (answer !== 'closed') expect(answer.status).toBe(502);
      expect(secretLeaks(reader.all, SECRET)).toEqual([]);
    } finally {
      socket.destroy();
    }
    const line = await airlock.waitForAudit((l) => l.path === '/cut', 5_000);
    // The exchange ended in an upstream error, not as a whole 200.
    expect(line.reason).toBe('upstream_error');
    expect(secretLeaks(JSON.stringify(line), SECRET)).toEqual([]);
  });

  it('mid-body of a streamed answer: the connection is cut and the exchange gets its audit line', async () => {
    const socket = await tunnelThrough(airlock, OTHER);
    const reader = new Reader(socket);
    try {
      socket.write(get('/cut-stream', OTHER));
      for (let i = 0; i < 100 && !reader.closed; i++) await new Promise((r) => setTimeout(r, 50));
      expect(reader.closed).toBe(true);
      expect(reader.all.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      socket.destroy();
    }
    const line = await airlock.waitForAudit((l) => l.path === '/cut-stream', 5_000);
    expect(line.reason).toBe('upstream_error');
  });
});

describe('an upstream that cannot be reached', () => {
  it('gets the session a 502 and the exchange its audit line, request after request on one tunnel', async () => {
    const closed = await freePort();
    const down = await startAirlock({
      policy: POLICY.replace(`  - host: ${OTHER}`, `  - host: ${OTHER}\n  - host: api.down.test`),
      resolve: { 'api.down.test:443': closed },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_FAST_SECRET: SECRET }),
    });
    const socket = await tunnelThrough(down, 'api.down.test');
    const reader = new Reader(socket);
    try {
      for (let i = 0; i < 3; i++) {
        socket.write(get(`/down${i}`, 'api.down.test'));
        const answer = await reader.next(5_000);
        expect(answer).not.toBe('closed');
        expect((answer as Answer).status).toBe(502);
      }
      for (let i = 0; i < 3; i++) {
        const line = await down.waitForAudit((l) => l.path === `/down${i}`, 5_000);
        expect(line.status).toBe(502);
        expect(line.reason).toBe('upstream_error');
      }
    } finally {
      socket.destroy();
      await down.close();
    }
  });
});

describe('the tunnel keep-alive timer', () => {
  it('does not close a connection whose request is still being answered when it fires, and closes it once idle', async () => {
    const quick = await startAirlock({
      policy: POLICY,
      resolve: { [`${OTHER}:443`]: other.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_FAST_SECRET: SECRET }),
      limits: { keepAliveTimeoutMs: 300, headersTimeoutMs: 5_000 },
    });
    const socket = await tunnelThrough(quick, OTHER);
    const reader = new Reader(socket);
    try {
      socket.write(get('/quick', OTHER));
      expect(((await reader.next()) as Answer).status).toBe(200);
      // The idle timer armed now fires at 300 ms, while this answer takes 600 ms to come.
      await new Promise((r) => setTimeout(r, 100));
      socket.write(get('/slow', OTHER));
      const slow = await reader.next(5_000);
      expect(slow).not.toBe('closed');
      expect((slow as Answer).body.toString()).toBe('slow');
      const answered = performance.now();
      for (let i = 0; i < 100 && !reader.closed; i++) await new Promise((r) => setTimeout(r, 20));
      expect(reader.closed).toBe(true);
      expect(performance.now() - answered).toBeGreaterThanOrEqual(250);
    } finally {
      socket.destroy();
      await quick.close();
    }
  });
});
