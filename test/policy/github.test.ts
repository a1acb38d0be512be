// The github: block of a rule: parsing (errors name file, line and field), which REST endpoints a
// github: rule lets through, and which GraphQL documents may run.
import { describe, expect, it } from 'vitest';
import { decide, decideGraphql, parsePolicy, PolicyError, type RequestFacts } from '../../src/policy/index.js';

const POLICY = `version: 1
name: gh
allow:
  - host: api.github.com
    github:
      repos: ["acme/*", Other/Tool]
      allow: [hooks]
      graphql:
        mutations: [createPullRequest, addComment]
  - host: api.github.com
    paths: ["/anything"]
  - host: example.com
`;
const policy = parsePolicy(POLICY, 'gh.yaml');

const req = (method: string, path: string, extra: Partial<RequestFacts> = {}): RequestFacts => ({
  phase: 'request', scheme: 'https', host: 'api.github.com', port: 443, method, path, rawPath: path, query: '', ...extra,
});

function parseError(text: string): string {
  try {
    parsePolicy(text, 'gh.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return (err as Error).message;
  }
  throw new Error('parsed');
}

const rule = (body: string) => `version: 1\nname: gh\nallow:\n  - host: api.github.com\n    github:\n${body}`;

describe('github: parsing', () => {
  it('reads repos (lower-cased), allowed endpoints and mutations', () => {
    expect(policy.allow[0]!.github).toEqual({ repos: ['acme/*', 'other/tool'], allow: ['hooks'], mutations: ['createPullRequest', 'addComment'] });
    expect(policy.allow[1]!.github).toBeNull();
    expect(Object.isFrozen(policy.allow[0]!.github)).toBe(true);
  });

  it('names file, line and field, with a guess for a misspelt key or endpoint', () => {
    expect(parseError(rule('      repo: ["acme/*"]\n'))).toMatch(/gh\.yaml:6: allow\[0\]\.github\.repo.*unknown key "repo" \(did you mean "repos"\?\)/s);
    expect(parseError(rule('      repos: ["acme/*"]\n      allow: [hook]\n'))).toMatch(/gh\.yaml:7: allow\[0\]\.github\.allow\[0\].*unknown endpoint "hook" \(did you mean "hooks"\?\).*delete-repo/s);
    expect(parseError(rule('      allow: [hooks]\n'))).toMatch(/allow\[0\]\.github\.repos.*is missing/s);
    expect(parseError(rule('      repos: [acme]\n'))).toMatch(/"acme" is not an owner\/name glob/);
    expect(parseError(rule('      repos: ["acme/*"]\n      graphql: { mutation: [x] }\n'))).toMatch(/github\.graphql\.mutation.*did you mean "mutations"/s);
    expect(parseError(rule('      repos: ["acme/*"]\n      graphql: { mutations: ["create-pr"] }\n'))).toMatch(/"create-pr" is not a GraphQL field name/);
    expect(parseError(rule('      repos: ["acme/*"]\n    paths: ["/x"]\n'))).toMatch(/paths cannot be combined with github:/);
  });
});

describe('github: REST decisions', () => {
  const action = (f: RequestFacts) => decide(policy, f);

  it('allows the listed repositories, case as GitHub reads it', () => {
    expect(action(req('GET', '/repos/acme/app'))).toMatchObject({ action: 'allow', rule: 'allow[0] api.github.com' });
    expect(action(req('POST', '/repos/acme/app/pulls')).action).toBe('allow');
    expect(action(req('GET', '/Repos/ACME/App/issues')).action).toBe('allow');
    expect(action(req('GET', '/repos/other/tool')).action).toBe('allow');
    expect(action(req('GET', '/user')).action).toBe('allow');
  });

  it('refuses other repositories, with the rule and how to ask', () => {
    const d = action(req('GET', '/repos/evil/app'));
    expect(d).toMatchObject({ action: 'deny', reason: 'path_not_allowed', rule: 'allow[0] api.github.com' });
    expect(d.message).toMatch(/repository evil\/app is not listed: allow\[0\] api\.github\.com allows the API for acme\/\*, other\/tool\. Ask the operator/);
    expect(action(req('GET', '/REPOS/Evil/App')).action).toBe('deny');
  });

  it('a plain rule for the same host does not widen a github: rule', () => {
    expect(action(req('GET', '/anything')).action).toBe('allow'); // a read outside /repos: allowed by the github: rule
    expect(action(req('DELETE', '/anything')).action).toBe('deny');
  });

  it('refuses dangerous endpoints unless named', () => {
    for (const [method, path, name] of [
      ['DELETE', '/repos/acme/app', 'delete-repo'],
      ['PATCH', '/repos/acme/app', 'repo-settings'],
      ['PUT', '/repos/acme/app/branches/main/protection', 'branch-protection'],
      ['DELETE', '/repos/acme/app/branches/agent/x/protection/required_signatures', 'branch-protection'],
      ['POST', '/repos/acme/app/rulesets', 'branch-protection'],
      ['PUT', '/repos/acme/app/collaborators/mallory', 'collaborators'],
      ['GET', '/repos/acme/app/actions/secrets', 'actions-secrets'],
      ['PUT', '/repos/acme/app/environments/prod/secrets/X', 'actions-secrets'],
      ['GET', '/repos/acme/app/dependabot/secrets/public-key', 'actions-secrets'],
      ['POST', '/repos/acme/app/actions/variables', 'actions-variables'],
      ['POST', '/repos/acme/app/keys', 'deploy-keys'],
      ['POST', '/user/keys', 'keys'],
      ['GET', '/user/gpg_keys', 'keys'],
      ['GET', '/orgs/acme/actions/secrets', 'actions-secrets'],
      ['PATCH', '/orgs/acme', 'org-admin'],
      ['GET', '/admin/users', 'org-admin'],
    ] as const) {
      const d = action(req(method, path));
      expect(d.action, `${method} ${path}`).toBe('deny');
      expect(d.message, `${method} ${path}`).toContain(`${name} (`);
      expect(d.message).toContain(`github.allow: [${name}]`);
    }
    // Named in the rule: allowed. Reads of protection and collaborators, and a file called secrets, are no danger.
    expect(action(req('POST', '/repos/acme/app/hooks')).action).toBe('allow');
    expect(action(req('GET', '/repos/acme/app/branches/main/protection')).action).toBe('allow');
    expect(action(req('GET', '/repos/acme/app/collaborators')).action).toBe('allow');
    expect(action(req('PUT', '/repos/acme/app/contents/secrets/readme.md')).action).toBe('allow');
  });

  it('refuses path tricks that could name another repository to GitHub', () => {
    const tricks: RequestFacts[] = [
      req('GET', '/repos/acme/other/x', { rawPath: '/repos/acme/app/../other/x' }),
      req('GET', '/repos/acme/other/x', { rawPath: '/repos/acme/app/%2e%2e/other/x' }),
      req('GET', '/repos/acme%2Fapp/x'),
      req('GET', '/repos/acme/app//hooks'),
      req('GET', '//repos/acme/app'),
      req('GET', '/repositories/12345/hooks'),
      req('DELETE', '/repos/acme'),
    ];
    for (const f of tricks) expect(action(f).action, f.rawPath).toBe('deny');
    expect(action(req('GET', '/repositories/12345/hooks')).message).toMatch(/names a repository by number/);
    // Nor does a doubled slash hide a dangerous endpoint: "/repos/acme/app/" with DELETE.
    expect(action(req('DELETE', '/repos/acme/app/')).action).toBe('deny');
  });

  it('refuses method override headers', () => {
    const d = action(req('GET', '/repos/acme/app', { methodOverrides: [{ via: 'header X-HTTP-Method-Override', method: 'DELETE' }] }));
    expect(d).toMatchObject({ action: 'deny' });
    expect(d.message).toMatch(/X-HTTP-Method-Override asks to run it as another method/);
  });

  it('GraphQL is POST /graphql, handed on for its body to be read', () => {
    expect(action(req('POST', '/graphql'))).toMatchObject({ action: 'allow', graphql: { mutations: ['createPullRequest', 'addComment'] } });
    expect(action(req('GET', '/graphql')).action).toBe('deny');
    expect(action(req('POST', '/repos/acme/app')).graphql).toBeUndefined();
  });

  it('report mode reports what a github: rule refuses', () => {
    const report = parsePolicy(POLICY.replace('name: gh', 'name: gh\nmode: report'), 'gh.yaml');
    expect(decide(report, req('DELETE', '/repos/acme/app'))).toMatchObject({ action: 'would_deny', reason: 'path_not_allowed' });
  });
});

describe('decideGraphql', () => {
  const allowed = ['createPullRequest'];
  const run = (query: unknown, extra: Record<string, unknown> = {}) => decideGraphql(JSON.stringify({ query, ...extra }), allowed, 'allow[0]');

  it('allows queries and listed mutations, and names them', () => {
    expect(run('query Me { viewer { login } }')).toEqual({ ok: true, detail: 'graphql query Me' });
    expect(run('{ viewer { login } }').ok).toBe(true);
    expect(run('mutation PR($i: CreatePullRequestInput!) { createPullRequest(input: $i) { pullRequest { url } } }')).toEqual({
      ok: true,
      detail: 'graphql mutation PR: createPullRequest',
    });
  });

  it('refuses an unlisted mutation, however it is spelt', () => {
    const cases = [
      'mutation { deleteRepository(input: {}) { clientMutationId } }',
      'mutation { pr: createPullRequest(input: {}) { x } safe: deleteRepository(input: {}) { x } }',
      'mutation { createPullRequest: deleteRepository(input: {}) { x } }',
      'mutation { ...F } fragment F on Mutation { deleteRepository(input: {}) { x } }',
      'mutation { ... on Mutation { ... { deleteRepository(input: {}) { x } } } }',
      'mutation { ...A } fragment A on Mutation { ...B } fragment B on Mutation { ...A deleteRepository(input: {}) { x } }',
    ];
    for (const q of cases) {
      const v = run(q);
      expect(v.ok, q).toBe(false);
      if (!v.ok) expect(v.message, q).toMatch(/mutation deleteRepository is not allowed: allow\[0\] allows mutations createPullRequest/);
    }
  });

  it('checks every operation, not only the one operationName picks', () => {
    const q = 'query Safe { viewer { login } } mutation Evil { deleteRepository(input: {}) { x } }';
    expect(run(q, { operationName: 'Safe' }).ok).toBe(false);
    expect(run(q, { operationName: 'Evil' }).ok).toBe(false);
    expect(run('query A { a } query B { b }', { operationName: 'C' })).toMatchObject({ ok: false, message: expect.stringMatching(/names no operation/) });
  });

  it('refuses subscriptions, unparsable documents, batches and non-JSON bodies', () => {
    expect(run('subscription { x }')).toMatchObject({ ok: false, message: expect.stringMatching(/subscriptions are not allowed/) });
    expect(run('mutation { deleteRepository(')).toMatchObject({ ok: false, message: expect.stringMatching(/cannot be read/) });
    expect(run('type Query { x: Int }')).toMatchObject({ ok: false });
    expect(run('mutation { ...Missing }')).toMatchObject({ ok: false, message: expect.stringMatching(/fragment Missing/) });
    expect(run(42)).toMatchObject({ ok: false });
    expect(decideGraphql('[{"query":"{ a }"},{"query":"mutation { deleteRepository }"}]', allowed, 'r')).toMatchObject({ ok: false, message: expect.stringMatching(/batched/) });
    expect(decideGraphql('query=mutation{deleteRepository}', allowed, 'r')).toMatchObject({ ok: false, message: expect.stringMatching(/not JSON/) });
    expect(decideGraphql('"x"', allowed, 'r').ok).toBe(false);
  });

  it('refuses huge and deeply nested documents quickly', () => {
    const deep = '{' + 'a{'.repeat(200_000) + 'b' + '}'.repeat(200_001);
    const wide = '{ ' + 'a '.repeat(300_000) + '}';
    for (const q of [deep, wide]) {
      const start = performance.now();
      expect(run(q)).toMatchObject({ ok: false, message: expect.stringMatching(/cannot be read/) });
      expect(performance.now() - start).toBeLessThan(1000);
    }
  });
});
