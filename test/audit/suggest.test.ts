// The policy suggester on its own: audit lines in, a least-privilege policy out. Every suggestion
// is checked the way it will be used: parsed with parsePolicy and asked with decide().
import { describe, expect, it } from 'vitest';
import { decide, parsePolicy } from '../../src/policy/index.js';
import type { Policy, RequestFacts } from '../../src/policy/index.js';
import { learnFromAudit, suggestPolicy, SuggestError } from '../../src/audit/suggest.js';
import type { AuditLine } from '../../src/audit/report.js';

const SESSION = 's-0123456789ab';
const NOW = new Date('2030-04-05T06:07:08.999Z');

let seq = 0;
/** An audit line; defaults: an allowed HTTPS GET / on port 443. */
function line(over: Partial<AuditLine> & Pick<AuditLine, 'host'>): AuditLine {
  seq++;
  return {
    time: `2030-04-05T06:00:${String(seq % 60).padStart(2, '0')}.000Z`,
    session: SESSION,
    id: `x-${seq}`,
    kind: 'request',
    method: 'GET',
    scheme: 'https',
    port: 443,
    path: '/',
    status: 200,
    action: 'allow',
    rule: null,
    reason: 'allowed',
    credentials: [],
    bytes_up: 0,
    bytes_down: 10,
    duration_ms: 1,
    ...over,
  };
}

function tunnel(over: Partial<AuditLine> & Pick<AuditLine, 'host'>): AuditLine {
  return line({ kind: 'tunnel', method: 'CONNECT', path: '', ...over });
}

function request(host: string, method: string, path: string, port = 443, scheme: 'http' | 'https' = 'https'): RequestFacts {
  return { phase: 'request', scheme, host, port, method, path };
}

function connect(host: string, port = 443): RequestFacts {
  return { phase: 'connect', scheme: 'https', host, port };
}

function allowed(policy: Policy, facts: RequestFacts): boolean {
  return decide(policy, facts).action === 'allow';
}

/** A report-mode session: GET+POST on one host, GET on another, 8443 on a third. */
const SESSION_LINES: AuditLine[] = [
  tunnel({ host: 'api.example.com' }),
  line({ host: 'api.example.com', method: 'GET', path: '/v1/items?page=redacted' }),
  line({ host: 'api.example.com', method: 'POST', path: '/v1/items', action: 'would_deny', reason: 'method_not_allowed', rule: 'allow[0] api.example.com' }),
  tunnel({ host: 'cdn.example.com', action: 'would_deny', reason: 'no_rule' }),
  line({ host: 'cdn.example.com', path: '/lib.js', action: 'would_deny', reason: 'no_rule' }),
  tunnel({ host: 'alt.example.com', port: 8443, action: 'would_deny', reason: 'port_not_allowed', rule: 'allow[1] alt.example.com' }),
  line({ host: 'alt.example.com', port: 8443, path: '/status', action: 'would_deny', reason: 'port_not_allowed', rule: 'allow[1] alt.example.com' }),
];

