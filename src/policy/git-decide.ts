// Decisions of git rules, pure: which smart-HTTP request a path is, whether a rule lets it through,
// and whether one ref update of a push is allowed.
//
// Smart HTTP has three endpoints under a repository's URL:
//   GET  <repo>/info/refs?service=git-upload-pack | git-receive-pack   (ref advertisement)
//   POST <repo>/git-upload-pack                                        (clone, fetch)
//   POST <repo>/git-receive-pack                                       (push; ref updates in the body)
// On a host that has a git rule these endpoints are decided by git rules only; a rule with git:
// allows nothing else.
import { matchesAnyGlob as matchesAny } from './glob.js';
import type { GitPushRule, GitPushTarget, GitRule, RequestFacts } from './types.js';

export type GitService = 'git-upload-pack' | 'git-receive-pack';

export interface GitRequest {
  /** The repository path without the leading "/" and a trailing ".git", or null when unreadable. */
  readonly repo: string | null;
  readonly endpoint: 'info/refs' | 'rpc';
  /** Null for an info/refs without a service (git's "dumb" protocol) or with an unknown one. */
  readonly service: GitService | null;
}

const ENDPOINT = /^(\/.*)\/(info\/refs|git-upload-pack|git-receive-pack)$/;
const REPO_PATH = /^[A-Za-z0-9._~-]+(?:\/[A-Za-z0-9._~-]+)*$/;

/** The smart-HTTP endpoint a request is for, or null when its path is none of them. */
export function gitRequestOf(facts: Pick<RequestFacts, 'path' | 'rawPath' | 'query'>): GitRequest | null {
  const path = facts.path;
  if (path === undefined) return null;
  const m = ENDPOINT.exec(path);
  if (!m) return null;
  let repo: string | null = m[1]!.slice(1).replace(/\.git$/, '');
  // Only plain spellings: a path the proxy had to normalise, or one with escapes, could name
  // another repository to the server than the one matched here.
  if (!REPO_PATH.test(repo) || repo.split('/').some((s) => s === '.' || s === '..') || (facts.rawPath ?? path) !== path) repo = null;
  if (m[2] === 'info/refs') {
    const service = /^\?service=(git-upload-pack|git-receive-pack)$/.exec(facts.query ?? '')?.[1] as GitService | undefined;
    return { repo, endpoint: 'info/refs', service: service ?? null };
  }
  return { repo, endpoint: 'rpc', service: m[2] as GitService };
}


export type GitVerdict = { readonly ok: true; readonly push?: GitPushTarget } | { readonly ok: false; readonly message: string };

/** Whether a git rule lets a smart-HTTP request through (a push's ref updates are checked later). */
export function decideGitRequest(git: GitRule, label: string, method: string, request: GitRequest): GitVerdict {
  const { repo, endpoint, service } = request;
  if (repo === null) return { ok: false, message: `the repository path is not a plain owner/name path, which ${label} requires for git` };
  const wanted = endpoint === 'info/refs' ? 'GET' : 'POST';
  if (method !== wanted) return { ok: false, message: `git's ${endpoint} is requested with ${wanted}, not ${method || '(no method)'}` };
  if (service === null) {
    return { ok: false, message: `${label} allows git's smart HTTP only (info/refs?service=git-upload-pack or git-receive-pack)` };
  }
  if (service === 'git-upload-pack') {
    if (matchesAny(git.fetch, repo)) return { ok: true };
    const listed = git.fetch.length > 0 ? `allows fetching ${git.fetch.join(', ')}` : 'allows no fetches';
    return { ok: false, message: `repository ${repo} may not be cloned or fetched: ${label} ${listed}` };
  }
  const rules = git.push.filter((p) => matchesAny([p.repo], repo));
  if (rules.length === 0) {
    const listed = git.push.length > 0 ? `allows pushing to ${[...new Set(git.push.map((p) => p.repo))].join(', ')}` : 'allows no pushes';
    return { ok: false, message: `repository ${repo} may not be pushed to: ${label} ${listed}` };
  }
  return endpoint === 'rpc' ? { ok: true, push: Object.freeze({ repo, rules: Object.freeze(rules) }) } : { ok: true };
}

