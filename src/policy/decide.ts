// The decision function: given a policy and the facts of one request, allow or deny.
//
// Pure and synchronous; it runs on every CONNECT and every request, so the per-policy work
// (compiling path globs) is done once and cached against the frozen policy object.
// `mode: report` is an outcome like the others: a denial of the policy's rules becomes
// would_deny, which the proxy lets through (inspected, so each request is judged too) and audits.

import { decideGitRequest, gitRequestOf, type GitRequest } from './git-decide.js';
import { decideGithubRequest } from './github-decide.js';
import { compilePathGlob, type PathMatcher } from './glob.js';
import { matchHostPattern } from './hosts.js';
import { ambiguousPathEncoding, withoutPathParameters } from './path-encoding.js';
import type { AllowRule, Decision, DenyReason, MethodOverride, Policy, RequestFacts } from './types.js';

interface CompiledRule {
  readonly rule: AllowRule;
  /** null = any path. */
  readonly paths: readonly PathMatcher[] | null;
}

// Keyed by the policy object: policies are frozen, so a compiled form can never go stale, and
// a policy that is dropped (reload) takes its compiled form with it.
const compiled = new WeakMap<Policy, readonly CompiledRule[]>();

function compile(policy: Policy): readonly CompiledRule[] {
  let rules = compiled.get(policy);
  if (!rules) {
    rules = policy.allow.map((rule) => ({ rule, paths: rule.paths?.map(compilePathGlob) ?? null }));
    compiled.set(policy, rules);
  }
  return rules;
}

// What a normalised host can look like (names, IPv4, canonical IPv6). The caller is meant to
// pass normalizeHost() output; this cheap check makes anything else fail closed instead of, say,
// letting "x/.example.com" reach the wildcard suffix comparison.
const NORMALISED_HOST = /^[a-z0-9._:-]+$/;

// Denials report mode lets through: those of the policy's rules. A malformed host stays refused.
const REPORTABLE: ReadonlySet<DenyReason> = new Set<DenyReason>(['no_rule', 'port_not_allowed', 'method_not_allowed', 'path_not_allowed']);

export function decide(policy: Policy, facts: RequestFacts): Decision {
  const decision = enforced(policy, facts);
  if (decision.action === 'deny' && policy.mode === 'report' && REPORTABLE.has(decision.reason)) {
    return { ...decision, action: 'would_deny', inspect: true };
  }
  return decision;
}

