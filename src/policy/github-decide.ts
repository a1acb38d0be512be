// Decisions of github: rules, pure: which GitHub API endpoint a request is, whether a rule lets it
// through, and whether a GraphQL document may run.
//
// REST: paths under /repos/{owner}/{repo}/ only for the rule's repositories; elsewhere reads only;
// the endpoints of DANGEROUS_ENDPOINTS only when the rule names them. Paths are judged as GitHub
// reads them: owner, name and the path itself without regard to case; a path the proxy had to
// normalise ("..", escapes, empty segments) is refused, since it could name another repository
// to the server than the one matched here. GraphQL: POST /graphql, its body read by the proxy and
// decided by decideGraphql().
import { createRequire } from 'node:module';
import type { DocumentNode, FragmentDefinitionNode, SelectionSetNode } from 'graphql';
// graphql (~100 ms to load) is read only when a GraphQL body is checked: most sessions, and every
// `airlock exec` start, never need it.
type GraphqlModule = typeof import('graphql');
let graphqlModule: GraphqlModule | undefined;
const requireHere = createRequire(import.meta.url);
function graphql(): GraphqlModule {
  return (graphqlModule ??= requireHere('graphql') as GraphqlModule);
}
import { matchesAnyGlob as matchesAny } from './glob.js';
import type { GithubRule, MethodOverride } from './types.js';

/** Endpoints a github: rule refuses unless its allow: names them, and what they cover. */
export const DANGEROUS_ENDPOINTS = {
  'delete-repo': 'DELETE /repos/{owner}/{repo}',
  'repo-settings': 'PATCH /repos/{owner}/{repo} (rename, visibility, archiving)',
  'branch-protection': 'changes to /repos/{owner}/{repo}/branches/{branch}/protection and /rulesets',
  hooks: '/repos/{owner}/{repo}/hooks and /orgs/{org}/hooks',
  collaborators: 'changes to /repos/{owner}/{repo}/collaborators and /invitations',
  'actions-secrets': 'Actions, Dependabot, Codespaces and environment secrets',
  'actions-variables': 'Actions and environment variables',
  'deploy-keys': '/repos/{owner}/{repo}/keys',
  keys: "/user/keys, /user/gpg_keys, /user/ssh_signing_keys (the account's keys)",
  'org-admin': 'changes under /orgs/{org}, and /admin, /enterprises',
} as const;

export type DangerousEndpoint = keyof typeof DANGEROUS_ENDPOINTS;

export type GithubRequest =
  | { readonly kind: 'graphql' }
  | { readonly kind: 'rest'; readonly repo: string | null; readonly endpoint: DangerousEndpoint | null }
  | { readonly kind: 'unreadable'; readonly why: string };

const READS = new Set(['GET', 'HEAD']);