describe('learnFromAudit', () => {
  it('makes one rule per host, sorted, with exactly the ports and methods used', () => {
    const learned = learnFromAudit(SESSION_LINES);
    expect(learned.rules.map((r) => ({ host: r.host, ports: r.ports, methods: r.methods, paths: r.paths, inspect: r.inspect }))).toEqual([
      { host: 'alt.example.com', ports: [8443], methods: ['GET'], paths: null, inspect: true },
      { host: 'api.example.com', ports: [443], methods: ['GET', 'POST'], paths: null, inspect: true },
      { host: 'cdn.example.com', ports: [443], methods: ['GET'], paths: null, inspect: true },
    ]);
    expect(learned.used).toBe(SESSION_LINES.length);
    expect(learned.skipped).toEqual({});
    expect(learned.rules[1]!.wouldDeny).toEqual({ method_not_allowed: 1 });
    expect(learned.rules[1]!.count).toBe(2);
  });

  it('lists exact paths (without the query) only when asked', () => {
    const learned = learnFromAudit(
      [...SESSION_LINES, line({ host: 'api.example.com', path: '/v1/items?page=redacted&x=redacted' }), line({ host: 'api.example.com', path: '/a/b' })],
      { paths: true },
    );
    expect(learned.rules.find((r) => r.host === 'api.example.com')!.paths).toEqual(['/a/b', '/v1/items']);
  });

  it('turns hosts seen only as CONNECT (no inspected request) into inspect: false rules', () => {
    const learned = learnFromAudit([
      tunnel({ host: 'pinned.example.com', rule: 'allow[0] pinned.example.com' }),
      tunnel({ host: 'pinned.example.com', port: 8443, action: 'would_deny', reason: 'port_not_allowed' }),
      // A host used through inspected tunnels on 443 and blind on 8443: two rules.
      tunnel({ host: 'mixed.example.com' }),
      line({ host: 'mixed.example.com', method: 'PUT' }),
      tunnel({ host: 'mixed.example.com', port: 8443 }),
    ]);
    expect(learned.rules.map((r) => ({ host: r.host, ports: r.ports, methods: r.methods, inspect: r.inspect, count: r.count }))).toEqual([
      { host: 'mixed.example.com', ports: [443], methods: ['PUT'], inspect: true, count: 1 },
      { host: 'mixed.example.com', ports: [8443], methods: null, inspect: false, count: 1 },
      { host: 'pinned.example.com', ports: [443, 8443], methods: null, inspect: false, count: 2 },
    ]);
    expect(learned.rules[2]!.wouldDeny).toEqual({ port_not_allowed: 1 });
  });

  it('does not mistake a tunnel whose only requests were refused for an uninspected one', () => {
    const learned = learnFromAudit([
      tunnel({ host: 'leak.example.com', action: 'would_deny', reason: 'no_rule' }),
      line({ host: 'leak.example.com', path: '/steal', status: 403, action: 'deny', reason: 'credential_misuse' }),
      tunnel({ host: 'front.example.com' }),
      line({ host: 'front.example.com', status: 403, action: 'deny', reason: 'host_mismatch' }),
    ]);
    expect(learned.rules).toEqual([]);
  });

  it('leaves out refused requests and refusals no rule can change', () => {
    const learned = learnFromAudit([
      line({ host: 'ok.example.com' }),
      line({ host: 'leak.example.com', status: 403, action: 'deny', reason: 'credential_misuse' }),
      line({ host: 'bad.example.com', status: 400, action: 'deny', reason: 'bad_request' }),
      line({ host: 'front.example.com', status: 403, action: 'deny', reason: 'host_mismatch' }),
      line({ host: 'auth.example.com', status: 407, action: 'deny', reason: 'auth_required' }),
      // Even if such a line claimed to be allowed, it is not a policy matter.
      line({ host: 'odd.example.com', action: 'would_deny', reason: 'credential_misuse' }),
      // Denied by an enforcing policy: not used.
      tunnel({ host: 'evil.example.com', status: 403, action: 'deny', reason: 'no_rule' }),
      line({ host: 'ok.example.com', method: 'DELETE', status: 403, action: 'deny', reason: 'method_not_allowed' }),
      // Unusable hosts and garbage.
      line({ host: '-', port: 0, status: 400, action: 'deny', reason: 'bad_request' }),
      tunnel({ host: '-', port: 0, status: 400, action: 'deny', reason: 'invalid_host' }),
      line({ host: '*.example.com' }),
      line({ host: 'Upper.Example.com' }),
      { nonsense: true } as unknown as AuditLine,
    ]);
    expect(learned.rules.map((r) => [r.host, r.methods])).toEqual([['ok.example.com', ['GET']]]);
    expect(learned.used).toBe(1);
    expect(learned.skipped).toEqual({
      auth_required: 1,
      bad_request: 2,
      credential_misuse: 2,
      'deny:method_not_allowed': 1,
      'deny:no_rule': 1,
      host_mismatch: 1,
      invalid_host: 3,
      malformed: 1,
    });
  });

  it('still learns from allowed requests whose upstream failed', () => {
    const learned = learnFromAudit([line({ host: 'down.example.com', status: 502, reason: 'upstream_error' })]);
    expect(learned.rules.map((r) => r.host)).toEqual(['down.example.com']);
  });

  it('does not widen a rule for a method a policy cannot name', () => {
    const learned = learnFromAudit([line({ host: 'a.example.com' }), line({ host: 'a.example.com', method: 'M-SEARCH' })]);
    expect(learned.rules[0]!.methods).toEqual(['GET']);
    expect(learned.notes[0]).toMatch(/M-SEARCH/);
    expect(learned.skipped).toEqual({ unexpressible: 1 });
  });
});

