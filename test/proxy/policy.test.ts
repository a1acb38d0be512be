// Policy rules enforced by the real proxy (not just decide()): every row goes through CONNECT,
// TLS with the session CA, and an HTTP request to a real upstream on loopback; the status the
// client sees and the audit line's reason/rule are both checked.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createTestPki, rmTmp, startAirlock, startHttpUpstream, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, AuditLine, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpViaProxy, httpsViaProxy } from '../helpers/clients.js';

const POLICY = `
version: 1
name: table
allow:
  - host: "*.githubusercontent.com"   # allow[0]
  - host: registry.npmjs.org          # allow[1]
    methods: [GET, HEAD]
  - host: uploads.example.com         # allow[2]
    ports: [443]
    paths: ["/v1/*"]
  - host: api.github.com              # allow[3]
    ports: [443, 8443]
  - host: pinned.example.com          # allow[4]
    inspect: false
`;

const NAMES = ['raw.githubusercontent.com', 'a.b.githubusercontent.com', 'githubusercontent.com', 'evilgithubusercontent.com', 'registry.npmjs.org', 'uploads.example.com', 'api.github.com', 'pinned.example.com'];

let pki: TestPki;
let tlsUpstream: TestUpstream;
let plainUpstream: TestUpstream;
let airlock: AirlockHandle;
let bundle: string;

beforeAll(async () => {
  pki = await createTestPki();
  tlsUpstream = await startHttpsUpstream({ pki, names: NAMES });
  plainUpstream = await startHttpUpstream();
  const resolve: Record<string, number> = {};
  for (const name of NAMES) {
    resolve[`${name}:443`] = tlsUpstream.port;
    resolve[`${name}:8443`] = tlsUpstream.port;
    resolve[`${name}:80`] = plainUpstream.port;
  }
  airlock = await startAirlock({ policy: POLICY, resolve, upstreamCa: [pki.caPem] });
  bundle = readFileSync(airlock.bundlePath, 'utf8');
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([tlsUpstream?.close(), plainUpstream?.close()]);
  rmTmp(pki?.dir);
});

interface Row {
  readonly name: string;
  readonly method: string;
  readonly url: string;
  readonly status: number;
  /** 'connect': refused at CONNECT (the audit line is the tunnel's); 'request': per request. */
  readonly level: 'connect' | 'request';
  readonly reason: string;
  readonly rule: string | null;
}