/** Which GitHub API endpoint a request is for, as GitHub would read its path. */
export function githubRequestOf(method: string, path: string, rawPath: string): GithubRequest {
  if (rawPath !== path || path.includes('%')) return { kind: 'unreadable', why: 'its path has escapes or dot segments, which could name another repository to GitHub' };
  if (path !== '/' && path.split('/').slice(1).some((s) => s === '')) return { kind: 'unreadable', why: 'its path has empty segments' };
  const segs = path.toLowerCase().split('/').slice(1);
  const write = !READS.has(method);
  const has = (name: string) => segs.includes(name);
  if (segs.length === 1 && segs[0] === 'graphql') return { kind: 'graphql' };
  if (segs[0] === 'repositories') return { kind: 'unreadable', why: 'it names a repository by number, which cannot be matched against repository names' };
  if (segs[0] === 'repos') {
    if (segs.length < 3) return { kind: 'rest', repo: null, endpoint: null };
    const repo = `${segs[1]}/${segs[2]}`;
    const rest = segs.slice(3);
    // A file's path (contents/secrets/...) says nothing about the endpoint.
    const named = (name: string) => rest[0] !== 'contents' && rest.includes(name);
    let endpoint: DangerousEndpoint | null = null;
    if (rest.length === 0) endpoint = method === 'DELETE' ? 'delete-repo' : write ? 'repo-settings' : null;
    else if (rest[0] === 'hooks') endpoint = 'hooks';
    else if (rest[0] === 'keys') endpoint = 'deploy-keys';
    else if ((rest[0] === 'collaborators' || rest[0] === 'invitations') && write) endpoint = 'collaborators';
    else if (((rest[0] === 'branches' && rest.includes('protection')) || rest[0] === 'rulesets') && write) endpoint = 'branch-protection';
    else if (named('secrets') || named('organization-secrets')) endpoint = 'actions-secrets';
    else if (named('variables') || named('organization-variables')) endpoint = 'actions-variables';
    return { kind: 'rest', repo, endpoint };
  }
  let endpoint: DangerousEndpoint | null = null;
  if (segs[0] === 'user' && ['keys', 'gpg_keys', 'ssh_signing_keys'].includes(segs[1] ?? '')) endpoint = 'keys';
  else if (segs[0] === 'admin' || segs[0] === 'enterprises') endpoint = 'org-admin';
  else if (segs[0] === 'orgs' && has('hooks')) endpoint = 'hooks';
  else if (segs[0] === 'orgs' && has('secrets')) endpoint = 'actions-secrets';
  else if (segs[0] === 'orgs' && has('variables')) endpoint = 'actions-variables';
  else if (segs[0] === 'orgs' && write) endpoint = 'org-admin';
  return { kind: 'rest', repo: null, endpoint };
}


export type GithubVerdict =
  | { readonly ok: true; readonly what: string; readonly graphql: boolean }
  | { readonly ok: false; readonly what: string; readonly message: string };

/** Whether a github: rule lets a request through (a GraphQL body is checked later). */
export function decideGithubRequest(
  github: GithubRule,
  label: string,
  method: string,
  path: string,
  rawPath: string,
  overrides: readonly MethodOverride[],
): GithubVerdict {
  const what = `${method || '(no method)'} ${path}`;
  if (overrides.length > 0) {
    return { ok: false, what, message: `${overrides[0]!.via} asks to run it as another method, which ${label} does not allow on the GitHub API` };
  }
  const r = githubRequestOf(method, path, rawPath);
  if (r.kind === 'unreadable') return { ok: false, what, message: `${r.why}; send the plain path` };
  if (r.kind === 'graphql') {
    return method === 'POST' ? { ok: true, what: 'graphql', graphql: true } : { ok: false, what, message: 'GraphQL is allowed as POST /graphql only' };
  }
  const name = r.endpoint ? ` (endpoint ${r.endpoint})` : '';
  if (r.endpoint && !github.allow.includes(r.endpoint)) {
    return { ok: false, what: `${what}${name}`, message: `${r.endpoint} (${DANGEROUS_ENDPOINTS[r.endpoint]}) is denied by default; ${label} would need github.allow: [${r.endpoint}]` };
  }
  if (r.repo !== null) {
    if (matchesAny(github.repos, r.repo)) return { ok: true, what: `${what}${name} on ${r.repo}`, graphql: false };
    return { ok: false, what, message: `repository ${r.repo} is not listed: ${label} allows the API for ${github.repos.join(', ')}` };
  }
  if (path.toLowerCase().startsWith('/repos') || (!READS.has(method) && !r.endpoint)) {
    return { ok: false, what, message: `${label} allows changes only under /repos/{owner}/{repo}/ of ${github.repos.join(', ')} (and GraphQL)` };
  }
  return { ok: true, what: `${what}${name}`, graphql: false };
}

// ---- GraphQL

/** The largest document read, in tokens: far above any real query, small enough to parse fast. */
const MAX_TOKENS = 20_000;

export type GraphqlVerdict = { readonly ok: true; readonly detail: string } | { readonly ok: false; readonly detail: string; readonly message: string };

/**
 * Whether a GraphQL request body (JSON: query, operationName, variables) may run: every operation
 * in the document is checked, not only the one `operationName` picks, so no server's choice of
 * operation can differ from the one judged. Queries pass; a mutation only when each of its
 * top-level fields (through aliases and fragments) is in `mutations`; subscriptions never.
 */
