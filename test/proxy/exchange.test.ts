// The exchange on its own: one status per error kind, one audit line however often it is ended,
// and the policy taken at admission deciding the whole exchange even when the session's policy is
// replaced while it is in flight. No sockets: the channel is a stream that records what is sent.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { parsePolicy } from '../../src/policy/index.js';
import type { Policy } from '../../src/policy/index.js';
import type { AuditEntry } from '../../src/audit/entry.js';
import type { AuditLog } from '../../src/audit/log.js';
import { NO_CREDENTIALS } from '../../src/credentials/broker.js';
import type { ProxySession } from '../../src/proxy/context.js';
import { Exchange, failureOf, UploadBudgetExceeded } from '../../src/proxy/exchange.js';
import { enter } from '../../src/proxy/entrance.js';
import type { ExchangeDeps } from '../../src/proxy/exchange.js';
import { DestinationBlocked, UpstreamError } from '../../src/proxy/upstream.js';
import { Http1Error } from '../../src/proxy/http1/errors.js';

const allowing = parsePolicy('version: 1\nname: open\nallow:\n  - host: api.example.com\n', 'open.yaml');
const denying = parsePolicy('version: 1\nname: closed\nallow: []\n', 'closed.yaml');
const reporting = parsePolicy('version: 1\nname: watch\nmode: report\nallow: []\n', 'watch.yaml');

/** A session whose policy can be replaced, as a reload does. */
function session(policy: Policy): { session: ProxySession & { policy: Policy }; lines: AuditEntry[] } {
  const lines: AuditEntry[] = [];
  const audit = { record: (entry: AuditEntry) => lines.push(entry) } as unknown as AuditLog;
  return { session: { id: 's-test', policy, ca: null as never, audit, credentials: NO_CREDENTIALS }, lines };
}

const deps = { upstream: null as never, log: pino({ level: 'silent' }) } as ExchangeDeps;

function socketChannel(): { socket: PassThrough; sent: () => string } {
  const socket = new PassThrough();
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return { socket, sent: () => Buffer.concat(chunks).toString('latin1') };
}

const connectFacts = { phase: 'connect', scheme: 'https', host: 'api.example.com', port: 443 } as const;
const where = { host: 'api.example.com', port: 443 };

describe('failureOf: every error kind has one status', () => {
  it.each([
    ['a blocked destination', new DestinationBlocked('api.example.com', '10.0.0.1', 'a private address'), 403, 'destination_blocked', true],
    ['an upload over budget', new UploadBudgetExceeded(), 429, 'upload_budget_exceeded', true],
    ['a client body that never came', new Http1Error('no body', 'CLIENT_BODY_TIMEOUT'), 408, 'upstream_error', false],
    ['an upstream head timeout', new Http1Error('slow', 'UPSTREAM_HEADERS_TIMEOUT'), 504, 'upstream_error', false],
    ['a connect timeout', new UpstreamError('cannot connect', 504, 'ETIMEDOUT'), 504, 'upstream_error', false],
    ['the client leaving', new Http1Error('aborted by the client', 'ABORTED'), 499, 'upstream_error', false],
    ['a refused connection', new UpstreamError('cannot connect', 502, 'ECONNREFUSED'), 502, 'upstream_error', false],
    ['a malformed response', new Http1Error('bad', 'UPSTREAM_BAD_RESPONSE'), 502, 'upstream_error', false],
    ['a request head too slow to arrive', Object.assign(new Error('slow'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), 408, 'bad_request', true],
    ['a request head too large', Object.assign(new Error('big'), { code: 'HPE_HEADER_OVERFLOW' }), 431, 'bad_request', true],
    ['a request head the parser refused', Object.assign(new Error('bad'), { code: 'HPE_INVALID_HEADER_TOKEN' }), 400, 'bad_request', true],
  ] as const)('%s', (_what, err, status, reason, deny) => {
    expect(failureOf(err, where)).toMatchObject({ status, reason, deny });
  });

  it('names the upstream and the code, never more', () => {
    expect(failureOf(new UpstreamError('cannot connect to x (ECONNREFUSED)', 502, 'ECONNREFUSED'), where).message).toBe(
      'Airlock: upstream api.example.com:443 failed (ECONNREFUSED).',
    );
  });
});

/** A CONNECT exchange to api.example.com:443 on a socket that records what is sent. */
function tunnelExchange(s: ProxySession): { ex: Exchange; sent: () => string } {
  const channel = socketChannel();
  const ex = new Exchange(deps, s, 'tunnel', 'CONNECT', 'https', { socket: channel.socket });
  ex.target('api.example.com', 443, '');
  return { ex, sent: channel.sent };
}

describe('Exchange', () => {
  it('writes one audit line, however many ends it meets', () => {
    const { session: s, lines } = session(allowing);
    const { ex } = tunnelExchange(s);
    expect(ex.decide(connectFacts)).toMatchObject({ action: 'allow' });
    ex.end(200);
    ex.fail(new UpstreamError('late', 502, 'ECONNRESET'));
    ex.refuse(403, 'no_rule', 'late');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ status: 200, action: 'allow', rule: 'allow[0] api.example.com', kind: 'tunnel' });
  });

  it('decides with the policy it was admitted under, even if the session gets another one', () => {
    const { session: s, lines } = session(allowing);
    const { ex } = tunnelExchange(s);
    s.policy = denying; // replaced while the exchange is in flight
    expect(ex.decide(connectFacts)).toMatchObject({ action: 'allow' });
    ex.end(200);
    expect(lines[0]).toMatchObject({ action: 'allow', reason: 'allowed' });
    // The next exchange takes the new policy.
    expect(tunnelExchange(s).ex.decide(connectFacts)).toBeNull();
    expect(lines[1]).toMatchObject({ status: 403, action: 'deny', reason: 'no_rule' });
  });

  it('answers a denial on a raw socket with the JSON body and audits it as deny', () => {
    const { session: s, lines } = session(denying);
    const { ex, sent } = tunnelExchange(s);
    expect(ex.decide(connectFacts)).toBeNull();
    const answer = sent();
    expect(answer).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(answer).toMatch(/\r\nX-Airlock-Decision: deny; reason=no_rule\r\n/);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ reason: 'no_rule', policy: 'closed', host: 'api.example.com:443' });
    expect(lines).toEqual([expect.objectContaining({ status: 403, action: 'deny', reason: 'no_rule' })]);
  });

  it('audits a denial report mode lets through as would_deny', () => {
    const { session: s, lines } = session(reporting);
    const { ex } = tunnelExchange(s);
    expect(ex.decide(connectFacts)).toMatchObject({ action: 'would_deny', reason: 'no_rule', inspect: true });
    ex.end(200);
    expect(lines[0]).toMatchObject({ status: 200, action: 'would_deny', reason: 'no_rule' });
  });

  it('an upstream failure of an allowed tunnel is answered 502 and audited as allowed with the code', () => {
    const { session: s, lines } = session(allowing);
    const { ex, sent } = tunnelExchange(s);
    ex.decide(connectFacts);
    ex.fail(new UpstreamError('cannot connect', 502, 'ECONNREFUSED'));
    expect(sent()).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n/);
    expect(lines[0]).toMatchObject({ status: 502, action: 'allow', reason: 'upstream_error', detail: 'ECONNREFUSED' });
  });
});

