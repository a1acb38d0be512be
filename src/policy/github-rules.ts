// The `github:` block of an allow rule on api.github.com: which repositories the REST API may be
// used on, which dangerous endpoints (denied by default) are allowed, and which GraphQL mutations.
//
//   - host: api.github.com
//     github:
//       repos: ["acme/*"]                 # /repos/{owner}/{repo}/... only for these
//       allow: [hooks]                    # dangerous endpoints this rule allows (see ENDPOINTS)
//       graphql:
//         mutations: [createPullRequest]  # queries are always allowed; mutations only these
//
// Repository globs are matched without regard to case, as GitHub resolves owner and name.
import { closest, Reader, type Value } from './reader.js';
import { DANGEROUS_ENDPOINTS } from './github-decide.js';
import type { GithubRule } from './types.js';

const GITHUB_KEYS = ['repos', 'allow', 'graphql'] as const;
const GRAPHQL_KEYS = ['mutations'] as const;

const REPO_GLOB = /^[A-Za-z0-9._*?-]+\/[A-Za-z0-9._*?-]+$/;
const GRAPHQL_NAME = /^[_A-Za-z][_0-9A-Za-z]*$/;
const ENDPOINT_NAMES = Object.keys(DANGEROUS_ENDPOINTS);

const HINT = {
  github: 'Write github: as a map, e.g. github: { repos: ["acme/*"], graphql: { mutations: [createPullRequest] } }',
  repos: 'Use a list of owner/name globs, e.g. repos: ["acme/*", "acme-labs/tool"]',
  allow: `Use a list of endpoint names that are denied by default: ${ENDPOINT_NAMES.join(', ')}`,
  graphql: 'Write graphql: as a map, e.g. graphql: { mutations: [createPullRequest, addComment] }',
  mutations: 'Use a list of mutation field names as in the GraphQL schema, e.g. mutations: [createPullRequest]',
} as const;

export function parseGithubRule(r: Reader, v: Value): GithubRule {
  const fields = r.entries(v, GITHUB_KEYS, HINT.github);
  const reposValue = fields.get('repos');
  if (!reposValue) r.fail(v, `${v.path}.repos`, 'is missing', `${HINT.repos}; the REST API under /repos/ is refused for any repository not listed`);
  const repos = nonEmptyList(r, reposValue, HINT.repos).map((item) => {
    const glob = r.string(item, HINT.repos).replace(/\.git$/, '');
    if (!REPO_GLOB.test(glob) || glob.split('/').some((s) => s === '.' || s === '..')) {
      r.fail(item, item.path, `${JSON.stringify(glob)} is not an owner/name glob`, HINT.repos);
    }
    return glob.toLowerCase();
  });
  const allowValue = fields.get('allow');
  const allow = allowValue
    ? nonEmptyList(r, allowValue, HINT.allow).map((item) => {
        const name = r.string(item, HINT.allow);
        if (!ENDPOINT_NAMES.includes(name)) {
          const guess = closest(name, ENDPOINT_NAMES);
          r.fail(item, item.path, `unknown endpoint ${JSON.stringify(name)}${guess ? ` (did you mean "${guess}"?)` : ''}`, HINT.allow);
        }
        return name;
      })
    : [];
  let mutations: string[] = [];
  const graphqlValue = fields.get('graphql');
  if (graphqlValue) {
    const g = r.entries(graphqlValue, GRAPHQL_KEYS, HINT.graphql);
    const m = g.get('mutations');
    if (!m) r.fail(graphqlValue, `${graphqlValue.path}.mutations`, 'is missing', `${HINT.mutations}; leave graphql: out to allow queries only`);
    mutations = nonEmptyList(r, m, HINT.mutations).map((item) => {
      const name = r.string(item, HINT.mutations);
      if (!GRAPHQL_NAME.test(name)) r.fail(item, item.path, `${JSON.stringify(name)} is not a GraphQL field name`, HINT.mutations);
      return name;
    });
  }
  return Object.freeze({ repos: Object.freeze(repos), allow: Object.freeze(allow), mutations: Object.freeze(mutations) });
}

function nonEmptyList(r: Reader, v: Value, hint: string): Value[] {
  const items = r.list(v, hint);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', `${hint}; leave it out instead`);
  return items;
}