export function decideGraphql(body: string, mutations: readonly string[], label: string): GraphqlVerdict {
  const refuse = (detail: string, message: string): GraphqlVerdict => ({ ok: false, detail, message });
  let request: unknown;
  try {
    request = JSON.parse(body);
  } catch {
    return refuse('graphql: body is not JSON', 'the GraphQL request body is not JSON');
  }
  if (Array.isArray(request)) return refuse('graphql: batched', 'batched GraphQL requests (a JSON array) are not allowed; send one request per call');
  if (typeof request !== 'object' || request === null) return refuse('graphql: not an object', 'the GraphQL request body is not a JSON object');
  const { query, operationName } = request as { query?: unknown; operationName?: unknown };
  if (typeof query !== 'string') return refuse('graphql: no query', 'the GraphQL request has no "query" string');
  if (operationName !== undefined && operationName !== null && typeof operationName !== 'string') {
    return refuse('graphql: bad operationName', '"operationName" is not a string');
  }
  let doc: DocumentNode;
  try {
    doc = graphql().parse(query, { noLocation: true, maxTokens: MAX_TOKENS });
  } catch (err) {
    const why = err instanceof RangeError ? 'it is nested too deeply' : (err as Error).message.slice(0, 200);
    return refuse('graphql: unparsable', `the GraphQL document cannot be read, so Airlock cannot tell what it does: ${why}`);
  }
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const def of doc.definitions) if (def.kind === graphql().Kind.FRAGMENT_DEFINITION) fragments.set(def.name.value, def);
  const ops: string[] = [];
  let runs = false;
  for (const def of doc.definitions) {
    if (def.kind === graphql().Kind.FRAGMENT_DEFINITION) continue;
    if (def.kind !== graphql().Kind.OPERATION_DEFINITION) return refuse('graphql: not executable', `the document holds a ${def.kind}, which is not an operation`);
    const name = def.name?.value ?? '(anonymous)';
    if (name === operationName) runs = true;
    if (def.operation === 'subscription') return refuse(`graphql subscription ${name}`, `GraphQL subscriptions are not allowed by ${label}`);
    if (def.operation === 'query') {
      ops.push(`query ${name}`);
      continue;
    }
    const fields = new Set<string>();
    const unreadable = topLevelFields(def.selectionSet, fragments, fields, new Set());
    if (unreadable) return refuse(`graphql mutation ${name}`, unreadable);
    const denied = [...fields].filter((f) => f !== '__typename' && !mutations.includes(f));
    const detail = `graphql mutation ${name}: ${[...fields].join(', ')}`;
    if (denied.length > 0) {
      const allowed = mutations.length > 0 ? `allows mutations ${mutations.join(', ')}` : 'allows no mutations';
      return refuse(detail, `GraphQL mutation ${denied.join(', ')} is not allowed: ${label} ${allowed} (github.graphql.mutations)`);
    }
    ops.push(`mutation ${name}: ${[...fields].join(', ')}`);
  }
  if (ops.length === 0) return refuse('graphql: no operation', 'the GraphQL document has no operation');
  if (typeof operationName === 'string' && operationName !== '' && !runs) {
    return refuse('graphql: unknown operationName', `operationName ${JSON.stringify(operationName.slice(0, 80))} names no operation in the document`);
  }
  return { ok: true, detail: `graphql ${ops.join('; ')}` };
}

/** Collects the field names a mutation runs, through fragments; returns why when it cannot. */
function topLevelFields(set: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>, out: Set<string>, seen: Set<string>): string | null {
  for (const sel of set.selections) {
    if (sel.kind === graphql().Kind.FIELD) out.add(sel.name.value);
    else if (sel.kind === graphql().Kind.INLINE_FRAGMENT) {
      const why = topLevelFields(sel.selectionSet, fragments, out, seen);
      if (why) return why;
    } else {
      const name = sel.name.value;
      if (seen.has(name)) continue;
      seen.add(name);
      const fragment = fragments.get(name);
      if (!fragment) return `the mutation spreads fragment ${name}, which the document does not define`;
      const why = topLevelFields(fragment.selectionSet, fragments, out, seen);
      if (why) return why;
    }
  }
  return null;
}
