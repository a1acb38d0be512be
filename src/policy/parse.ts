// Policy loader: YAML text -> validated, deeply frozen Policy.
//
// Two steps: parse the YAML keeping node ranges, then validate node by node into the types of
// types.ts. Validation is strict (unknown keys are errors) because a silently ignored typo in an
// egress policy -- `method:` instead of `methods:` -- would widen what a rule allows.
// The caller passes the text; this module does no file or env access.

import { createHash } from 'node:crypto';
import { isMap, LineCounter, parseDocument, type ErrorCode } from 'yaml';
import { parseContainer } from './container.js';
import { parseCredentials } from './credentials.js';
import { PolicyError } from './errors.js';
import { parseGitRule } from './git-rules.js';
import { parseGithubRule } from './github-rules.js';
import { parseMcpRule } from './mcp-rules.js';
import { parseHostPattern } from './host-pattern.js';
import { describe, Reader, type Value } from './reader.js';
import { parseUsage } from './usage.js';
import type { AllowRule, Limits, Policy } from './types.js';

export { PolicyError } from './errors.js';

const TOP_KEYS = ['version', 'name', 'mode', 'allow', 'credentials', 'limits', 'container', 'usage'] as const;
const RULE_KEYS = ['host', 'methods', 'ports', 'paths', 'inspect', 'git', 'github', 'mcp'] as const;
const LIMIT_KEYS = ['max_upload_bytes', 'max_connections', 'requests_per_second'] as const;

const DEFAULT_PORTS: readonly number[] = Object.freeze([80, 443]);
const NAME_RE = /^[a-zA-Z0-9._-]{1,64}$/;
const METHOD_RE = /^[A-Za-z]+$/;

const HINT = {
  version: 'This Airlock reads policy files written for "version: 1"',
  name: 'Use 1-64 characters from letters, digits, ".", "_" and "-", e.g. name: github-dev',
  mode: 'Use mode: enforce (deny what no rule allows; the default) or mode: report (allow, but log would-be denials)',
  allow: 'Write allow: as a list of rules, e.g. allow: [{ host: api.github.com }] (an empty list denies everything)',
  rule: 'Each allow rule is a map, e.g. - host: api.github.com',
  limits: 'Write limits: as a map, e.g. limits: { max_upload_bytes: 1048576 }',
  host: 'Every rule needs host:, e.g. host: api.github.com or host: "*.githubusercontent.com"',
  methods: 'Use a list of HTTP method names, e.g. methods: [GET, HEAD]; leave methods out to allow any method',
  ports: 'Use integers 1-65535, e.g. ports: [443, 8443]; leave ports out for the default [80, 443]',
  paths: 'Use a list of path globs starting with "/", e.g. paths: ["/v1/*"] (* matches anything, ? one character); leave paths out to allow any path',
  inspect: 'Use inspect: true (the default: TLS is intercepted so methods, paths and credentials work) or inspect: false (tunnel without interception)',
  maxUpload: 'Use a positive whole number of bytes, e.g. max_upload_bytes: 1048576',
  maxConnections: 'Use a positive whole number, e.g. max_connections: 256',
  rps: 'Use a positive whole number of requests per second, e.g. requests_per_second: 100',
} as const;

const SYNTAX_HINT =
  'Check the indentation and quote values that contain ": " or start with "*", "&", "!", "{" or "["';
const SYNTAX_HINTS: Partial<Record<ErrorCode, string>> = {
  DUPLICATE_KEY: 'Each key may appear only once in a map; merge or remove the repeated key',
  TAB_AS_INDENT: 'Indent with spaces, not tabs',
  MULTIPLE_DOCS: 'A policy file holds a single YAML document; remove the extra "---" line',
};