/** The decision as if the policy were enforced. */
function enforced(policy: Policy, facts: RequestFacts): Decision {
  const { host, port } = facts;
  if (!NORMALISED_HOST.test(host)) {
    return deny(null, 'invalid_host', `host ${JSON.stringify(host)} is not a valid host name`);
  }

  // One pass in file order, no allocation: the first rule that fully matches wins, and the
  // first rules that matched host / host+port / host+port+method are kept for the deny message.
  let firstOnHost: AllowRule | undefined;
  let firstOnPort: AllowRule | undefined;
  let methodOnly: AllowRule | undefined;
  /** Why methodOnly refused the path when it is not a plain mismatch (an ambiguous spelling). */
  let ambiguousBecause: string | undefined;
  let overridden: { rule: AllowRule; override: MethodOverride } | undefined;
  // HTTP methods are case-sensitive (RFC 9110 9.1) and rule methods are upper-case, so "get"
  // does not pass a GET-only rule: the upstream might not treat it as GET.
  const method = facts.method ?? '';
  const path = facts.path;
  const overrides = facts.methodOverrides ?? NO_OVERRIDES;
  // Judged once, when the first rule with paths: is reached (undefined: not yet).
  let ambiguity: string | null | undefined;
  const rules = compile(policy);
  // A git smart-HTTP request, on a host some git rule covers, is for git rules alone to decide.
  const gitRequest = facts.phase === 'request' ? gitRequestOf(facts) : null;
  const gitScoped = gitRequest !== null && rules.some(({ rule }) => rule.git && rule.ports.includes(port) && matchHostPattern(rule.host, host));
  /** The first git rule that refused a git request, or that a request other than git's met. */
  let gitRefused: { rule: AllowRule; message: string } | undefined;
  // A host some github: rule covers is for github: rules alone to decide: a plain rule for the
  // same host would otherwise let through what the github: rule refuses.
  const githubScoped = facts.phase === 'request' && rules.some(({ rule }) => rule.github && rule.ports.includes(port) && matchHostPattern(rule.host, host));
  let githubRefused: { rule: AllowRule; what: string; message: string } | undefined;
  // Likewise a path some mcp: rule covers: a plain rule beside it would let every tool be called.
  // Paths no mcp: rule names (an OAuth endpoint beside /mcp, say) are left to the other rules.
  const mcpScoped =
    facts.phase === 'request' &&
    rules.some(({ rule, paths }) => rule.mcp && rule.ports.includes(port) && matchHostPattern(rule.host, host) && (paths === null || (path !== undefined && paths.some((m) => m(path)))));
  for (const { rule, paths } of rules) {
    if (!matchHostPattern(rule.host, host)) continue;
    firstOnHost ??= rule;
    if (!rule.ports.includes(port)) continue;
    if (facts.phase === 'connect') {
      // Method and path are not known until the tunnel is opened; they are checked per request.
      return allow(rule, `${host}:${port} allowed by ${rule.label}`);
    }
    if (githubScoped) {
      if (!rule.github) continue;
      const verdict = decideGithubRequest(rule.github, rule.label, method, path ?? '', facts.rawPath ?? path ?? '', overrides);
      if (verdict.ok) {
        const allowed = { ...allow(rule, `GitHub API ${verdict.what} on ${host} allowed by ${rule.label}`), detail: `github ${verdict.what}` };
        return verdict.graphql ? { ...allowed, graphql: { mutations: rule.github.mutations } } : allowed;
      }
      githubRefused ??= { rule, what: verdict.what, message: `GitHub API ${verdict.what} on ${host} is not allowed: ${verdict.message}` };
      continue;
    }
    if (rule.git || gitScoped) {
      if (!rule.git) continue;
      const verdict = gitRequest ? decideGitRequest(rule.git, rule.label, method, gitRequest) : null;
      if (verdict?.ok) {
        const allowed = allow(rule, `git ${describeGit(gitRequest!)} on ${host} allowed by ${rule.label}`);
        return verdict.push ? { ...allowed, gitPush: verdict.push } : allowed;
      }
      gitRefused ??= {
        rule,
        message: verdict
          ? `git ${describeGit(gitRequest!)} on ${host} is not allowed: ${verdict.message}`
          : `${describeRequest(method, path)} on ${host} is not allowed: ${rule.label} allows only git's smart HTTP (clone, fetch and push)`,
      };
      continue;
    }
    if (mcpScoped && !rule.mcp) continue;
    firstOnPort ??= rule;
    if (rule.methods !== null) {
      if (!rule.methods.includes(method)) continue;
      // Servers that honour an override run the request as that method: the rule must allow it too.
      const refused = refusedOverride(rule.methods, overrides);
      if (refused) {
        overridden ??= { rule, override: refused };
        continue;
      }
    }
    if (paths === null) {
      return allowRequest(rule, `${describeRequest(method, path)} on ${host} allowed by ${rule.label}`);
    }
    // A rule with paths cannot pass a request whose path is unknown, or one whose path servers
    // may read as another path than the one matched.
    if (path !== undefined) {
      if (ambiguity === undefined) {
        const header = facts.pathOverrides?.[0];
        ambiguity = header
          ? `header ${header}, which some servers (IIS URL Rewrite, older Symfony and Zend) serve instead of the request's path`
          : ambiguousPathEncoding(facts.rawPath ?? path);
      }
      if (ambiguity !== null) {
        if (!methodOnly) ambiguousBecause = ambiguity;
      } else if (paths.some((matches) => matches(path))) {
        const bare = path.includes(';') ? withoutPathParameters(path) : path;
        if (bare === path || paths.some((matches) => matches(bare))) {
          return allowRequest(rule, `${describeRequest(method, path)} on ${host} allowed by ${rule.label}`);
        }
        if (!methodOnly) ambiguousBecause = `";" parameters, which Tomcat and Spring drop, reading it as ${bare}`;
      }
    }
    methodOnly ??= rule;
  }

  if (!firstOnHost) {
    return deny(null, 'no_rule', `host ${host} matches no allow rule in policy "${policy.name}"`);
  }
  if (githubRefused) {
    const refused = deny(githubRefused.rule.label, 'path_not_allowed', `${githubRefused.message}. Ask the operator to extend the rule's github: block.`);
    return { ...refused, detail: `github ${githubRefused.what}` };
  }
  if (gitRefused && (gitScoped || !firstOnPort)) {
    const refused = deny(gitRefused.rule.label, 'path_not_allowed', `${gitRefused.message}. Ask the operator to extend the rule's git: block.`);
    // A push report mode lets through still has its ref updates read, so the audit line (and
    // policy suggest) names them; enforced, it never gets that far.
    const repo = gitRequest?.service === 'git-receive-pack' && gitRequest.endpoint === 'rpc' ? gitRequest.repo : null;
    return repo !== null && policy.mode === 'report' ? { ...refused, gitPush: { repo, rules: [] } } : refused;
  }
  if (!firstOnPort) {
    const r = firstOnHost;
    return deny(r.label, 'port_not_allowed', `port ${port} on ${host} is not allowed: ${r.label} allows ports ${r.ports.join(', ')}`);
  }
  // Report the failure that got furthest: a rule that accepted the method but not the path says
  // more about what to change than the first rule's method list does.
  if (methodOnly) {
    const r = methodOnly;
    const allowed = (r.paths ?? []).join(', ');
    if (ambiguousBecause) {
      return deny(
        r.label,
        'path_not_allowed',
        `${describeRequest(method, facts.rawPath ?? path)} on ${host} is not allowed: its path is ambiguous (an ambiguous encoding or a path override), ${ambiguousBecause}; ` +
          `servers read such requests differently, so ${r.label} (paths ${allowed}) cannot vouch for the path the server would serve. ` +
          `Send the path without that encoding, or ask the operator for a rule without paths: for ${host}.`,
      );
    }
    return deny(r.label, 'path_not_allowed', `${describeRequest(method, path)} on ${host} is not allowed: ${r.label} allows paths ${allowed}`);
  }
  if (overridden) {
    const { rule: r, override } = overridden;
    return deny(
      r.label,
      'method_not_allowed',
      `${describeRequest(method, path)} on ${host} is not allowed: ${override.via} asks the server to treat it as ${quoteMethod(override.method)}, ` +
        `and ${r.label} allows methods ${(r.methods ?? []).join(', ')}. Leave the override out, or ask the operator to allow ${quoteMethod(override.method)}.`,
    );
  }
  const r = firstOnPort;
  return deny(r.label, 'method_not_allowed', `${describeRequest(method, path)} on ${host} is not allowed: ${r.label} allows methods ${(r.methods ?? []).join(', ')}`);
}

