// The narrowest rule for a refused request, and the policy file with it added: every other byte
// of the file kept, the result parsed again and checked to allow exactly that request.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { allowRequest, decide, narrowestRule, parsePolicy, RuleEditError } from '../../src/policy/index.js';
import type { RequestToAllow } from '../../src/policy/index.js';
import { REPO_ROOT } from '../helpers/servers.js';

const GET: RequestToAllow = { host: 'api.example.com', port: 443, scheme: 'https', method: 'GET', path: '/v2/items' };

/** The lines of `after` that are not in `before`, and whether `before`'s lines all survive in order. */
function added(before: string, after: string): string[] {
  const a = before.split('\n');
  const b = after.split('\n');
  const out: string[] = [];
  let i = 0;
  for (const line of b) {
    if (i < a.length && line === a[i]) i++;
    else out.push(line);
  }
  expect(i, 'every line of the old file is still there, in order').toBe(a.length);
  return out;
}

describe('narrowestRule', () => {
  it('names host, method and exact path; the port only when it is not 80 or 443', () => {
    expect(narrowestRule(GET).rule).toEqual({ host: 'api.example.com', methods: ['GET'], paths: ['/v2/items'] });
    expect(narrowestRule({ ...GET, port: 8443 }).rule).toEqual({ host: 'api.example.com', ports: [8443], methods: ['GET'], paths: ['/v2/items'] });
  });

  it('for a refused CONNECT only host and port are known, and it says so', () => {
    const { rule, notes } = narrowestRule({ ...GET, method: null, path: null });
    expect(rule).toEqual({ host: 'api.example.com' });
    expect(notes.join(' ')).toContain('allows any method and path');
  });

  it('writes a "*" in the path as "?", never as a wildcard over the rest of the path', () => {
    const { rule, notes } = narrowestRule({ ...GET, path: '/files/*/raw' });
    expect(rule.paths).toEqual(['/files/?/raw']);
    expect(notes.join(' ')).toContain('"*" in the path');
  });
});

describe('allowRequest', () => {
  it('keeps every comment and byte of a real policy file and adds the rule at the end of allow:', () => {
    for (const name of ['default.yaml', 'examples/github-dev.yaml', 'examples/npm-readonly.yaml', 'examples/claude-code.yaml']) {
      const file = join(REPO_ROOT, 'policies', name);
      const text = readFileSync(file, 'utf8');
      const edit = allowRequest(text, file, GET);
      expect(added(text, edit.text), name).toEqual(['  - host: api.example.com', '    methods: [GET]', '    paths: [/v2/items]']);
      expect(edit.policy.allow.at(-1)).toMatchObject({ host: 'api.example.com', methods: ['GET'], paths: ['/v2/items'], inspect: true });
      expect(decide(edit.policy, { phase: 'request', scheme: 'https', host: 'api.example.com', port: 443, method: 'GET', path: '/v2/items' }).action).toBe('allow');
      expect(decide(edit.policy, { phase: 'request', scheme: 'https', host: 'api.example.com', port: 443, method: 'POST', path: '/v2/items' }).action).toBe('deny');
      expect(decide(edit.policy, { phase: 'request', scheme: 'https', host: 'api.example.com', port: 443, method: 'GET', path: '/v2/other' }).action).toBe('deny');
    }
  });

  it('follows the layout it finds: flow lists, an empty allow:, a commented-out allow:, no allow: at all, unindented items', () => {
    const cases: [string, string][] = [
      ['version: 1\nname: a\nallow: [{host: b.example}] # rules\n', 'version: 1\nname: a\nallow: [{host: b.example}, {host: api.example.com, methods: [GET], paths: [/v2/items]}] # rules\n'],
      ['version: 1\nname: a\nallow: []\n', 'version: 1\nname: a\nallow: [{host: api.example.com, methods: [GET], paths: [/v2/items]}]\n'],
      [
        'version: 1\nname: a\nallow:\n  # - host: old.example\nlimits: {}\n',
        'version: 1\nname: a\nallow:\n  - host: api.example.com\n    methods: [GET]\n    paths: [/v2/items]\n  # - host: old.example\nlimits: {}\n',
      ],
      ['version: 1\nname: a\n', 'version: 1\nname: a\nallow:\n  - host: api.example.com\n    methods: [GET]\n    paths: [/v2/items]\n'],
      ['version: 1\nname: a\nallow:\n- host: b.example\n  methods: [GET]', 'version: 1\nname: a\nallow:\n- host: b.example\n  methods: [GET]\n- host: api.example.com\n  methods: [GET]\n  paths: [/v2/items]\n'],
    ];
    for (const [before, after] of cases) expect(allowRequest(before, 'p.yaml', GET).text).toBe(after);
  });

  it('quotes what YAML would read otherwise (IPv6, a path with ": " or "#")', () => {
    const v6 = allowRequest('version: 1\nname: a\nallow: []\n', 'p.yaml', { ...GET, host: '2001:db8::1', method: null, path: null });
    expect(v6.policy.allow[0]).toMatchObject({ host: '2001:db8::1', kind: 'ip' });
    const odd = allowRequest('version: 1\nname: a\n', 'p.yaml', { ...GET, path: "/a:%20b/c,d/'e'" });
    expect(odd.policy.allow[0]!.paths).toEqual(["/a:%20b/c,d/'e'"]);
  });

  it('refuses a request the policy allows already, and one no rule could allow (an ambiguous path)', () => {
    const text = 'version: 1\nname: a\nallow:\n  - host: api.example.com\n';
    expect(() => allowRequest(text, 'p.yaml', GET)).toThrow(RuleEditError);
    expect(() => allowRequest(text, 'p.yaml', GET)).toThrow('is already allowed');
    expect(() => allowRequest('version: 1\nname: a\n', 'p.yaml', { ...GET, path: '/a/%2e%2e/b' })).toThrow('no rule can allow');
  });

  it('says which credentials the rule lets reach a host they are bound to', () => {
    const text = 'version: 1\nname: a\ncredentials:\n  - name: api\n    env: [API_TOKEN]\n    secret: { env: X }\n    hosts: ["*.example.com"]\n  - name: other\n    env: [OTHER]\n    secret: { env: Y }\n    hosts: [other.test]\n';
    expect(allowRequest(text, 'p.yaml', GET).credentialReach).toEqual([{ name: 'api', hosts: ['*.example.com'] }]);
    expect(allowRequest(text, 'p.yaml', { ...GET, host: 'unbound.test' }).credentialReach).toEqual([]);
    // Nothing of a secret is in a rule: only host, port, method and path.
    expect(parsePolicy(allowRequest(text, 'p.yaml', GET).text, 'p.yaml').credentials).toEqual(parsePolicy(text, 'p.yaml').credentials);
  });
});