export function parsePolicy(text: string, source: string): Policy {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  const syntaxError = doc.errors[0];
  if (syntaxError) {
    const line = syntaxError.linePos?.[0].line ?? lines.linePos(syntaxError.pos[0]).line;
    // prettyErrors appends " at line N, column M:" and a code frame; the location is already in
    // our prefix, so keep just the first sentence.
    const what =
      syntaxError.code === 'MULTIPLE_DOCS'
        ? 'the file contains more than one YAML document' // yaml's own text names its API
        : syntaxError.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '') ?? 'invalid YAML';
    throw new PolicyError(source, line, 'yaml', `YAML syntax error: ${what}`, SYNTAX_HINTS[syntaxError.code] ?? SYNTAX_HINT);
  }

  const r: Reader = new Reader(source, doc, lines); // explicit type: lets r.fail() narrow
  const root = r.value(doc.contents, '', 1);
  if (r.isNull(root)) {
    r.fail({ line: 1 }, 'policy', 'the file is empty', 'A policy starts with "version: 1" and "name: ..."');
  }
  if (!isMap(root.node)) {
    r.fail(root, 'policy', `the file must hold a map of settings, got ${describe(root.node)}`, 'A policy starts with "version: 1" and "name: ..."');
  }
  // Check version before anything else: a future version may have keys this one doesn't know.
  const version = r.lookup(root, 'version');
  if (!version) r.fail({ line: 1 }, 'version', 'is missing', HINT.version);
  if (r.scalar(version, HINT.version) !== 1) {
    r.fail(version, 'version', `${describeScalar(r, version)} is not a supported version`, HINT.version);
  }
  const top = r.entries(root, TOP_KEYS, 'A policy is a map of settings');

  const nameValue = top.get('name');
  if (!nameValue) r.fail({ line: 1 }, 'name', 'is missing', HINT.name);
  const name = r.string(nameValue, HINT.name);
  if (!NAME_RE.test(name)) r.fail(nameValue, 'name', `${JSON.stringify(name)} is not a valid policy name`, HINT.name);

  const meaning = {
    version: 1 as const,
    name,
    mode: parseMode(r, top.get('mode')),
    allow: Object.freeze(parseAllow(r, top.get('allow'))),
    credentials: Object.freeze(parseCredentials(r, top.get('credentials'))),
    limits: parseLimits(r, top.get('limits')),
    container: parseContainer(r, top.get('container')),
  };
  // Only a policy with a usage: section carries one, so the digest of every other policy stays.
  const usage = parseUsage(r, top.get('usage'));
  if (usage) return Object.freeze({ ...meaning, usage, digest: policyDigest({ ...meaning, usage }), source });
  return Object.freeze({ ...meaning, digest: policyDigest(meaning), source });
}

/** See Policy.digest: JSON of the parsed policy without line numbers, hashed. */
function policyDigest(meaning: Omit<Policy, 'digest' | 'source'>): string {
  const canonical = JSON.stringify(meaning, (key, value: unknown) => (key === 'line' ? undefined : value));
  return createHash('sha256').update(canonical).digest('hex').slice(0, 12);
}

function describeScalar(r: Reader, v: Value): string {
  const s = r.scalar(v, HINT.version);
  return typeof s === 'string' ? JSON.stringify(s) : String(s);
}

function parseMode(r: Reader, v: Value | undefined): Policy['mode'] {
  if (!v) return 'enforce';
  const mode = r.string(v, HINT.mode);
  if (mode !== 'enforce' && mode !== 'report') r.fail(v, v.path, `${JSON.stringify(mode)} is not a mode`, HINT.mode);
  return mode;
}

function parseAllow(r: Reader, v: Value | undefined): AllowRule[] {
  // `allow:` with nothing under it (e.g. every rule commented out) means "allow nothing", the
  // safe reading, so it is accepted like an empty list.
  if (!v || r.isNull(v)) return [];
  return r.list(v, HINT.allow).map((item, index) => parseRule(r, item, index));
}

function parseRule(r: Reader, item: Value, index: number): AllowRule {
  const fields = r.entries(item, RULE_KEYS, HINT.rule);
  const line = item.line ?? 1;

  const hostValue = fields.get('host');
  if (!hostValue) r.fail(item, `${item.path}.host`, 'is missing', HINT.host);
  const pattern = parseHostPattern(r.string(hostValue, HINT.host));
  if (!pattern.ok) r.fail(hostValue, hostValue.path, pattern.problem, pattern.hint);

  const methods = optional(r, fields.get('methods'), (v) => parseMethods(r, v));
  const ports = optional(r, fields.get('ports'), (v) => parsePorts(r, v)) ?? DEFAULT_PORTS;
  const paths = optional(r, fields.get('paths'), (v) => parsePaths(r, v));
  const inspectValue = fields.get('inspect');
  const inspect = inspectValue ? r.boolean(inspectValue, HINT.inspect) : true;

  if (!inspect) {
    // Without TLS interception the proxy only sees the CONNECT line, so it could never enforce
    // a method or path restriction; refusing is better than silently ignoring it.
    for (const key of ['methods', 'paths'] as const) {
      const v = fields.get(key);
      if (v) {
        r.fail(
          v,
          v.path,
          `${key} need inspection, but this rule has inspect: false`,
          `Remove ${key} from this rule, or set inspect: true`,
        );
      }
    }
  }

  const gitValue = fields.get('git');
  const git = gitValue ? parseGitRule(r, gitValue, item.path) : null;
  if (gitValue) {
    // Git's requests are a fixed set of methods and paths, which the git: block decides on.
    for (const key of ['methods', 'paths', 'inspect'] as const) {
      const v = fields.get(key);
      if (v && !(key === 'inspect' && inspect)) {
        r.fail(v, v.path, key === 'inspect' ? 'git: needs inspection, but this rule has inspect: false' : `${key} cannot be combined with git:`,
          key === 'inspect' ? 'Remove inspect: false from this rule' : `Remove ${key} from this rule; for other requests to this host add a second rule without git:`);
      }
    }
  }

  const githubValue = fields.get('github');
  const github = githubValue ? parseGithubRule(r, githubValue) : null;
  if (githubValue) {
    // The API's requests are decided by the github: block alone.
    for (const key of ['methods', 'paths', 'inspect', 'git'] as const) {
      const v = fields.get(key);
      if (v && !(key === 'inspect' && inspect)) {
        r.fail(v, v.path, key === 'inspect' ? 'github: needs inspection, but this rule has inspect: false' : `${key} cannot be combined with github:`,
          key === 'inspect' ? 'Remove inspect: false from this rule' : `Remove ${key} from this rule; github: decides methods and paths by endpoint`);
      }
    }
  }

  const mcpValue = fields.get('mcp');
  const mcp = mcpValue ? parseMcpRule(r, mcpValue) : null;
  if (mcpValue) {
    // methods: and paths: still narrow an MCP rule (path scoping); git and github rules are other hosts' matters.
    for (const key of ['inspect', 'git', 'github'] as const) {
      const v = fields.get(key);
      if (v && !(key === 'inspect' && inspect)) {
        r.fail(v, v.path, key === 'inspect' ? 'mcp: needs inspection, but this rule has inspect: false' : `${key} cannot be combined with mcp:`,
          key === 'inspect' ? 'Remove inspect: false from this rule' : `Remove ${key} from this rule; write a separate rule for it`);
      }
    }
  }

  return Object.freeze({
    index,
    line,
    host: pattern.host,
    kind: pattern.kind,
    methods,
    ports,
    paths,
    inspect,
    label: `allow[${index}] ${pattern.host}`,
    git,
    github,
    mcp,
  });
}

