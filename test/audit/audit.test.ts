// The audit log as written by the real proxy, and `airlock audit` reading it back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestPki, rmTmp, runCli, startAirlock, startHttpUpstream, startHttpsUpstream, waitFor } from '../helpers/servers.js';
import type { AirlockHandle, AuditLine, TestPki, TestUpstream } from '../helpers/servers.js';
import { httpViaProxy, httpsViaProxy, rawConnect } from '../helpers/clients.js';

const SECRET = 's3cr3t-value-in-a-query';

const POLICY = `
version: 1
name: audit-test
allow:
  - host: api.github.com
    methods: [GET]
`;

let pki: TestPki;
let api: TestUpstream;
let apiPlain: TestUpstream;
let airlock: AirlockHandle;
let lines: AuditLine[];

beforeAll(async () => {
  pki = await createTestPki();
  api = await startHttpsUpstream({ pki, names: ['api.github.com'] });
  apiPlain = await startHttpUpstream();
  airlock = await startAirlock({
    policy: POLICY,
    resolve: { 'api.github.com:443': api.port, 'api.github.com:80': apiPlain.port },
    upstreamCa: [pki.caPem],
  });
  const bundle = readFileSync(airlock.bundlePath, 'utf8');
  const auth = airlock.proxyAuthorization;
  const ok = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: auth, url: `https://api.github.com/items?token=${SECRET}&page=2&flag`, ca: bundle });
  expect(ok.status).toBe(200);
  const denied = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: auth, url: `https://api.github.com/readonly?key=${SECRET}`, method: 'POST', body: 'x', ca: bundle });
  expect(denied.status).toBe(403);
  // An IP literal: the notice CA never speaks for one, so the CONNECT itself is refused.
  const tunnelDenied = await rawConnect({ proxyPort: airlock.port, target: '203.0.113.9:443', proxyAuthorization: auth });
  expect(tunnelDenied.status).toBe(403);
  const plain = await httpViaProxy({ proxyPort: airlock.port, proxyAuthorization: auth, url: `http://api.github.com/plain?q=${SECRET}` });
  expect(plain.status).toBe(200);
  // Lines are written when each request or tunnel ends (the plain request's when the proxy sees
  // its response close, which can be after the client has the body): wait for all six.
  lines = await waitFor(async () => {
    const all = await airlock.auditLines();
    const tunnels = all.filter((l) => l.kind === 'tunnel' && l.host === 'api.github.com').length;
    return tunnels === 2 && all.length >= 6 ? all : null;
  }, 5_000, 'all six requests and tunnels to be audited');
});

afterAll(async () => {
  await airlock?.close();
  await Promise.all([api?.close(), apiPlain?.close()]);
  rmTmp(pki?.dir);
});

const FIELDS = ['time', 'session', 'id', 'kind', 'method', 'scheme', 'host', 'port', 'path', 'status', 'action', 'rule', 'reason', 'credentials', 'bytes_up', 'bytes_down', 'duration_ms'];

