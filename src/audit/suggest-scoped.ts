// What `airlock policy suggest` learns beyond hosts, ports and methods: git, github: and mcp:
// blocks, from what the proxy wrote in the audit lines of a session under such rules (report
// mode lets the refused ones through as would_deny, with the same detail).
//
//   git     smart-HTTP paths (any host): repositories fetched (git-upload-pack) and pushed
//           (git-receive-pack); with a git rule in force, the push detail names each ref update,
//           so branches, tags, create, delete and force are learned too
//   github  details "github <METHOD> <path> on owner/name", "(endpoint <name>)" for a
//           default-denied endpoint, "graphql ... mutation <name>: <fields>"
//   mcp     details "mcp tools/call "<tool>"" (single messages and batches)
import { gitRequestOf } from '../policy/index.js';
import type { AuditLine } from './report.js';

export interface GitUse {
  readonly fetch: Set<string>;
  readonly push: Map<string, { branches: Set<string>; tags: Set<string>; create: boolean; delete: boolean; force: boolean; refsKnown: boolean }>;
  /** Repositories whose refs were advertised (info/refs: the audit line does not say for which service). */
  readonly advertised: Set<string>;
  readonly ports: Set<number>;
  count: number;
}

export interface GithubUse {
  readonly repos: Set<string>;
  readonly allow: Set<string>;
  readonly mutations: Set<string>;
}

export interface ScopedUse {
  readonly git: Map<string, GitUse>;
  readonly github: Map<string, GithubUse>;
  readonly mcp: Map<string, Set<string>>;
  readonly notes: Set<string>;
}

export function newScopedUse(): ScopedUse {
  return { git: new Map(), github: new Map(), mcp: new Map(), notes: new Set() };
}

const TOOL_NAME = /^[\x21-\x7e]{1,128}$/;
const REPO = /^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/;
const GRAPHQL_NAME = /^[_A-Za-z][_0-9A-Za-z]*$/;

/**
 * Learns from one counted request line. Returns true when the line is a git request, which the
 * host's git rule covers instead of its plain rule.
 */
export function learnScoped(use: ScopedUse, line: AuditLine): boolean {
  const detail = typeof line.detail === 'string' ? line.detail : '';
  if (detail.startsWith('mcp')) learnMcp(use, line.host, detail);
  if (detail.startsWith('github ') || detail.startsWith('graphql')) learnGithub(use, line, detail);
  const q = line.path.indexOf('?');
  const path = q === -1 ? line.path : line.path.slice(0, q);
  const git = gitRequestOf({ path, rawPath: path, query: '' });
  if (!git) return false;
  let g = use.git.get(line.host);
  if (!g) use.git.set(line.host, (g = { fetch: new Set(), push: new Map(), advertised: new Set(), ports: new Set(), count: 0 }));
  g.ports.add(line.port);
  g.count++;
  if (git.repo === null) {
    use.notes.add(`a git request on ${line.host} names no plain repository path (${JSON.stringify(path.slice(0, 80))}); not allowed`);
    return true;
  }
  if (git.endpoint === 'info/refs') g.advertised.add(git.repo);
  else if (git.service === 'git-receive-pack') learnPush(g, git.repo, detail);
  else g.fetch.add(git.repo);
  return true;
}

function learnPush(g: GitUse, repo: string, detail: string): void {
  let p = g.push.get(repo);
  if (!p) g.push.set(repo, (p = { branches: new Set(), tags: new Set(), create: false, delete: false, force: false, refsKnown: false }));
  const prefix = `git push ${repo}: `;
  if (!detail.startsWith(prefix)) return;
  for (const entry of detail.slice(prefix.length).split('; ')) {
    const m = /^(refs\/(heads|tags)\/(\S+)) (create|update|delete)\b(.*)$/.exec(entry);
    if (!m) continue;
    p.refsKnown = true;
    (m[2] === 'heads' ? p.branches : p.tags).add(m[3]!);
    if (m[4] === 'create') p.create = true;
    if (m[4] === 'delete') p.delete = true;
    if (m[4] === 'update' && /refused: .*(fast-forward|force)/.test(m[5]!)) p.force = true;
  }
}