const ROWS: Row[] = [
  { name: 'wildcard: subdomain allowed', method: 'GET', url: 'https://raw.githubusercontent.com/o/r/main/f/r1', status: 200, level: 'request', reason: 'allowed', rule: 'allow[0] *.githubusercontent.com' },
  { name: 'wildcard: deep subdomain allowed', method: 'GET', url: 'https://a.b.githubusercontent.com/f/r2', status: 200, level: 'request', reason: 'allowed', rule: 'allow[0] *.githubusercontent.com' },
  { name: 'wildcard: apex denied', method: 'GET', url: 'https://githubusercontent.com/f/r3', status: 403, level: 'connect', reason: 'no_rule', rule: null },
  { name: 'wildcard: suffix look-alike denied', method: 'GET', url: 'https://evilgithubusercontent.com/f/r4', status: 403, level: 'connect', reason: 'no_rule', rule: null },
  { name: 'method rule: GET allowed', method: 'GET', url: 'https://registry.npmjs.org/left-pad/r5', status: 200, level: 'request', reason: 'allowed', rule: 'allow[1] registry.npmjs.org' },
  { name: 'method rule: HEAD allowed', method: 'HEAD', url: 'https://registry.npmjs.org/left-pad/r6', status: 200, level: 'request', reason: 'allowed', rule: 'allow[1] registry.npmjs.org' },
  { name: 'method rule: PUT denied', method: 'PUT', url: 'https://registry.npmjs.org/left-pad/r7', status: 403, level: 'request', reason: 'method_not_allowed', rule: 'allow[1] registry.npmjs.org' },
  { name: 'method rule: plain-HTTP POST denied', method: 'POST', url: 'http://registry.npmjs.org/left-pad/r8', status: 403, level: 'request', reason: 'method_not_allowed', rule: 'allow[1] registry.npmjs.org' },
  { name: 'method rule: plain-HTTP GET allowed', method: 'GET', url: 'http://registry.npmjs.org/left-pad/r9', status: 200, level: 'request', reason: 'allowed', rule: 'allow[1] registry.npmjs.org' },
  { name: 'path rule: /v1/* allowed', method: 'POST', url: 'https://uploads.example.com/v1/file/r10', status: 200, level: 'request', reason: 'allowed', rule: 'allow[2] uploads.example.com' },
  { name: 'path rule: /v2 denied', method: 'POST', url: 'https://uploads.example.com/v2/file/r11', status: 403, level: 'request', reason: 'path_not_allowed', rule: 'allow[2] uploads.example.com' },
  { name: 'path rule: dot segments cannot walk out of /v1/*', method: 'GET', url: 'https://uploads.example.com/v1/%2e%2e/admin/r12', status: 403, level: 'request', reason: 'path_not_allowed', rule: 'allow[2] uploads.example.com' },
  { name: 'port rule: 8443 not listed', method: 'GET', url: 'https://uploads.example.com:8443/v1/file/r13', status: 403, level: 'connect', reason: 'port_not_allowed', rule: 'allow[2] uploads.example.com' },
  { name: 'port rule: 8443 listed', method: 'GET', url: 'https://api.github.com:8443/x/r14', status: 200, level: 'request', reason: 'allowed', rule: 'allow[3] api.github.com' },
  { name: 'port rule: plain port 80 not listed', method: 'GET', url: 'http://uploads.example.com/v1/file/r15', status: 403, level: 'request', reason: 'port_not_allowed', rule: 'allow[2] uploads.example.com' },
  { name: 'no rule: unknown host, plain HTTP', method: 'GET', url: 'http://pypi.org/simple/r16', status: 403, level: 'request', reason: 'no_rule', rule: null },
];

/** The row's audit line: the refused tunnel, or the request whose path ends in the row's tag. */
function matches(row: Row, l: AuditLine): boolean {
  const url = new URL(row.url);
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  if (row.level === 'connect') return l.kind === 'tunnel' && l.host === url.hostname && l.port === port && l.status === row.status;
  const tag = url.pathname.slice(url.pathname.lastIndexOf('/'));
  return l.kind === 'request' && l.host === url.hostname && l.port === port && l.path.endsWith(tag);
}

