// The git: block of a rule: parsing (errors name file, line and field), which smart-HTTP requests
// a git rule lets through, and the decision on each ref update of a push.
import { describe, expect, it } from 'vitest';
import { decide, decideFastForward, decideRefUpdate, parsePolicy, PolicyError, type RequestFacts } from '../../src/policy/index.js';

const POLICY = `version: 1
name: git
allow:
  - host: github.com
    git:
      fetch: ["acme/*", other/tool.git]
      push:
        - repo: acme/app
          branches: ["agent/*"]
          tags: ["v*"]
        - repo: "acme/*"
          branches: ["scratch/*"]
          force: true
          delete: true
  - host: github.com
    paths: ["/login"]
  - host: gitlab.example
`;
const policy = parsePolicy(POLICY, 'git.yaml');

const req = (method: string, pathWithQuery: string, host = 'github.com'): RequestFacts => {
  const q = pathWithQuery.indexOf('?');
  const path = q === -1 ? pathWithQuery : pathWithQuery.slice(0, q);
  return { phase: 'request', scheme: 'https', host, port: 443, method, path, rawPath: path, query: q === -1 ? '' : pathWithQuery.slice(q) };
};

describe('git: parsing', () => {
  it('reads fetch and push entries with their defaults', () => {
    const git = policy.allow[0]!.git!;
    expect(git.fetch).toEqual(['acme/*', 'other/tool']);
    expect(git.push[0]).toMatchObject({ label: 'allow[0].git.push[0]', line: 8, repo: 'acme/app', branches: ['agent/*'], tags: ['v*'], create: true, force: false, delete: false });
    expect(git.push[1]).toMatchObject({ repo: 'acme/*', tags: [], force: true, delete: true });
    expect(policy.allow[1]!.git).toBeNull();
    expect(Object.isFrozen(git.push[0])).toBe(true);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['    git: {}\n', 'allow[0].git', /git.yaml:5: allow\[0\]\.git: is empty/],
    ['    git: { fetch: [] }\n', 'allow[0].git.fetch', /is an empty list/],
    ['    git: { fetch: ["/acme/x"] }\n', 'allow[0].git.fetch[0]', /is not a repository glob/],
    ['    git: { fetch: ["acme/../x"] }\n', 'allow[0].git.fetch[0]', /is not a repository glob/],
    ['    git: { fetch: [a/b], pull: [x] }\n', 'allow[0].git.pull', /unknown key "pull"/],
    ['    git:\n      push:\n        - repo: acme/app\n', 'allow[0].git.push[0]', /git.yaml:7: .*names no branches and no tags/],
    ['    git:\n      push:\n        - branches: [x]\n', 'allow[0].git.push[0].repo', /is missing/],
    ['    git:\n      push:\n        - repo: a/b\n          branches: ["refs/heads/x"]\n', 'allow[0].git.push[0].branches', /starts with "refs\/"/],
    ['    git:\n      push:\n        - repo: a/b\n          branches: [x]\n          force: "no"\n', 'allow[0].git.push[0].force', /is not true or false/],
    ['    git:\n      push:\n        - repo: a/b\n          brances: [x]\n', 'allow[0].git.push[0].brances', /did you mean "branches"/],
    ['    paths: ["/x"]\n    git: { fetch: [a/b] }\n', 'allow[0].paths', /paths cannot be combined with git:/],
    ['    inspect: false\n    git: { fetch: [a/b] }\n', 'allow[0].inspect', /git: needs inspection/],
  ];
  it.each(bad)('refuses %j', (tail, field, message) => {
    const text = `version: 1\nname: bad\nallow:\n  - host: github.com\n${tail}`;
    let error: unknown;
    try {
      parsePolicy(text, 'git.yaml');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PolicyError);
    expect((error as PolicyError).field).toBe(field);
    expect((error as PolicyError).message).toMatch(message);
  });
});

describe('git: which requests a git rule lets through', () => {
  const rows: Array<[string, string, 'allow' | 'deny', RegExp?]> = [
    ['GET', '/acme/app.git/info/refs?service=git-upload-pack', 'allow'],
    ['POST', '/acme/app.git/git-upload-pack', 'allow'],
    ['POST', '/acme/lib/git-upload-pack', 'allow'],
    ['POST', '/other/tool.git/git-upload-pack', 'allow'],
    ['GET', '/evil/secret.git/info/refs?service=git-upload-pack', 'deny', /repository evil\/secret may not be cloned or fetched: allow\[0\] github.com allows fetching acme\/\*, other\/tool/],
    ['POST', '/evil/secret.git/git-upload-pack', 'deny', /may not be cloned/],
    ['GET', '/acme/app.git/info/refs?service=git-receive-pack', 'allow'],
    ['POST', '/acme/app.git/git-receive-pack', 'allow'],
    ['GET', '/other/tool.git/info/refs?service=git-receive-pack', 'deny', /repository other\/tool may not be pushed to: .* allows pushing to acme\/app, acme\/\*/],
    ['GET', '/acme/app.git/info/refs', 'deny', /smart HTTP only/],
    ['GET', '/acme/app.git/git-upload-pack', 'deny', /requested with POST, not GET/],
    ['POST', '/acme/x%2fy/git-upload-pack', 'deny', /not a plain owner\/name path/],
    // Other requests are for the host's other rules.
    ['GET', '/acme/app.git/HEAD', 'deny', /allow\[1\] github.com allows paths \/login/],
    ['GET', '/login', 'allow'],
    // No git rule on this host: git requests are decided like any other.
    ['POST', '/evil/secret.git/git-receive-pack', 'allow'],
  ];
  it.each(rows)('%s %s → %s', (method, path, action, message) => {
    const host = rows.indexOf(rows.find((r) => r[1] === path && r[0] === method)!) === rows.length - 1 ? 'gitlab.example' : 'github.com';
    const d = decide(policy, req(method, path, host));
    expect(d.action, d.message).toBe(action);
    if (message) expect(d.message).toMatch(message);
    if (action === 'deny') expect(d.reason).toBe('path_not_allowed');
  });

  it('a non-git rule never lets a git request through on a host a git rule covers', () => {
    const p = parsePolicy('version: 1\nname: x\nallow:\n  - host: github.com\n    git: { fetch: [acme/app] }\n  - host: github.com\n', 'x.yaml');
    expect(decide(p, req('POST', '/evil/secret.git/git-upload-pack')).action).toBe('deny');
    expect(decide(p, req('GET', '/evil/secret')).action).toBe('allow');
    const only = parsePolicy('version: 1\nname: x\nallow:\n  - host: github.com\n    git: { fetch: [acme/app] }\n', 'x.yaml');
    expect(decide(only, req('GET', '/acme/app')).message).toMatch(/allow\[0\] github.com allows only git's smart HTTP/);
  });

  it('a push request carries its repository and push entries for the body check', () => {
    const d = decide(policy, req('POST', '/acme/app.git/git-receive-pack'));
    expect(d.gitPush?.repo).toBe('acme/app');
    expect(d.gitPush?.rules.map((r) => r.label)).toEqual(['allow[0].git.push[0]', 'allow[0].git.push[1]']);
    expect(decide(policy, req('GET', '/acme/app.git/info/refs?service=git-receive-pack')).gitPush).toBeUndefined();
  });
});

describe('git: ref updates', () => {
  const target = decide(policy, req('POST', '/acme/app.git/git-receive-pack')).gitPush!;
  const A = 'a'.repeat(40);
  const B = 'b'.repeat(40);
  const Z = '0'.repeat(40);
  const rows: Array<[string, string, string, string, RegExp]> = [
    ['refs/heads/agent/x', Z, A, 'allow', /create allowed by allow\[0\].git.push\[0\]/],
    ['refs/heads/agent/x', A, B, 'fast-forward-only', /force: false in allow\[0\].git.push\[0\]/],
    ['refs/heads/agent/x', A, Z, 'deny', /deleting branch agent\/x is not allowed \(delete: false in allow\[0\].git.push\[0\]\)/],
    ['refs/heads/main', A, B, 'deny', /branch main may not be pushed to acme\/app \(the policy allows only branches agent\/\*, scratch\/\*\)/],
    ['refs/heads/scratch/1', A, B, 'allow', /force: true/],
    ['refs/heads/scratch/1', A, Z, 'allow', /delete allowed/],
    ['refs/tags/v1', Z, A, 'allow', /create allowed/],
    ['refs/tags/v1', A, B, 'deny', /moving tag v1 is not allowed/],
    ['refs/tags/release', Z, A, 'deny', /tag release may not be pushed to acme\/app \(the policy allows only tags v\*\)/],
    ['refs/notes/commits', Z, A, 'deny', /only branches \(refs\/heads\/\) and tags/],
  ];
  it.each(rows)('%s %s..%s → %s', (ref, oldId, newId, verdict, why) => {
    const v = decideRefUpdate(target, { ref, oldId, newId });
    expect(v.verdict).toBe(verdict);
    expect(v.why).toMatch(why);
  });

  it('a fast-forward-only update is allowed once proven, refused with the reason otherwise', () => {
    const u = { ref: 'refs/heads/agent/x', oldId: A, newId: B };
    expect(decideFastForward(u, 'force: false', null).verdict).toBe('allow');
    const refused = decideFastForward(u, 'force: false', 'bbbbbbb is not among the pushed commits');
    expect(refused.verdict).toBe('deny');
    expect(refused.why).toMatch(/bbbbbbb is not among the pushed commits.*branch agent\/x may not be force-pushed/);
  });
});