function learnGithub(use: ScopedUse, line: AuditLine, detail: string): void {
  let g = use.github.get(line.host);
  if (!g) use.github.set(line.host, (g = { repos: new Set(), allow: new Set(), mutations: new Set() }));
  const on = / on ([^\s]+)$/.exec(detail)?.[1];
  const fromPath = /^\/repos\/([^/?]+)\/([^/?]+)/.exec(line.path);
  const repo = on ?? (fromPath ? `${fromPath[1]}/${fromPath[2]}` : undefined);
  if (repo !== undefined && REPO.test(repo)) g.repos.add(repo.toLowerCase());
  const endpoint = /\(endpoint ([a-z-]+)\)/.exec(detail)?.[1];
  if (endpoint) g.allow.add(endpoint);
  for (const m of detail.matchAll(/mutation [^:;]*: ([^;]+)/g)) {
    for (const field of m[1]!.split(', ')) {
      const name = field.trim();
      if (GRAPHQL_NAME.test(name) && name !== '__typename') g.mutations.add(name);
    }
  }
}

function learnMcp(use: ScopedUse, host: string, detail: string): void {
  let tools = use.mcp.get(host);
  if (!tools) use.mcp.set(host, (tools = new Set()));
  for (const m of detail.matchAll(/tools\/call ("(?:[^"\\]|\\.)*")/g)) {
    let name: unknown;
    try {
      name = JSON.parse(m[1]!);
    } catch {
      continue;
    }
    if (typeof name !== 'string') continue;
    if (!TOOL_NAME.test(name) || name.includes('*') || name.includes('?')) {
      use.notes.add(`MCP tool ${JSON.stringify(name.slice(0, 80))} on ${host} cannot be written as a tool glob; not allowed`);
      continue;
    }
    tools.add(name);
  }
}

function sorted(set: Iterable<string>): string[] {
  return [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The git: block for a host's git requests. */
export function gitBlock(g: GitUse, notes: Set<string>, host: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // An advertisement alone (ls-remote) reads the refs as a fetch does.
  const fetch = new Set(g.fetch);
  for (const repo of g.advertised) if (!g.push.has(repo)) fetch.add(repo);
  if (fetch.size > 0) out.fetch = sorted(fetch);
  const push: Record<string, unknown>[] = [];
  for (const repo of sorted(g.push.keys())) {
    const p = g.push.get(repo)!;
    if (!p.refsKnown) {
      notes.add(`pushes to ${repo} on ${host} were seen without a git rule in force, so their refs are unknown: branches: ["*"]; narrow it`);
      push.push({ repo, branches: ['*'], create: true, force: false, delete: false });
      continue;
    }
    const entry: Record<string, unknown> = { repo };
    if (p.branches.size > 0) entry.branches = sorted(p.branches);
    if (p.tags.size > 0) entry.tags = sorted(p.tags);
    entry.create = p.create;
    entry.force = p.force;
    entry.delete = p.delete;
    push.push(entry);
  }
  if (push.length > 0) out.push = push;
  // Only advertisements of repositories pushed to (nothing fetched): the block needs an entry.
  if (Object.keys(out).length === 0) out.fetch = ['none/none'];
  return out;
}

export function githubBlock(g: GithubUse, notes: Set<string>, host: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (g.repos.size > 0) out.repos = sorted(g.repos);
  else {
    notes.add(`no repository API call was seen on ${host}: github.repos lists a name that matches none`);
    out.repos = ['none/none'];
  }
  if (g.allow.size > 0) out.allow = sorted(g.allow);
  if (g.mutations.size > 0) out.graphql = { mutations: sorted(g.mutations) };
  return out;
}

export function mcpBlock(tools: Set<string>): Record<string, unknown> {
  return { tools: sorted(tools) };
}