/** Runs `parse` on a present value; absent -> null. An explicit empty value is an error. */
function optional<T>(r: Reader, v: Value | undefined, parse: (v: Value) => T): T | null {
  if (!v) return null;
  if (r.isNull(v)) {
    // `methods:` with nothing after it is most likely an unfinished edit; reading it as "any
    // method" would silently widen the rule.
    r.fail(v, v.path, 'has no value', `Give a value, or remove the key to get the default`);
  }
  return parse(v);
}

function parseMethods(r: Reader, v: Value): readonly string[] {
  const items = r.list(v, HINT.methods);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', HINT.methods);
  const methods: string[] = [];
  for (const item of items) {
    const m = r.scalar(item, HINT.methods);
    if (typeof m !== 'string' || !METHOD_RE.test(m)) {
      r.fail(item, v.path, `${JSON.stringify(m)} is not an HTTP method name`, HINT.methods);
    }
    const upper = m.toUpperCase();
    if (!methods.includes(upper)) methods.push(upper);
  }
  return Object.freeze(methods);
}

function parsePorts(r: Reader, v: Value): readonly number[] {
  const items = r.list(v, HINT.ports);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', HINT.ports);
  const ports: number[] = [];
  for (const item of items) {
    const p = r.scalar(item, HINT.ports);
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) {
      r.fail(item, v.path, `${JSON.stringify(p)} is not a port number`, HINT.ports);
    }
    if (!ports.includes(p)) ports.push(p);
  }
  return Object.freeze(ports);
}

function parsePaths(r: Reader, v: Value): readonly string[] {
  const items = r.list(v, HINT.paths);
  if (items.length === 0) r.fail(v, v.path, 'is an empty list', HINT.paths);
  const paths: string[] = [];
  for (const item of items) {
    const p = r.scalar(item, HINT.paths);
    if (typeof p !== 'string' || !p.startsWith('/')) {
      r.fail(item, v.path, `${JSON.stringify(p)} does not start with "/"`, HINT.paths);
    }
    if (/[\s\u0000-\u001f\u007f]/.test(p)) {
      r.fail(item, v.path, `${JSON.stringify(p)} contains whitespace or control characters`, HINT.paths);
    }
    if (!paths.includes(p)) paths.push(p);
  }
  return Object.freeze(paths);
}

function parseLimits(r: Reader, v: Value | undefined): Limits {
  if (!v || r.isNull(v)) return Object.freeze({ maxUploadBytes: null, maxConnections: null, requestsPerSecond: null });
  const fields = r.entries(v, LIMIT_KEYS, HINT.limits);
  const max = fields.get('max_upload_bytes');
  const connections = fields.get('max_connections');
  const rps = fields.get('requests_per_second');
  return Object.freeze({
    maxUploadBytes: max ? r.integer(max, 1, Number.MAX_SAFE_INTEGER, HINT.maxUpload) : null,
    maxConnections: connections ? r.integer(connections, 1, 1_000_000, HINT.maxConnections) : null,
    requestsPerSecond: rps ? r.integer(rps, 1, 1_000_000, HINT.rps) : null,
  });
}