describe('audit lines', () => {
  it('every line (allowed, denied, request, tunnel) carries every field with the right type', () => {
    expect(lines).toHaveLength(6); // 2 tunnels + 2 https requests + 1 denied CONNECT + 1 plain request
    for (const line of lines) {
      for (const field of FIELDS) expect(line, `${field} in ${JSON.stringify(line)}`).toHaveProperty(field);
      expect(new Date(line.time).toISOString()).toBe(line.time);
      expect(line.session).toBe(airlock.session.id);
      expect(typeof line.id).toBe('string');
      expect(['http', 'https']).toContain(line.scheme);
      expect(Number.isInteger(line.port)).toBe(true);
      expect(Number.isInteger(line.status)).toBe(true);
      expect(['allow', 'deny', 'would_deny']).toContain(line.action);
      expect(line.rule === null || typeof line.rule === 'string').toBe(true);
      expect(Array.isArray(line.credentials)).toBe(true);
      expect(line.bytes_up).toBeGreaterThanOrEqual(0);
      expect(line.bytes_down).toBeGreaterThanOrEqual(0);
      expect(line.duration_ms).toBeGreaterThanOrEqual(0);
    }
    expect(new Set(lines.map((l) => l.id)).size).toBe(lines.length);
  });

  it('an allowed request line', () => {
    const line = lines.find((l) => l.kind === 'request' && l.path.startsWith('/items'))!;
    expect(line).toMatchObject({
      method: 'GET',
      scheme: 'https',
      host: 'api.github.com',
      port: 443,
      path: '/items?token=redacted&page=redacted&flag',
      status: 200,
      action: 'allow',
      rule: 'allow[0] api.github.com',
      reason: 'allowed',
      credentials: [],
    });
    expect(line.bytes_down).toBeGreaterThan(0);
  });

  it('a denied request line', () => {
    const line = lines.find((l) => l.kind === 'request' && l.path.startsWith('/readonly'))!;
    expect(line).toMatchObject({ method: 'POST', path: '/readonly?key=redacted', status: 403, action: 'deny', rule: 'allow[0] api.github.com', reason: 'method_not_allowed' });
  });

  it('tunnel lines: allowed with byte counts, denied with none', () => {
    const allowed = lines.filter((l) => l.kind === 'tunnel' && l.host === 'api.github.com');
    for (const t of allowed) {
      expect(t).toMatchObject({ method: 'CONNECT', scheme: 'https', port: 443, path: '', status: 200, action: 'allow', reason: 'allowed', rule: 'allow[0] api.github.com' });
      expect(t.bytes_up).toBeGreaterThan(0); // TLS handshake + request
      expect(t.bytes_down).toBeGreaterThan(0);
    }
    const denied = lines.find((l) => l.kind === 'tunnel' && l.host === '203.0.113.9')!;
    expect(denied).toMatchObject({ method: 'CONNECT', port: 443, status: 403, action: 'deny', rule: null, reason: 'no_rule', bytes_up: 0, bytes_down: 0 });
  });

  it('a plain-HTTP line', () => {
    const line = lines.find((l) => l.scheme === 'http')!;
    expect(line).toMatchObject({ kind: 'request', host: 'api.github.com', port: 80, path: '/plain?q=redacted', status: 200, action: 'allow' });
  });

  it('query values never reach the log file', () => {
    const raw = readFileSync(join(airlock.session.dir, 'audit.jsonl'), 'utf8');
    expect(raw).not.toContain(SECRET);
    // One JSON object per line: the end lines, the admit lines of what went upstream, the start.
    const all = raw.trim().split('\n').map((l) => JSON.parse(l) as { event?: string });
    expect(all.filter((l) => l.event === undefined)).toHaveLength(lines.length);
    expect(all.filter((l) => l.event === 'admit')).toHaveLength(2); // the allowed https and plain requests
    expect(all.filter((l) => l.event === 'start')).toHaveLength(1);
  });
});

describe.concurrent('airlock audit', () => {
  it('prints a table row per line and a per-host summary', async () => {
    const r = await runCli(['audit', airlock.session.id, '--state-dir', airlock.stateDir]);
    expect(r.code, r.stderr).toBe(0);
    const [table, summary] = r.stdout.split('\nper host:\n');
    const rows = table!.trim().split('\n');
    expect(rows).toHaveLength(lines.length);
    expect(rows.find((row) => row.includes('/items?token=redacted'))).toMatch(/ALLOW\s+200\s+GET\s+https:\/\/api\.github\.com:443\/items\?token=redacted.* allowed \(allow\[0\] api\.github\.com\)/);
    expect(rows.find((row) => row.includes('/readonly'))).toMatch(/DENY\s+403\s+POST\s+.*method_not_allowed/);
    expect(rows.find((row) => row.includes('203.0.113.9'))).toMatch(/DENY\s+403\s+CONNECT\s+https:\/\/203\.0\.113\.9:443\s+no_rule/);
    expect(r.stdout).not.toContain(SECRET);
    const hosts = summary!.trim().split('\n');
    expect(hosts.find((h) => h.startsWith('api.github.com:443'))).toMatch(/allowed 3\s+denied 1\s/);
    expect(hosts.find((h) => h.startsWith('203.0.113.9:443'))).toMatch(/allowed 0\s+denied 1\s/);
    expect(hosts.find((h) => h.startsWith('api.github.com:80'))).toMatch(/allowed 1\s+denied 0\s/);
  }, 30_000);

  it('--json prints the raw lines', async () => {
    const r = await runCli(['audit', airlock.session.id, '--state-dir', airlock.stateDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const printed = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as AuditLine);
    expect(printed).toEqual(lines);
  }, 30_000);

  it('an unknown session is a usage error (exit 2) naming the session', async () => {
    const r = await runCli(['audit', 's-000000000000', '--state-dir', airlock.stateDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('s-000000000000');
  }, 30_000);

  it('a session id that is not an id is refused, not used as a path', async () => {
    const r = await runCli(['audit', '../../etc', '--state-dir', airlock.stateDir]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/invalid session id/);
  }, 30_000);
});
