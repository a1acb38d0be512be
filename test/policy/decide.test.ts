import { describe, expect, it } from 'vitest';
import { decide, inspectedHostPatterns, parsePolicy, type RequestFacts } from '../../src/policy/index.js';

const policy = parsePolicy(
  `
version: 1
name: decide-test
allow:
  - host: api.github.com                 # allow[0]
  - host: "*.githubusercontent.com"      # allow[1]
  - host: registry.npmjs.org             # allow[2]
    methods: [GET, HEAD]
  - host: uploads.example.com            # allow[3]
    ports: [443, 8443]
    paths: ["/v1/*"]
  - host: pinned.example.com             # allow[4]
    inspect: false
  - host: 10.0.0.5                       # allow[5]
    ports: [8080]
  - host: multi.example.com              # allow[6]
    methods: [GET]
  - host: multi.example.com              # allow[7]
    methods: [POST]
    paths: ["/graphql"]
  - host: "*.example.org"                # allow[8]
    inspect: false
  - host: "*.example.org"                # allow[9]
    ports: [8443]
`,
  'decide-test.yaml',
);

type Row = [
  name: string,
  facts: Partial<RequestFacts> & { host: string },
  expected: { action: 'allow' | 'deny'; reason: string; rule: string | null; inspect?: boolean },
];

const req = (host: string, method = 'GET', path = '/', port = 443): RequestFacts => ({
  phase: 'request',
  scheme: 'https',
  host,
  port,
  method,
  path,
});
const connect = (host: string, port = 443): RequestFacts => ({ phase: 'connect', scheme: 'https', host, port });

const rows: Row[] = [
  // exact host
  ['exact host', req('api.github.com', 'POST', '/repos'), { action: 'allow', reason: 'allowed', rule: 'allow[0] api.github.com' }],
  ['exact host, other name', req('github.com'), { action: 'deny', reason: 'no_rule', rule: null }],
  ['exact host does not cover subdomain', req('x.api.github.com'), { action: 'deny', reason: 'no_rule', rule: null }],
  // wildcard
  ['wildcard subdomain', req('raw.githubusercontent.com'), { action: 'allow', reason: 'allowed', rule: 'allow[1] *.githubusercontent.com' }],
  ['wildcard deep subdomain', req('a.b.githubusercontent.com'), { action: 'allow', reason: 'allowed', rule: 'allow[1] *.githubusercontent.com' }],
  ['wildcard apex denied', req('githubusercontent.com'), { action: 'deny', reason: 'no_rule', rule: null }],
  ['wildcard suffix confusion denied', req('evilgithubusercontent.com'), { action: 'deny', reason: 'no_rule', rule: null }],
  // methods
  ['method allowed', req('registry.npmjs.org', 'HEAD', '/left-pad'), { action: 'allow', reason: 'allowed', rule: 'allow[2] registry.npmjs.org' }],
  ['method denied', req('registry.npmjs.org', 'PUT', '/left-pad'), { action: 'deny', reason: 'method_not_allowed', rule: 'allow[2] registry.npmjs.org' }],
  ['methods are case-sensitive', req('registry.npmjs.org', 'get', '/left-pad'), { action: 'deny', reason: 'method_not_allowed', rule: 'allow[2] registry.npmjs.org' }],
  // ports
  ['default port 443', req('api.github.com', 'GET', '/', 443), { action: 'allow', reason: 'allowed', rule: 'allow[0] api.github.com' }],
  ['default port 80', { ...req('api.github.com', 'GET', '/', 80), scheme: 'http' }, { action: 'allow', reason: 'allowed', rule: 'allow[0] api.github.com' }],
  ['port 8443 not in default ports', req('api.github.com', 'GET', '/', 8443), { action: 'deny', reason: 'port_not_allowed', rule: 'allow[0] api.github.com' }],
  ['port 8443 when listed', req('uploads.example.com', 'GET', '/v1/x', 8443), { action: 'allow', reason: 'allowed', rule: 'allow[3] uploads.example.com' }],
  ['port 80 not listed', req('uploads.example.com', 'GET', '/v1/x', 80), { action: 'deny', reason: 'port_not_allowed', rule: 'allow[3] uploads.example.com' }],
  ['port 22 denied', connect('api.github.com', 22), { action: 'deny', reason: 'port_not_allowed', rule: 'allow[0] api.github.com' }],
  // paths
  ['path allowed', req('uploads.example.com', 'POST', '/v1/x'), { action: 'allow', reason: 'allowed', rule: 'allow[3] uploads.example.com' }],
  ['path denied', req('uploads.example.com', 'POST', '/v2/x'), { action: 'deny', reason: 'path_not_allowed', rule: 'allow[3] uploads.example.com' }],
  ['path unknown with path rule', { ...req('uploads.example.com'), path: undefined }, { action: 'deny', reason: 'path_not_allowed', rule: 'allow[3] uploads.example.com' }],
  // several rules for one host: the furthest failure is reported
  ['second rule allows', req('multi.example.com', 'POST', '/graphql'), { action: 'allow', reason: 'allowed', rule: 'allow[7] multi.example.com' }],
  ['method matched on a later rule, path not', req('multi.example.com', 'POST', '/rest'), { action: 'deny', reason: 'path_not_allowed', rule: 'allow[7] multi.example.com' }],
  ['no rule matches method', req('multi.example.com', 'DELETE', '/graphql'), { action: 'deny', reason: 'method_not_allowed', rule: 'allow[6] multi.example.com' }],
  // connect phase
  ['connect inspected', connect('api.github.com'), { action: 'allow', reason: 'allowed', rule: 'allow[0] api.github.com', inspect: true }],
  ['connect with method rule', connect('registry.npmjs.org'), { action: 'allow', reason: 'allowed', rule: 'allow[2] registry.npmjs.org', inspect: true }],
  ['connect with path rule', connect('uploads.example.com', 8443), { action: 'allow', reason: 'allowed', rule: 'allow[3] uploads.example.com', inspect: true }],
  ['connect not inspected', connect('pinned.example.com'), { action: 'allow', reason: 'allowed', rule: 'allow[4] pinned.example.com', inspect: false }],
  ['connect unknown host', connect('example.net'), { action: 'deny', reason: 'no_rule', rule: null, inspect: false }],
  ['connect picks first rule on the port', connect('a.example.org', 443), { action: 'allow', reason: 'allowed', rule: 'allow[8] *.example.org', inspect: false }],
  ['connect skips rules without the port', connect('a.example.org', 8443), { action: 'allow', reason: 'allowed', rule: 'allow[9] *.example.org', inspect: true }],
  // IP literal
  ['IP literal rule', req('10.0.0.5', 'GET', '/', 8080), { action: 'allow', reason: 'allowed', rule: 'allow[5] 10.0.0.5' }],
  ['IP literal wrong port', req('10.0.0.5', 'GET', '/', 443), { action: 'deny', reason: 'port_not_allowed', rule: 'allow[5] 10.0.0.5' }],
  ['other IP', req('10.0.0.6', 'GET', '/', 8080), { action: 'deny', reason: 'no_rule', rule: null }],
  // not normalised -> fail closed
  ['un-normalised host', req('x/.githubusercontent.com'), { action: 'deny', reason: 'invalid_host', rule: null }],
  ['empty host', req(''), { action: 'deny', reason: 'invalid_host', rule: null }],
];