describe('enter: auth (done), then limits, then the decision', () => {
  const limited = parsePolicy(
    'version: 1\nname: limited\nallow:\n  - host: api.example.com\n    methods: [GET]\nlimits: { requests_per_second: 1, max_upload_bytes: 10 }\n',
    'limited.yaml',
  );

  function request(s: ProxySession, method: string, url: string, headers: Record<string, string> = {}) {
    const rawHeaders = Object.entries({ Host: new URL(url).host, ...headers }).flat();
    const req = { method, url, rawHeaders, headers: Object.fromEntries(Object.entries({ host: new URL(url).host, ...headers }).map(([k, v]) => [k.toLowerCase(), v])), socket: { bytesWritten: 0 } };
    const channel = socketChannel();
    const ex = new Exchange(deps, s, 'websocket', method, 'http', { socket: channel.socket });
    const upload = Number(req.headers['content-length'] ?? 0);
    return { admitted: enter(ex, { req, session: s, scheme: 'http' }, { connection: false, upload }), sent: channel.sent };
  }

  it('a request over the rate limit is refused 429 before the policy is asked (it would have been denied too)', () => {
    const { session: s, lines } = session(limited);
    expect(request(s, 'GET', 'http://api.example.com/a').admitted).toMatchObject({ decision: { action: 'allow' } });
    const second = request(s, 'POST', 'http://api.example.com/b');
    expect(second.admitted).toBeNull();
    expect(second.sent()).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\n[^]*Retry-After: 1\r\n/);
    expect(lines).toEqual([expect.objectContaining({ status: 429, action: 'deny', reason: 'rate_limited', rule: null, path: '/b' })]);
  });

  it('a declared upload over the budget is refused 429 before the policy is asked', () => {
    const { session: s, lines } = session(limited);
    expect(request(s, 'PUT', 'http://nowhere.example/x', { 'Content-Length': '11' }).admitted).toBeNull();
    expect(lines).toEqual([expect.objectContaining({ status: 429, reason: 'upload_budget_exceeded', host: 'nowhere.example' })]);
  });

  it('a request within its limits is decided: a denial is a 403 with the rule that came closest', () => {
    const { session: s, lines } = session(limited);
    expect(request(s, 'POST', 'http://api.example.com/c').admitted).toBeNull();
    expect(lines).toEqual([expect.objectContaining({ status: 403, action: 'deny', reason: 'method_not_allowed', rule: 'allow[0] api.example.com' })]);
  });
});
