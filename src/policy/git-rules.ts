// The `git:` block of an allow rule: which repositories may be fetched, and which refs of which
// repositories may be pushed, and how.
//
//   - host: github.com
//     git:
//       fetch: ["acme/*"]
//       push:
//         - repo: acme/app
//           branches: ["agent/*"]   # refs/heads/agent/...
//           tags: ["v*"]            # refs/tags/v...; none when left out
//           create: true            # the default
//           force: false            # the default: only fast-forwards; a tag never moves
//           delete: false           # the default
//
// Repository and ref names are globs (`*` any run of characters, `?` one), matched exactly as
// written: case matters, since some git servers (unlike GitHub) tell "Acme/App" from "acme/app".
import { Reader, type Value } from './reader.js';
import type { GitPushRule, GitRule } from './types.js';

const GIT_KEYS = ['fetch', 'push'] as const;
const PUSH_KEYS = ['repo', 'branches', 'tags', 'create', 'force', 'delete'] as const;

// What a repository path may be made of: the names GitHub, GitLab and Gitea allow, and globs.
const REPO_GLOB = /^[A-Za-z0-9._~*?-]+(?:\/[A-Za-z0-9._~*?-]+)*$/;
// Ref names as git allows them (git check-ref-format), loosely: no spaces, controls or ~^:?[\
// except the glob characters, which are ours.
const REF_GLOB = /^[^\s\x00-\x1f\x7f~^:[\\]+$/;

const HINT = {
  git: 'Write git: as a map, e.g. git: { fetch: ["acme/*"], push: [{ repo: acme/app, branches: ["agent/*"] }] }',
  fetch: 'Use a list of repository globs, e.g. fetch: ["acme/*", "acme-labs/tool"] (owner/name as in the clone URL, without ".git")',
  push: 'Use a list of push entries, e.g. push: [{ repo: acme/app, branches: ["agent/*"] }]',
  pushEntry: 'Each push entry is a map, e.g. - { repo: acme/app, branches: ["agent/*"], force: false }',
  repo: 'Use a repository glob, e.g. repo: acme/app or repo: "acme/*" (owner/name as in the clone URL, without ".git")',
  branches: 'Use a list of branch globs without refs/heads/, e.g. branches: ["agent/*", "fix-*"]',
  tags: 'Use a list of tag globs without refs/tags/, e.g. tags: ["v*"]',
  flag: 'Use true or false',
} as const;

export function parseGitRule(r: Reader, v: Value, rulePath: string): GitRule {
  const fields = r.entries(v, GIT_KEYS, HINT.git);
  if (fields.size === 0) {
    r.fail(v, v.path, 'is empty', `${HINT.git}; remove git: to allow this host without git scoping`);
  }
  const fetchValue = fields.get('fetch');
  const pushValue = fields.get('push');
  const fetch = fetchValue ? repoGlobs(r, fetchValue) : [];
  const push = pushValue ? r.list(pushValue, HINT.push).map((item, i) => parsePush(r, item, `${rulePath}.git.push[${i}]`)) : [];
  return Object.freeze({ fetch: Object.freeze(fetch), push: Object.freeze(push) });
}

function repoGlobs(r: Reader, v: Value): string[] {
  const items = r.list(v, HINT.fetch);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', `${HINT.fetch}; leave fetch out to allow no fetches`);
  return items.map((item) => repoGlob(r, item, HINT.fetch));
}

function repoGlob(r: Reader, v: Value, hint: string): string {
  const glob = r.string(v, hint).replace(/\.git$/, '');
  if (!REPO_GLOB.test(glob) || glob.split('/').some((s) => s === '.' || s === '..')) {
    r.fail(v, v.path, `${JSON.stringify(glob)} is not a repository glob`, hint);
  }
  return glob;
}

function refGlobs(r: Reader, v: Value | undefined, prefix: string, hint: string): string[] {
  if (!v) return [];
  const items = r.list(v, hint);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', `${hint}; leave it out to allow none`);
  return items.map((item) => {
    const glob = r.string(item, hint);
    if (glob.startsWith('refs/')) r.fail(item, v.path, `${JSON.stringify(glob)} starts with "refs/"`, `Write the name after ${prefix}, e.g. "agent/*"`);
    if (!REF_GLOB.test(glob)) r.fail(item, v.path, `${JSON.stringify(glob)} is not a ref name glob`, hint);
    return glob;
  });
}

function parsePush(r: Reader, item: Value, label: string): GitPushRule {
  const fields = r.entries(item, PUSH_KEYS, HINT.pushEntry);
  const repoValue = fields.get('repo');
  if (!repoValue) r.fail(item, `${item.path}.repo`, 'is missing', HINT.repo);
  const branches = refGlobs(r, fields.get('branches'), 'refs/heads/', HINT.branches);
  const tags = refGlobs(r, fields.get('tags'), 'refs/tags/', HINT.tags);
  if (branches.length === 0 && tags.length === 0) {
    r.fail(item, item.path, 'names no branches and no tags', 'Add branches: ["agent/*"] (and/or tags:) to say which refs may be pushed');
  }
  const flag = (key: 'create' | 'force' | 'delete', fallback: boolean) => {
    const value = fields.get(key);
    return value ? r.boolean(value, HINT.flag) : fallback;
  };
  return Object.freeze({
    label,
    line: item.line ?? 1,
    repo: repoGlob(r, repoValue, HINT.repo),
    branches: Object.freeze(branches),
    tags: Object.freeze(tags),
    create: flag('create', true),
    force: flag('force', false),
    delete: flag('delete', false),
  });
}