describe('decide', () => {
  it.each(rows)('%s', (_name, facts, expected) => {
    const decision = decide(policy, facts as RequestFacts);
    expect(decision.action).toBe(expected.action);
    expect(decision.reason).toBe(expected.reason);
    expect(decision.rule).toBe(expected.rule);
    if (expected.inspect !== undefined) expect(decision.inspect).toBe(expected.inspect);
  });

  it('explains denials', () => {
    expect(decide(policy, req('api.example.com')).message).toBe(
      'host api.example.com matches no allow rule in policy "decide-test"',
    );
    const method = decide(policy, req('registry.npmjs.org', 'PUT', '/left-pad')).message;
    expect(method).toContain('PUT');
    expect(method).toContain('registry.npmjs.org');
    expect(method).toContain('GET, HEAD');
    const path = decide(policy, req('uploads.example.com', 'POST', '/v2/x')).message;
    expect(path).toContain('/v2/x');
    expect(path).toContain('/v1/*');
    expect(decide(policy, connect('api.github.com', 22)).message).toContain('80, 443');
  });

  describe('report mode', () => {
    const report = parsePolicy(
      `
version: 1
name: r
mode: report
allow:
  - host: api.example.com
    methods: [GET]
    paths: ["/v1/*"]
  - host: blind.example.com
    inspect: false
`,
      'r.yaml',
    );
    const enforce = parsePolicy('version: 1\nname: e\nallow:\n  - host: api.example.com\n    methods: [GET]\n    paths: ["/v1/*"]\n', 'e.yaml');

    it.each([
      ['a host with no rule', req('other.example.com'), 'no_rule', null],
      ['a port the rule does not list', connect('api.example.com', 8443), 'port_not_allowed', 'allow[0] api.example.com'],
      ['a method the rule does not list', req('api.example.com', 'POST', '/v1/x'), 'method_not_allowed', 'allow[0] api.example.com'],
      ['a path the rule does not list', req('api.example.com', 'GET', '/v2/x'), 'path_not_allowed', 'allow[0] api.example.com'],
    ])('turns the denial of %s into would_deny, inspected', (_what, facts, reason, rule) => {
      const d = decide(report, facts);
      expect(d).toMatchObject({ action: 'would_deny', reason, rule, inspect: true });
      // The same request under enforce mode is denied for the same reason.
      if (facts.host === 'api.example.com') expect(decide(enforce, facts)).toMatchObject({ action: 'deny', reason });
    });

    it('still refuses a malformed host', () => {
      expect(decide(report, req('bad host'))).toMatchObject({ action: 'deny', reason: 'invalid_host' });
    });

    it('allows what the rules allow, as enforce mode does (a blind rule stays blind)', () => {
      expect(decide(report, req('api.example.com', 'GET', '/v1/x'))).toMatchObject({ action: 'allow', reason: 'allowed' });
      expect(decide(report, connect('blind.example.com'))).toMatchObject({ action: 'allow', inspect: false });
    });
  });

  it('denies everything with an empty policy', () => {
    const empty = parsePolicy('version: 1\nname: empty\nallow: []\n', 'empty.yaml');
    expect(decide(empty, connect('api.github.com'))).toMatchObject({ action: 'deny', reason: 'no_rule', rule: null });
  });
});

describe('inspectedHostPatterns', () => {
  it('lists DNS subtrees and IPs of inspected rules only', () => {
    const p = parsePolicy(
      `
version: 1
name: ca
allow:
  - host: api.github.com
  - host: "*.githubusercontent.com"
  - host: api.github.com
    methods: [GET]
  - host: pinned.example.com
    inspect: false
  - host: 10.0.0.5
  - host: "[::1]"
credentials:
  - name: x
    env: [X_TOKEN]
    secret: { env: X }
    hosts: [credential-only.example.com]
`,
      'ca.yaml',
    );
    expect(inspectedHostPatterns(p)).toEqual({
      dns: ['api.github.com', 'githubusercontent.com'],
      ips: ['10.0.0.5', '::1'],
    });
  });
});
