// Method rules against method overrides: decide() on the overrides the proxy found (the proxy's
// reading of headers and query is tested in test/proxy/target.test.ts).
import { describe, expect, it } from 'vitest';
import { decide, parsePolicy, type RequestFacts } from '../../src/policy/index.js';

const policy = parsePolicy(
  `
version: 1
name: method-override-unit
allow:
  - host: get.example.com            # allow[0]
    methods: [GET, HEAD]
  - host: patch.example.com          # allow[1]
    methods: [POST, PATCH]
    paths: ["/api/*"]
  - host: open.example.com           # allow[2]
  - host: layered.example.com        # allow[3]
    methods: [GET]
    paths: ["/v1/*"]
  - host: layered.example.com        # allow[4]
`,
  'method-override-unit.yaml',
);

function req(host: string, method: string, path: string, extra: Partial<RequestFacts> = {}): RequestFacts {
  return { phase: 'request', scheme: 'https', host, port: 443, method, path, rawPath: path, ...extra };
}

describe('decide: methods: rules refuse overrides to other methods', () => {
  const override = (method: string, via = 'header X-HTTP-Method-Override') => ({ methodOverrides: [{ via, method }] });

  it('GET with an override to DELETE on a GET-only rule → method_not_allowed naming the override and the rule', () => {
    const d = decide(policy, req('get.example.com', 'GET', '/x', override('DELETE')));
    expect(d).toMatchObject({ action: 'deny', reason: 'method_not_allowed', rule: 'allow[0] get.example.com' });
    expect(d.message).toContain('header X-HTTP-Method-Override');
    expect(d.message).toContain('DELETE');
    expect(d.message).toContain('allow[0] get.example.com');
  });

  it('_method in the query is judged the same way', () => {
    const d = decide(policy, req('get.example.com', 'GET', '/x', override('PUT', 'query parameter _method')));
    expect(d).toMatchObject({ action: 'deny', reason: 'method_not_allowed' });
    expect(d.message).toContain('query parameter _method');
  });

  it('an override to an allowed method passes', () => {
    expect(decide(policy, req('get.example.com', 'GET', '/x', override('HEAD')))).toMatchObject({ action: 'allow' });
    expect(decide(policy, req('patch.example.com', 'POST', '/api/x', override('PATCH')))).toMatchObject({ action: 'allow' });
  });

  it('every override must be allowed', () => {
    const d = decide(policy, req('patch.example.com', 'POST', '/api/x', {
      methodOverrides: [
        { via: 'header X-HTTP-Method-Override', method: 'PATCH' },
        { via: 'header X-HTTP-Method', method: 'DELETE' },
      ],
    }));
    expect(d).toMatchObject({ action: 'deny', reason: 'method_not_allowed', rule: 'allow[1] patch.example.com' });
    expect(d.message).toContain('header X-HTTP-Method asks');
  });

  it('an empty or odd override names no allowed method', () => {
    expect(decide(policy, req('get.example.com', 'GET', '/x', override('')))).toMatchObject({ action: 'deny', reason: 'method_not_allowed' });
    expect(decide(policy, req('get.example.com', 'GET', '/x', override('GET, DELETE')))).toMatchObject({ action: 'deny', reason: 'method_not_allowed' });
  });

  it('a rule without methods: is unaffected, also after a methods: rule refused the override', () => {
    expect(decide(policy, req('open.example.com', 'GET', '/x', override('DELETE')))).toMatchObject({ action: 'allow', rule: 'allow[2] open.example.com' });
    expect(decide(policy, req('layered.example.com', 'GET', '/v1/x', override('DELETE')))).toMatchObject({ action: 'allow', rule: 'allow[4] layered.example.com' });
  });

  it('a plain method refusal keeps its message', () => {
    const d = decide(policy, req('get.example.com', 'DELETE', '/x'));
    expect(d).toMatchObject({ action: 'deny', reason: 'method_not_allowed' });
    expect(d.message).toBe('DELETE /x on get.example.com is not allowed: allow[0] get.example.com allows methods GET, HEAD');
  });
});