const NO_OVERRIDES: readonly MethodOverride[] = [];

/** The first override whose method `methods` does not include. */
function refusedOverride(methods: readonly string[], overrides: readonly MethodOverride[]): MethodOverride | undefined {
  for (const o of overrides) if (!methods.includes(o.method)) return o;
  return undefined;
}

/** An override's method for a message: the client chose it, so it is cut short and quoted when odd. */
function quoteMethod(method: string): string {
  if (/^[A-Z]{1,20}$/.test(method)) return method;
  return JSON.stringify(method.length > 40 ? `${method.slice(0, 40)}...` : method);
}

function describeGit(r: GitRequest): string {
  const what = r.service === 'git-receive-pack' ? 'push' : r.service === 'git-upload-pack' ? 'fetch' : 'request';
  return `${what}${r.endpoint === 'info/refs' ? ' (ref advertisement)' : ''} of ${r.repo ?? '(unreadable repository path)'}`;
}

function describeRequest(method: string, path: string | undefined): string {
  return `${method || '(no method)'} ${path ?? '(no path)'}`;
}

function allow(rule: AllowRule, message: string): Decision {
  return { action: 'allow', rule: rule.label, reason: 'allowed', message, inspect: rule.inspect };
}

/** An allowed request: one an mcp: rule allowed still has its body and response checked. */
function allowRequest(rule: AllowRule, message: string): Decision {
  const allowed = allow(rule, message);
  return rule.mcp ? { ...allowed, mcp: { rule: rule.mcp, label: rule.label } } : allowed;
}

function deny(rule: string | null, reason: DenyReason, message: string): Decision {
  return { action: 'deny', rule, reason, message, inspect: false };
}

/**
 * Host patterns the session CA may sign for (X.509 name constraints): the DNS subtree of every
 * rule that is inspected (exact "a.example.com" -> "a.example.com", "*.example.com" ->
 * "example.com") and the IP addresses of inspected IP rules. inspect:false rules are tunnelled,
 * so the CA never needs to sign for them. Credential hosts do not count: a credential is only
 * injected into traffic some allow rule already lets through.
 */
export function inspectedHostPatterns(policy: Policy): { dns: string[]; ips: string[] } {
  return hostSubtrees(policy, (rule) => rule.inspect);
}

/**
 * Every DNS subtree and IP the session may reach at all (any allow rule, inspected or blind, and
 * every host a credential is bound to): what a notice CA must never be able to speak for.
 */
export function reachableHostPatterns(policy: Policy): { dns: string[]; ips: string[] } {
  const reach = hostSubtrees(policy, () => true);
  const dns = new Set(reach.dns);
  for (const credential of policy.credentials) for (const host of credential.hosts) dns.add(host.startsWith('*.') ? host.slice(2) : host);
  return { dns: [...dns], ips: reach.ips };
}

function hostSubtrees(policy: Policy, which: (rule: Policy['allow'][number]) => boolean): { dns: string[]; ips: string[] } {
  const dns = new Set<string>();
  const ips = new Set<string>();
  for (const rule of policy.allow) {
    if (!which(rule)) continue;
    if (rule.kind === 'ip') ips.add(rule.host);
    else dns.add(rule.kind === 'wildcard' ? rule.host.slice(2) : rule.host);
  }
  return { dns: [...dns], ips: [...ips] };
}
