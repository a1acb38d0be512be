// Path rules against encodings servers decode differently: the pure classifier and decide() on
// the facts the proxy passes.
import { describe, expect, it } from 'vitest';
import { decide, parsePolicy, type RequestFacts } from '../../src/policy/index.js';
import { ambiguousPathEncoding, withoutPathParameters } from '../../src/policy/path-encoding.js';

describe('ambiguousPathEncoding', () => {
  const AMBIGUOUS: [path: string, says: RegExp][] = [
    ['/v1/..;/admin', /dot segment/],
    ['/v1/..;jsessionid=1/admin', /dot segment/],
    ['/v1/.;/x', /dot segment/],
    ['/v1/.;x', /dot segment/],
    ['/v1/%2e%2e;x/admin', /dot segment/],
    ['/v1/..%3bx/admin', /dot segment/],
    ['/v1/a/%2e%2e/b', /dot segment/],
    ['/v1/a/%2E/b', /dot segment/],
    ['/v1/a/.%2e/b', /dot segment/],
    ['/v1/a/%2e./b', /dot segment/],
    ['/v1/.../b', /dot segment/],
    ['/v1/..%20/admin', /dot segment/],
    ['/v1/..%2fadmin', /encoded slash/],
    ['/v1/..%2Fadmin', /encoded slash/],
    ['/v1/%2e%2e%2fadmin', /encoded slash/],
    ['/v1/..%5cadmin', /encoded backslash/],
    ['/v1/..%5Cadmin', /encoded backslash/],
    ['/v1/..\\admin', /backslash/],
    ['/v1/a\\b', /backslash/],
    ['/v1/%252e%252e/admin', /double-encoded/],
    ['/v1/..%252fadmin', /double-encoded/],
    ['/v1/%25%32%65', /double-encoded/],
    ['/v1/%25aa', /double-encoded/],
    ['/files/secret.key%00.txt', /control character/],
    ['/v1/a%0ab', /control character/],
    ['/v1/a%7fb', /control character/],
    ['/v1/%c0%ae%c0%ae/admin', /overlong/],
    ['/v1/..%c0%afadmin', /overlong/],
    ['/v1/%C1%9C', /overlong/],
    ['/v1/%e0%80%ae', /overlong/],
    ['/v1/%f0%80%80%ae', /overlong/],
    ['/v1/%u002e%u002e/admin', /two hex digits/],
    ['/v1/100%', /two hex digits/],
    ['/v1/%zz', /two hex digits/],
    ['/v1/%ef%bc%8e%ef%bc%8e/admin', /dot segment/],
    ['/v1/..%ef%bc%8fadmin', /normalisation/],
    ['/v1/..%ef%bc%bcadmin', /normalisation/],
  ];
  it.each(AMBIGUOUS)('%s is ambiguous (%s)', (path, says) => {
    expect(ambiguousPathEncoding(path)).toMatch(says);
  });

  const ORDINARY = [
    '/',
    '/v1/items',
    '/v1/a%20b',
    '/v1/caf%C3%A9',
    '/v1/caf%c3%a9',
    '/v1/%E6%97%A5%E6%9C%AC',
    '/v1/100%25',
    '/v1/100%25zz',
    '/v1/file%2ejson',
    '/v1/.hidden',
    '/v1/..hidden',
    '/v1/a..b',
    '/v1/a;v=1',
    '/v1/a;v=1/b',
    '/v1//double',
    '/v1/~user/x',
    '/v1/a+b',
    '/repos/o/r/compare/main...feature',
    // Plain dot segments are resolved before matching and forwarding, not refused.
    '/v1/../admin',
    '/v1/./x',
  ];
  it.each(ORDINARY)('%s is not ambiguous', (path) => {
    expect(ambiguousPathEncoding(path)).toBeNull();
  });
});

describe('withoutPathParameters', () => {
  it.each([
    ['/files/secret.key;.txt', '/files/secret.key'],
    ['/v1;x/a;b=c/d', '/v1/a/d'],
    ['/v1/a', '/v1/a'],
    ['/v1/;x/', '/v1//'],
  ])('%s → %s', (path, bare) => {
    expect(withoutPathParameters(path)).toBe(bare);
  });
});