/** One command of a push: set `ref` from `oldId` to `newId` (all zeros: absent). */
export interface RefUpdate {
  readonly ref: string;
  readonly oldId: string;
  readonly newId: string;
}

export type RefUpdateKind = 'create' | 'update' | 'delete';

export function refUpdateKind(u: RefUpdate): RefUpdateKind {
  if (/^0+$/.test(u.oldId)) return 'create';
  if (/^0+$/.test(u.newId)) return 'delete';
  return 'update';
}

export type RefVerdict =
  | { readonly verdict: 'allow'; readonly kind: RefUpdateKind; readonly why: string }
  | { readonly verdict: 'deny'; readonly kind: RefUpdateKind; readonly why: string }
  /** Allowed only if the new commit descends from the old one (a fast-forward). */
  | { readonly verdict: 'fast-forward-only'; readonly kind: 'update'; readonly why: string };

/** The decision on one ref update from the command list alone. */
export function decideRefUpdate(target: GitPushTarget, u: RefUpdate): RefVerdict {
  const kind = refUpdateKind(u);
  const branch = u.ref.startsWith('refs/heads/') ? u.ref.slice('refs/heads/'.length) : null;
  const tag = u.ref.startsWith('refs/tags/') ? u.ref.slice('refs/tags/'.length) : null;
  if (branch === null && tag === null) {
    return { verdict: 'deny', kind, why: `only branches (refs/heads/) and tags (refs/tags/) may be pushed, not ${u.ref}` };
  }
  const what = branch !== null ? `branch ${branch}` : `tag ${tag}`;
  const entries = target.rules.filter((p) => (branch !== null ? matchesAny(p.branches, branch) : matchesAny(p.tags, tag!)));
  if (entries.length === 0) {
    const globs = (p: GitPushRule) => (branch !== null ? p.branches : p.tags);
    const allowed = [...new Set(target.rules.flatMap(globs))];
    const listing = allowed.length > 0 ? `only ${branch !== null ? 'branches' : 'tags'} ${allowed.join(', ')}` : `no ${branch !== null ? 'branches' : 'tags'}`;
    return { verdict: 'deny', kind, why: `${what} may not be pushed to ${target.repo} (the policy allows ${listing})` };
  }
  const labels = (list: readonly GitPushRule[]) => list.map((p) => p.label).join(', ');
  switch (kind) {
    case 'create': {
      const by = entries.find((p) => p.create);
      return by
        ? { verdict: 'allow', kind, why: `create allowed by ${by.label}` }
        : { verdict: 'deny', kind, why: `creating ${what} is not allowed (create: false in ${labels(entries)})` };
    }
    case 'delete': {
      const by = entries.find((p) => p.delete);
      return by
        ? { verdict: 'allow', kind, why: `delete allowed by ${by.label}` }
        : { verdict: 'deny', kind, why: `deleting ${what} is not allowed (delete: false in ${labels(entries)})` };
    }
    case 'update': {
      const by = entries.find((p) => p.force);
      if (by) return { verdict: 'allow', kind, why: `any update allowed by ${by.label} (force: true)` };
      if (u.oldId === u.newId) return { verdict: 'allow', kind, why: 'unchanged' };
      if (tag !== null) return { verdict: 'deny', kind, why: `moving ${what} is not allowed (force: false in ${labels(entries)})` };
      return { verdict: 'fast-forward-only', kind, why: `force: false in ${labels(entries)}` };
    }
  }
}

/**
 * The final decision on a fast-forward-only update once the pushed commits are known. `proof` is
 * null when the new commit was shown to descend from the old one, else why it could not be.
 */
export function decideFastForward(u: RefUpdate, entries: string, proof: string | null): RefVerdict {
  if (proof === null) return { verdict: 'allow', kind: 'update', why: 'fast-forward' };
  return {
    verdict: 'deny',
    kind: 'update',
    why: `not a fast-forward as far as Airlock can tell (${proof}); ${entries}, so ${u.ref.replace(/^refs\/heads\//, 'branch ')} may not be force-pushed`,
  };
}