describe('suggestPolicy', () => {
  it('writes a valid enforce-mode policy that allows exactly what was used', () => {
    const s = suggestPolicy(SESSION_LINES, { session: SESSION, now: NOW });
    const policy = parsePolicy(s.text, 'suggested.yaml');
    expect(policy).toMatchObject({ version: 1, name: `suggested-${SESSION}`, mode: 'enforce', credentials: [], limits: { maxUploadBytes: null } });
    expect(s.data.allow).toEqual([
      { host: 'alt.example.com', ports: [8443], methods: ['GET'] },
      { host: 'api.example.com', ports: [443], methods: ['GET', 'POST'] },
      { host: 'cdn.example.com', ports: [443], methods: ['GET'] },
    ]);

    // What the session did is allowed...
    for (const l of SESSION_LINES) {
      const facts = l.kind === 'tunnel' ? connect(l.host, l.port) : request(l.host, l.method, l.path.split('?')[0]!, l.port);
      expect(allowed(policy, facts), `${l.method} ${l.host}:${l.port}${l.path}`).toBe(true);
    }
    // ...and nothing next to it.
    expect(decide(policy, request('api.example.com', 'DELETE', '/v1/items')).reason).toBe('method_not_allowed');
    expect(decide(policy, request('cdn.example.com', 'POST', '/lib.js')).reason).toBe('method_not_allowed');
    expect(decide(policy, connect('api.example.com', 8443)).reason).toBe('port_not_allowed');
    expect(decide(policy, connect('alt.example.com', 443)).reason).toBe('port_not_allowed');
    expect(decide(policy, request('api.example.com', 'GET', '/', 80, 'http')).reason).toBe('port_not_allowed');
    expect(decide(policy, connect('other.example.com')).reason).toBe('no_rule');
    expect(decide(policy, connect('x.api.example.com')).reason).toBe('no_rule');
  });

  it('says where it was learned from, when, and what was left out', () => {
    const s = suggestPolicy([...SESSION_LINES, line({ host: 'leak.example.com', status: 403, action: 'deny', reason: 'credential_misuse' })], { session: SESSION, now: NOW });
    const [header] = s.text.split('\nversion: 1\n');
    expect(header).toContain(`from session ${SESSION} on 2030-04-05T06:07:08Z`);
    expect(header).toContain('7 audit lines used');
    expect(header).toContain('credential_misuse 1');
    expect(header).toMatch(/paths: left out \(any path\)/);
    for (const l of header!.split('\n').filter(Boolean)) expect(l.startsWith('#')).toBe(true);
    // Per-rule comments say what each rule is based on.
    expect(s.text).toMatch(/# 2 requests; the session's policy would have denied: method_not_allowed 1\n\s+- host: api\.example\.com/);
    expect(s.text).toMatch(/# 1 request; the session's policy would have denied: no_rule 1\n\s+- host: cdn\.example\.com/);
  });

  it('is stable: the same lines in any order give the same text', () => {
    const a = suggestPolicy(SESSION_LINES, { session: SESSION, now: NOW }).text;
    const b = suggestPolicy([...SESSION_LINES].reverse(), { session: SESSION, now: NOW }).text;
    expect(b).toBe(a);
  });

  it('leaves ports out when exactly [80, 443] was used, and lists a single default port', () => {
    const s = suggestPolicy(
      [
        line({ host: 'both.example.com' }),
        line({ host: 'both.example.com', scheme: 'http', port: 80 }),
        line({ host: 'tls.example.com' }),
        line({ host: 'plain.example.com', scheme: 'http', port: 80 }),
      ],
      { session: SESSION, now: NOW },
    );
    expect(s.data.allow).toEqual([
      { host: 'both.example.com', methods: ['GET'] },
      { host: 'plain.example.com', ports: [80], methods: ['GET'] },
      { host: 'tls.example.com', ports: [443], methods: ['GET'] },
    ]);
    expect(s.policy.allow.map((r) => r.ports)).toEqual([[80, 443], [80], [443]]);
  });

  it('with paths: allows exactly the paths used, any query', () => {
    const s = suggestPolicy(SESSION_LINES, { session: SESSION, now: NOW, paths: true });
    expect(s.policy.allow.find((r) => r.host === 'api.example.com')!.paths).toEqual(['/v1/items']);
    expect(allowed(s.policy, request('api.example.com', 'POST', '/v1/items'))).toBe(true);
    expect(decide(s.policy, request('api.example.com', 'GET', '/v1/items/2')).reason).toBe('path_not_allowed');
    expect(decide(s.policy, request('api.example.com', 'GET', '/')).reason).toBe('path_not_allowed');
    expect(s.text).toContain('paths: the exact paths the session used');
  });

  it('writes inspect: false rules without methods, and they parse and allow the tunnel only', () => {
    const s = suggestPolicy([tunnel({ host: 'pinned.example.com' })], { session: SESSION, now: NOW });
    expect(s.data.allow).toEqual([{ host: 'pinned.example.com', ports: [443], inspect: false }]);
    expect(decide(s.policy, connect('pinned.example.com'))).toMatchObject({ action: 'allow', inspect: false });
    expect(decide(s.policy, connect('pinned.example.com', 8443)).reason).toBe('port_not_allowed');
  });

  it('handles IP hosts', () => {
    const s = suggestPolicy([line({ host: '::1', scheme: 'http', port: 8080 }), line({ host: '10.0.0.5' })], { session: SESSION, now: NOW });
    expect(s.policy.allow.map((r) => [r.host, r.kind])).toEqual([
      ['10.0.0.5', 'ip'],
      ['::1', 'ip'],
    ]);
    expect(allowed(s.policy, request('::1', 'GET', '/', 8080, 'http'))).toBe(true);
  });

  it('suggests a deny-everything policy when nothing was used', () => {
    const s = suggestPolicy([tunnel({ host: 'evil.example.com', status: 403, action: 'deny', reason: 'no_rule' })], { session: SESSION, now: NOW });
    expect(s.policy.allow).toEqual([]);
    expect(s.text).toContain('allow: []');
    expect(s.text).toContain('denies every request');
  });

  it('keeps credentials:, limits: and container: of a --from policy (and nothing else of it)', () => {
    const from = [
      'version: 1',
      'name: learned-from',
      'mode: report',
      'allow:',
      '  - host: "*.example.com"',
      'credentials:',
      '  - preset: github',
      '    secret: { env: AIRLOCK_GITHUB_TOKEN }',
      '  - name: api',
      '    env: [API_TOKEN]',
      '    secret: { file: /run/secrets/api }',
      '    hosts: [api.example.com, "*.api.example.com"]',
      'limits:',
      '  max_upload_bytes: 1048576',
      'container:',
      '  memory: 8g',
      '',
    ].join('\n');
    const s = suggestPolicy(SESSION_LINES, { session: SESSION, now: NOW, name: 'api-client', from: { text: from, source: 'policies/x.yaml\n# injected' } });
    expect(s.policy.name).toBe('api-client');
    expect(s.policy.mode).toBe('enforce');
    expect(s.policy.allow.map((r) => r.host)).toEqual(['alt.example.com', 'api.example.com', 'cdn.example.com']);
    expect(s.policy.credentials.map((c) => [c.name, c.hosts])).toEqual([
      ['github', ['api.github.com', 'github.com', 'uploads.github.com', '*.githubusercontent.com']],
      ['api', ['api.example.com', '*.api.example.com']],
    ]);
    expect(s.policy.credentials[1]!.secret).toEqual({ kind: 'file', path: '/run/secrets/api' });
    expect(s.policy.limits.maxUploadBytes).toBe(1048576);
    expect(s.policy.container).toEqual({ pids: null, memoryBytes: 8 * 1024 ** 3, cpus: null });
    expect(s.text).toContain('kept from policies/x.yaml # injected.');
  });

  it('refuses an invalid --from policy and an invalid name', () => {
    expect(() => suggestPolicy(SESSION_LINES, { session: SESSION, from: { text: 'version: 1\nname: x\nalow: []\n', source: 'bad.yaml' } })).toThrow(/alow/);
    expect(() => suggestPolicy(SESSION_LINES, { session: SESSION, name: 'has space' })).toThrow(SuggestError);
  });

  it('falls back to a valid name for long session ids', () => {
    const long = 's-' + 'a'.repeat(60);
    expect(suggestPolicy([], { session: long }).policy.name).toBe(long);
  });
});