const policy = parsePolicy(
  `
version: 1
name: path-encoding-unit
allow:
  - host: paths.example.com          # allow[0]
    paths: ["/v1/*", "/files/*.txt"]
  - host: open.example.com           # allow[1]
  - host: layered.example.com        # allow[2]
    methods: [GET]
    paths: ["/v1/*"]
  - host: layered.example.com        # allow[3]
`,
  'path-encoding-unit.yaml',
);

function req(host: string, method: string, pathWithQuery: string, extra: Partial<RequestFacts> = {}): RequestFacts {
  const path = pathWithQuery.split('?')[0]!;
  return { phase: 'request', scheme: 'https', host, port: 443, method, path, rawPath: path, ...extra };
}

describe('decide: paths: rules refuse ambiguous encodings', () => {
  it.each(['/v1/..;/admin', '/v1/..%2fadmin', '/v1/%2e%2e%2fadmin', '/v1/..%5cadmin', '/v1/%252e%252e/admin', '/files/secret.key%00.txt'])(
    '%s → path_not_allowed, the message says ambiguous and names the rule',
    (path) => {
      const d = decide(policy, req('paths.example.com', 'GET', path));
      expect(d).toMatchObject({ action: 'deny', reason: 'path_not_allowed', rule: 'allow[0] paths.example.com' });
      expect(d.message).toMatch(/ambiguous encoding/);
      expect(d.message).toContain('allow[0] paths.example.com');
      expect(d.message).toContain(path);
    },
  );

  it('judges the path as sent: an encoded dot segment resolved inside /v1/ is still refused', () => {
    const d = decide(policy, req('paths.example.com', 'GET', '/v1/b', { rawPath: '/v1/a/%2e%2e/b' }));
    expect(d).toMatchObject({ action: 'deny', reason: 'path_not_allowed' });
    expect(d.message).toContain('/v1/a/%2e%2e/b');
  });

  it('a backslash the proxy resolved is still refused', () => {
    const d = decide(policy, req('paths.example.com', 'GET', '/v1/a/b', { rawPath: '/v1/a\\b' }));
    expect(d).toMatchObject({ action: 'deny', reason: 'path_not_allowed' });
    expect(d.message).toMatch(/backslash/);
  });

  it('";" parameters: allowed only if the path without them is allowed too', () => {
    expect(decide(policy, req('paths.example.com', 'GET', '/v1/a;v=1'))).toMatchObject({ action: 'allow' });
    const d = decide(policy, req('paths.example.com', 'GET', '/files/secret.key;.txt'));
    expect(d).toMatchObject({ action: 'deny', reason: 'path_not_allowed', rule: 'allow[0] paths.example.com' });
    expect(d.message).toMatch(/ambiguous/);
    expect(d.message).toContain('/files/secret.key');
  });

  it('ordinary encoded paths pass', () => {
    for (const path of ['/v1/a%20b', '/v1/caf%C3%A9', '/v1/100%25', '/v1//x', '/files/a%2Eb.txt']) {
      expect(decide(policy, req('paths.example.com', 'GET', path)), path).toMatchObject({ action: 'allow', rule: 'allow[0] paths.example.com' });
    }
  });

  it('a rule without paths: is unaffected', () => {
    for (const path of ['/v1/..;/admin', '/v1/..%2fadmin', '/v1/%252e%252e/admin', '/x\\y']) {
      expect(decide(policy, req('open.example.com', 'GET', path)), path).toMatchObject({ action: 'allow', rule: 'allow[1] open.example.com' });
    }
  });

  it('a later rule without paths: still allows what an earlier paths: rule refused as ambiguous', () => {
    expect(decide(policy, req('layered.example.com', 'GET', '/v1/..;/admin'))).toMatchObject({ action: 'allow', rule: 'allow[3] layered.example.com' });
  });

  it('without rawPath the normalised path is judged', () => {
    const { rawPath: _, ...facts } = req('paths.example.com', 'GET', '/v1/..;/admin');
    expect(decide(policy, facts)).toMatchObject({ action: 'deny', reason: 'path_not_allowed' });
  });
});
