// policy suggest beyond hosts and methods: git, github: and mcp: blocks learned from the details
// the proxy writes (report mode lets refused requests through with the same detail). Every
// suggestion is parsed, and asked with decide() and the body decisions what it now allows.
import { describe, expect, it } from 'vitest';
import { decide, decideGraphql, decideMcpBody, decideRefUpdate, type RequestFacts } from '../../src/policy/index.js';
import { suggestPolicy } from '../../src/audit/suggest.js';
import type { AuditLine } from '../../src/audit/report.js';

let seq = 0;
function line(host: string, method: string, path: string, over: Partial<AuditLine> = {}): AuditLine {
  seq++;
  return {
    time: `2030-04-05T06:00:${String(seq % 60).padStart(2, '0')}.000Z`,
    session: 's-1',
    id: `x-${seq}`,
    kind: 'request',
    method,
    scheme: 'https',
    host,
    port: 443,
    path,
    status: 200,
    action: 'would_deny',
    rule: 'allow[0]',
    reason: 'path_not_allowed',
    credentials: [],
    bytes_up: 0,
    bytes_down: 0,
    duration_ms: 1,
    ...over,
  };
}

const facts = (host: string, method: string, path: string, query = ''): RequestFacts => ({ phase: 'request', scheme: 'https', host, port: 443, method, path, query });

describe('git rules from report mode', () => {
  const lines = [
    line('github.com', 'GET', '/acme/app.git/info/refs?service=redacted', { action: 'allow', reason: 'allowed' }),
    line('github.com', 'POST', '/acme/app.git/git-upload-pack', { action: 'allow', reason: 'allowed' }),
    line('github.com', 'GET', '/acme/lib/info/refs?service=redacted'),
    line('github.com', 'POST', '/acme/lib/git-upload-pack'),
    line('github.com', 'POST', '/acme/app.git/git-receive-pack', {
      reason: 'git_ref_not_allowed',
      detail: 'git push acme/app: refs/heads/agent/x create allowed (create allowed by allow[0].git.push[0]); refs/heads/main update refused: refs/heads/main is not a fast-forward (force: false in allow[0].git.push[0]); refs/tags/v1 create refused: tag v1 may not be pushed',
    }),
    line('github.com', 'GET', '/acme/app/raw/README.md'),
  ];

  it('fetched repositories, pushed branches and tags, and force when a push was not a fast-forward', () => {
    const s = suggestPolicy(lines, { session: 's-1' });
    const git = s.policy.allow.find((r) => r.git)!;
    expect(git.git!.fetch).toEqual(['acme/app', 'acme/lib']);
    expect(git.git!.push).toMatchObject([{ repo: 'acme/app', branches: ['agent/x', 'main'], tags: ['v1'], create: true, force: true, delete: false }]);
    // Requests other than git's keep a plain rule of their own.
    expect(s.policy.allow.find((r) => !r.git)).toMatchObject({ host: 'github.com', methods: ['GET'] });
    const target = decide(s.policy, facts('github.com', 'POST', '/acme/app.git/git-receive-pack')).gitPush!;
    expect(decideRefUpdate(target, { oldId: '0'.repeat(40), newId: '1'.repeat(40), ref: 'refs/heads/agent/x' }).verdict).toBe('allow');
    expect(decideRefUpdate(target, { oldId: '0'.repeat(40), newId: '1'.repeat(40), ref: 'refs/heads/other' }).verdict).toBe('deny');
    expect(decide(s.policy, facts('github.com', 'POST', '/evil/x/git-upload-pack')).action).toBe('deny');
  });

  it('a push seen without a git rule in force allows any branch, and says so', () => {
    const s = suggestPolicy([line('git.example.com', 'POST', '/a/b/git-receive-pack', { action: 'allow', reason: 'allowed' })], { session: 's-1' });
    expect(s.policy.allow[0]!.git!.push).toMatchObject([{ repo: 'a/b', branches: ['*'] }]);
    expect(s.text).toMatch(/pushes to a\/b on git\.example\.com were seen without a git rule in force/);
  });
});

describe('github: rules from report mode', () => {
  const lines = [
    line('api.github.com', 'GET', '/repos/acme/app', { action: 'allow', reason: 'allowed', detail: 'github GET /repos/acme/app on acme/app' }),
    line('api.github.com', 'GET', '/repos/other/tool/pulls', { detail: 'github GET /repos/other/tool/pulls' }),
    line('api.github.com', 'POST', '/repos/acme/app/hooks', { detail: 'github POST /repos/acme/app/hooks (endpoint hooks)' }),
    line('api.github.com', 'POST', '/graphql', { reason: 'graphql_not_allowed', detail: 'graphql mutation (anonymous): addComment, createIssue' }),
    line('api.github.com', 'POST', '/graphql', { action: 'allow', reason: 'allowed', detail: 'graphql query Me' }),
  ];

  it('repositories, default-denied endpoints and mutations seen', () => {
    const s = suggestPolicy(lines, { session: 's-1' });
    expect(s.policy.allow).toHaveLength(1);
    expect(s.policy.allow[0]!.github).toEqual({ repos: ['acme/app', 'other/tool'], allow: ['hooks'], mutations: ['addComment', 'createIssue'] });
    expect(decide(s.policy, facts('api.github.com', 'POST', '/repos/acme/app/hooks')).action).toBe('allow');
    expect(decide(s.policy, facts('api.github.com', 'DELETE', '/repos/acme/app')).action).toBe('deny');
    expect(decideGraphql('{"query":"mutation { createIssue(input: {}) { clientMutationId } }"}', s.policy.allow[0]!.github!.mutations, 'r').ok).toBe(true);
    expect(decideGraphql('{"query":"mutation { deleteRepository(input: {}) { clientMutationId } }"}', s.policy.allow[0]!.github!.mutations, 'r').ok).toBe(false);
  });
});

describe('mcp: rules', () => {
  it('tools called, from single messages and batches; names that cannot be globs are noted', () => {
    const s = suggestPolicy(
      [
        line('mcp.example.com', 'POST', '/mcp', { detail: 'mcp tools/call "delete_repo" (not listed)', reason: 'mcp_not_allowed' }),
        line('mcp.example.com', 'POST', '/mcp', { action: 'allow', reason: 'allowed', detail: 'mcp batch: tools/call "read_file"; tools/list; tools/call "we\\"ird"' }),
        line('mcp.example.com', 'POST', '/mcp', { action: 'allow', reason: 'allowed', detail: 'mcp tools/call "star*"' }),
        line('mcp.example.com', 'GET', '/mcp', { action: 'allow', reason: 'allowed' }),
      ],
      { session: 's-1' },
    );
    const rule = s.policy.allow[0]!;
    expect(rule).toMatchObject({ host: 'mcp.example.com', methods: ['GET', 'POST'], mcp: { tools: ['delete_repo', 'read_file', 'we"ird'] } });
    expect(s.text).toContain('MCP tool "star*" on mcp.example.com cannot be written as a tool glob');
    const allowed = decide(s.policy, facts('mcp.example.com', 'POST', '/mcp'));
    expect(decideMcpBody('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}}', allowed.mcp!.rule, 'r', 'h').ok).toBe(true);
    expect(decideMcpBody('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"other"}}', allowed.mcp!.rule, 'r', 'h').ok).toBe(false);
  });
});