describe('policy rules through the real proxy', () => {
  it.each(ROWS)('$name → $status $reason', async (row) => {
    const before = tlsUpstream.requests.length + plainUpstream.requests.length;
    const connectionsBefore = tlsUpstream.connections + plainUpstream.connections;
    const res = row.url.startsWith('https:')
      ? await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: row.url, method: row.method, ca: bundle, body: row.method === 'POST' || row.method === 'PUT' ? '{"x":1}' : undefined })
      : await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: row.url, method: row.method, body: row.method === 'POST' ? '{"x":1}' : undefined });
    expect(res.status).toBe(row.status);
    // A host the notice CA may speak for gets its refusal inside TLS (CONNECT 200, then 403 in
    // plain text); a name under a rule's subtree gets the bare CONNECT 403 with the JSON body.
    const notice = row.level === 'connect' && (res as { connectStatus?: number }).connectStatus === 200;
    if (row.level === 'connect' && !notice) expect((res as { connectStatus?: number }).connectStatus).toBe(row.status);

    const after = tlsUpstream.requests.length + plainUpstream.requests.length;
    if (row.status === 200) {
      expect(after).toBe(before + 1);
      if (row.method !== 'HEAD') {
        const echoed = JSON.parse(res.body);
        expect(echoed.method).toBe(row.method);
        expect(echoed.host).toBe(new URL(row.url).host);
      }
    } else {
      expect(after).toBe(before); // a denied request never reaches an upstream
      if (row.level === 'connect') expect(tlsUpstream.connections + plainUpstream.connections).toBe(connectionsBefore);
      if (notice) {
        expect(res.body).toContain(`[${row.reason}]`);
        expect(res.body).toContain('Policy "table"');
      } else {
        expect(JSON.parse(res.body)).toMatchObject({ error: 'airlock_denied', reason: row.reason, rule: row.rule ?? 'no rule', policy: 'table' });
      }
    }

    // Every row's path ends in a unique tag (/rN), so its audit line is unambiguous.
    const line = await airlock.waitForAudit((l) => (notice ? l.kind === 'tunnel' && l.host === new URL(row.url).hostname : matches(row, l)));
    expect(line.reason).toBe(row.reason);
    expect(line.rule).toBe(row.rule);
    expect(line.action).toBe(row.status === 200 ? 'allow' : 'deny');
    expect(line.status).toBe(row.status);
  });

  it('inspect: false tunnels blindly: the client sees the upstream certificate, not the session CA', async () => {
    const before = tlsUpstream.requests.length;
    // Only the test upstream CA: the session CA is not trusted, so this only succeeds if the
    // TLS session is end to end with the upstream.
    const res = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://pinned.example.com/blind', ca: pki.caPem });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).path).toBe('/blind');
    expect(tlsUpstream.requests.length).toBe(before + 1);
    const line = await airlock.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'pinned.example.com');
    expect(line).toMatchObject({ status: 200, action: 'allow', reason: 'allowed', rule: 'allow[4] pinned.example.com' });
    expect(line.bytes_up).toBeGreaterThan(0);
    expect(line.bytes_down).toBeGreaterThan(0);
    // No per-request line: the proxy cannot see inside a blind tunnel.
    expect((await airlock.auditLines()).some((l) => l.kind === 'request' && l.host === 'pinned.example.com')).toBe(false);
  });

  it('an inspected host is served with a session-CA leaf (the upstream CA alone does not verify it)', async () => {
    await expect(
      httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://api.github.com/x', ca: pki.caPem }),
    ).rejects.toThrow(/certificate/i);
  });
});

describe('report mode through the real proxy', () => {
  let reportAirlock: AirlockHandle;
  beforeAll(async () => {
    reportAirlock = await startAirlock({
      policy: 'version: 1\nname: report\nmode: report\nallow:\n  - host: api.github.com\n    methods: [GET]\n',
      resolve: { 'api.github.com:443': tlsUpstream.port, 'registry.npmjs.org:443': tlsUpstream.port },
      upstreamCa: [pki.caPem],
    });
  });
  afterAll(async () => {
    await reportAirlock?.close();
  });

  it('lets a would-be denial through and audits it as would_deny with the reason', async () => {
    const b = readFileSync(reportAirlock.bundlePath, 'utf8');
    const res = await httpsViaProxy({ proxyPort: reportAirlock.port, proxyAuthorization: reportAirlock.proxyAuthorization, url: 'https://registry.npmjs.org/report', ca: b });
    expect(res.status).toBe(200);
    const line = await reportAirlock.waitForAudit((l) => l.kind === 'request' && l.host === 'registry.npmjs.org');
    expect(line).toMatchObject({ action: 'would_deny', reason: 'no_rule', rule: null, status: 200 });
    const post = await httpsViaProxy({ proxyPort: reportAirlock.port, proxyAuthorization: reportAirlock.proxyAuthorization, url: 'https://api.github.com/report', method: 'POST', body: 'x', ca: b });
    expect(post.status).toBe(200);
    const postLine = await reportAirlock.waitForAudit((l) => l.kind === 'request' && l.method === 'POST');
    expect(postLine).toMatchObject({ action: 'would_deny', reason: 'method_not_allowed', rule: 'allow[0] api.github.com' });
  });
});
