// `airlock policy suggest`: a least-privilege policy learned from a session's audit log.
//
// Pure: audit lines (and optionally the text of a policy to keep credentials/limits/container from) in,
// a policy object and its YAML text out. The CLI does the file reading.
//
// What counts as "used": requests and tunnels the proxy let through (action allow, or would_deny
// in report mode). Requests the proxy refused (action deny) were not used, and neither were
// requests refused for reasons no allow rule can change (credential misuse, malformed requests,
// Host/SNI mismatches, proxy auth) even if a line says otherwise.
//
// The result has one rule per host (hosts exactly as logged, i.e. normalised, sorted):
//   - ports: exactly the ports used (left out only when that is exactly the default [80, 443])
//   - methods: the methods used, sorted
//   - paths: only with `paths: true`, the exact paths used (no query); otherwise any path
//   - ports where the session opened tunnels but never sent a request through them (uninspected
//     tunnels, or clients that refused the session CA) get a separate `inspect: false` rule

import { Document, isSeq, parseDocument } from 'yaml';
import type { YAMLMap, YAMLSeq } from 'yaml';
import { parsePolicy } from '../policy/index.js';
import { parseHostPattern } from '../policy/host-pattern.js';
import type { Policy } from '../policy/index.js';
import type { AuditLine } from './report.js';
import { gitBlock, githubBlock, learnScoped, mcpBlock, newScopedUse } from './suggest-scoped.js';

/** Refusals that say nothing about what the session needs: no allow rule changes them. */
const NOT_USED_REASONS: ReadonlySet<string> = new Set([
  'credential_misuse',
  'bad_request',
  'host_mismatch',
  'auth_required',
  'invalid_host',
]);

const DEFAULT_PORTS = [80, 443] as const;
// Must agree with the policy loader (parse.ts).
const NAME_RE = /^[a-zA-Z0-9._-]{1,64}$/;
const METHOD_RE = /^[A-Za-z]+$/;

export class SuggestError extends Error {}

export interface SuggestOptions {
  /** Session id, for the name and the header comment. */
  readonly session: string;
  /** Policy name; default `suggested-<session>`. */
  readonly name?: string;
  /** List the exact paths used (default: leave paths out, i.e. any path). */
  readonly paths?: boolean;
  /** A policy whose `credentials:`, `limits:` and `container:` sections are kept. */
  readonly from?: { readonly text: string; readonly source: string };
  /** When the suggestion is made (header comment). Default: now. */
  readonly now?: Date;
}

export interface SuggestedRule {
  readonly host: string;
  /** Sorted, unique. */
  readonly ports: readonly number[];
  /** Sorted, upper-case; null for inspect: false rules. */
  readonly methods: readonly string[] | null;
  /** Sorted exact paths, or null for any path. */
  readonly paths: readonly string[] | null;
  readonly inspect: boolean;
  /** Audit lines behind this rule (requests for inspected rules, tunnels for the others). */
  readonly count: number;
  /** Reasons the session's own policy would have denied them (report mode), with counts. */
  readonly wouldDeny: Readonly<Record<string, number>>;
  /** A git:, github: or mcp: block learned from the audit details (suggest-scoped.ts). */
  readonly git?: Record<string, unknown>;
  readonly github?: Record<string, unknown>;
  readonly mcp?: Record<string, unknown>;
}

export interface Learned {
  readonly rules: readonly SuggestedRule[];
  /** Audit lines that counted. */
  readonly used: number;
  /** Lines left out, by why ("deny:no_rule", "credential_misuse", "malformed", ...). */
  readonly skipped: Readonly<Record<string, number>>;
  /** Things used that a policy cannot express; the suggestion leaves them out. */
  readonly notes: readonly string[];
  /** Time range of the lines that counted. */
  readonly first: string | null;
  readonly last: string | null;
}

export interface Suggestion {
  readonly learned: Learned;
  /** The policy as plain data (what the YAML holds). */
  readonly data: Record<string, unknown>;
  /** The policy file text, with header comments. Parses with parsePolicy. */
  readonly text: string;
  /** `text` parsed: proof that it is a valid policy. */
  readonly policy: Policy;
}

interface HostUse {
  readonly requestPorts: Set<number>;
  readonly methods: Set<string>;
  readonly paths: Set<string>;
  requests: number;
  readonly requestWouldDeny: Map<string, number>;
  /** CONNECT lines by port: how many, and why they would have been denied. */
  readonly tunnels: Map<number, { count: number; wouldDeny: Map<string, number> }>;
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;
}

/** Why a line does not count, or null when it does. */
function skipReason(line: AuditLine): string | null {
  const l = line as Partial<AuditLine>;
  if (typeof l !== 'object' || l === null) return 'malformed';
  if (l.kind !== 'request' && l.kind !== 'tunnel' && l.kind !== 'websocket') return 'malformed';
  if (typeof l.reason !== 'string') return 'malformed';
  if (NOT_USED_REASONS.has(l.reason)) return l.reason;
  if (l.action === 'deny') return `deny:${l.reason}`;
  if (l.action !== 'allow' && l.action !== 'would_deny') return 'malformed';
  if (typeof l.host !== 'string' || !isPort(l.port)) return 'malformed';
  if (l.kind !== 'tunnel' && (typeof l.method !== 'string' || typeof l.path !== 'string')) return 'malformed';
  const pattern = parseHostPattern(l.host);
  // Only hosts exactly as the proxy logs them (normalised names and IPs, never patterns).
  if (!pattern.ok || pattern.kind === 'wildcard' || pattern.host !== l.host) return 'invalid_host';
  return null;
}

/** What the session used, host by host. */
export function learnFromAudit(lines: readonly AuditLine[], opts: { paths?: boolean } = {}): Learned {
  const hosts = new Map<string, HostUse>();
  const skipped = new Map<string, number>();
  const notes = new Set<string>();
  const scoped = newScopedUse();
  let used = 0;
  let first: string | null = null;
  let last: string | null = null;

  // host -> ports that carried a request of any kind, used or not: a tunnel there was inspected.
  const inspected = new Map<string, Set<number>>();
  const sawRequest = (host: string, port: number) => {
    let ports = inspected.get(host);
    if (!ports) inspected.set(host, (ports = new Set()));
    ports.add(port);
  };

  for (const line of lines) {
    const skip = skipReason(line);
    if (skip) {
      bump(skipped, skip);
      // A tunnel whose only requests were refused (say, for credential misuse) was still an
      // inspected tunnel: it must not come out as an inspect: false rule.
      const l = line as Partial<AuditLine> | null;
      if (l && (l.kind === 'request' || l.kind === 'websocket') && typeof l.host === 'string' && isPort(l.port)) sawRequest(l.host, l.port);
      continue;
    }
    let use = hosts.get(line.host);
    if (!use) {
      use = {
        requestPorts: new Set(),
        methods: new Set(),
        paths: new Set(),
        requests: 0,
        requestWouldDeny: new Map(),
        tunnels: new Map(),
      };
      hosts.set(line.host, use);
    }
    if (line.kind === 'tunnel') {
      // Only the CONNECT line: the port is used, but method and path are not known.
      let tally = use.tunnels.get(line.port);
      if (!tally) {
        tally = { count: 0, wouldDeny: new Map() };
        use.tunnels.set(line.port, tally);
      }
      tally.count++;
      if (line.action === 'would_deny') bump(tally.wouldDeny, line.reason);
    } else if ((sawRequest(line.host, line.port), learnScoped(scoped, line))) {
      // A git request: the host's git rule covers it, not its plain rule.
      if (line.action === 'would_deny') bump(use.requestWouldDeny, line.reason);
    } else {
      if (!METHOD_RE.test(line.method)) {
        notes.add(`method ${JSON.stringify(line.method)} on ${line.host} cannot be written in a policy; not allowed`);
        bump(skipped, 'unexpressible');
        continue;
      }
      let path: string | null = null;
      if (opts.paths) {
        const q = line.path.indexOf('?');
        path = q === -1 ? line.path : line.path.slice(0, q);
        if (!path.startsWith('/') || /[\s\u0000-\u001f\u007f]/.test(path)) {
          notes.add(`path ${JSON.stringify(path)} on ${line.host} cannot be written in a policy; not allowed`);
          bump(skipped, 'unexpressible');
          continue;
        }
        if (path.includes('*')) {
          notes.add(`path ${JSON.stringify(path)} on ${line.host} contains "*", which a policy reads as a wildcard`);
        }
      }
      use.requestPorts.add(line.port);
      use.methods.add(line.method.toUpperCase());
      if (path !== null) use.paths.add(path);
      use.requests++;
      if (line.action === 'would_deny') bump(use.requestWouldDeny, line.reason);
    }
    used++;
    if (typeof line.time === 'string') {
      if (first === null || line.time < first) first = line.time;
      if (last === null || line.time > last) last = line.time;
    }
  }

  const rules: SuggestedRule[] = [];
  for (const host of [...hosts.keys()].sort(byCodeUnit)) {
    const use = hosts.get(host)!;
    const git = scoped.git.get(host);
    if (git) {
      rules.push({
        host,
        ports: [...git.ports].sort((a, b) => a - b),
        methods: null,
        paths: null,
        inspect: true,
        count: git.count,
        wouldDeny: {},
        git: gitBlock(git, scoped.notes, host),
      });
    }
    const github = scoped.github.get(host);
    const mcp = scoped.mcp.get(host);
    if (use.requestPorts.size > 0) {
      rules.push({
        ...(github ? { github: githubBlock(github, scoped.notes, host) } : {}),
        ...(mcp ? { mcp: mcpBlock(mcp) } : {}),
        host,
        ports: [...use.requestPorts].sort((a, b) => a - b),
        methods: [...use.methods].sort(byCodeUnit),
        paths: opts.paths ? [...use.paths].sort(byCodeUnit) : null,
        inspect: true,
        count: use.requests,
        wouldDeny: Object.fromEntries([...use.requestWouldDeny].sort(([a], [b]) => byCodeUnit(a, b))),
      });
    }
    // Tunnels on ports that never carried a request: the proxy only ever saw the CONNECT.
    const seen = inspected.get(host);
    const tunnelOnly = [...use.tunnels.keys()].filter((p) => !seen?.has(p)).sort((a, b) => a - b);
    if (tunnelOnly.length > 0) {
      let count = 0;
      const wouldDeny = new Map<string, number>();
      for (const port of tunnelOnly) {
        const tally = use.tunnels.get(port)!;
        count += tally.count;
        for (const [reason, n] of tally.wouldDeny) wouldDeny.set(reason, (wouldDeny.get(reason) ?? 0) + n);
      }
      rules.push({
        host,
        ports: tunnelOnly,
        methods: null,
        paths: null,
        inspect: false,
        count,
        wouldDeny: Object.fromEntries([...wouldDeny].sort(([a], [b]) => byCodeUnit(a, b))),
      });
    }
  }
  for (const note of scoped.notes) notes.add(note);
  return {
    rules,
    used,
    skipped: Object.fromEntries([...skipped].sort(([a], [b]) => byCodeUnit(a, b))),
    notes: [...notes].sort(byCodeUnit),
    first,
    last,
  };
}

function isDefaultPorts(ports: readonly number[]): boolean {
  return ports.length === DEFAULT_PORTS.length && DEFAULT_PORTS.every((p, i) => ports[i] === p);
}

function ruleData(rule: SuggestedRule): Record<string, unknown> {
  const out: Record<string, unknown> = { host: rule.host };
  if (!isDefaultPorts(rule.ports)) out.ports = [...rule.ports];
  // git: and github: decide methods and paths themselves.
  if (rule.git) return { ...out, git: rule.git };
  if (rule.github) return { ...out, github: rule.github };
  if (rule.inspect) {
    out.methods = [...(rule.methods ?? [])];
    if (rule.paths) out.paths = [...rule.paths];
    if (rule.mcp) out.mcp = rule.mcp;
  } else {
    out.inspect = false;
  }
  return out;
}

function counts(record: Readonly<Record<string, number>>): string {
  return Object.entries(record)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
}

function ruleComment(rule: SuggestedRule): string {
  const what = rule.inspect
    ? `${rule.count} request${rule.count === 1 ? '' : 's'}`
    : `${rule.count} tunnel${rule.count === 1 ? '' : 's'} with no inspected request`;
  const denied = Object.keys(rule.wouldDeny).length > 0 ? `; the session's policy would have denied: ${counts(rule.wouldDeny)}` : '';
  return ` ${what}${denied}`;
}

/** The `credentials:`, `limits:` and `container:` sections of a policy's text, as plain data. */
function keptSections(from: { text: string; source: string }): Record<string, unknown> {
  parsePolicy(from.text, from.source); // a broken --from policy is reported as such (PolicyError)
  const data = parseDocument(from.text).toJS({ maxAliasCount: 100 }) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of ['credentials', 'limits', 'container']) {
    if (data[key] !== undefined && data[key] !== null) out[key] = data[key];
  }
  return out;
}

function defaultName(session: string): string {
  const name = `suggested-${session}`;
  return NAME_RE.test(name) ? name : NAME_RE.test(session) ? session : 'suggested';
}

/** A least-privilege policy for what the audit lines show the session used. */
export function suggestPolicy(lines: readonly AuditLine[], opts: SuggestOptions): Suggestion {
  const name = opts.name ?? defaultName(opts.session);
  if (!NAME_RE.test(name)) {
    throw new SuggestError(`policy name ${JSON.stringify(name)} is not valid: use 1-64 letters, digits, ".", "_" and "-"`);
  }
  const learned = learnFromAudit(lines, { paths: opts.paths });
  const kept = opts.from ? keptSections(opts.from) : {};
  const data: Record<string, unknown> = {
    version: 1,
    name,
    mode: 'enforce',
    allow: learned.rules.map(ruleData),
    ...kept,
  };

  const doc = new Document(data);
  const when = (opts.now ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const header = [
    ` Learned by \`airlock policy suggest\` from session ${opts.session} on ${when}.`,
    ` ${learned.used} audit line${learned.used === 1 ? '' : 's'} used${learned.first ? ` (${learned.first} to ${learned.last})` : ''}: a rule per host with only the ports and methods the session used.`,
    opts.paths ? ' paths: the exact paths the session used (query strings are not matched).' : ' paths: left out (any path); `--paths` lists the exact paths used.',
  ];
  const skipped = Object.entries(learned.skipped);
  if (skipped.length > 0) header.push(` Not learned from (refused or not a policy matter): ${counts(learned.skipped)}.`);
  for (const note of learned.notes) header.push(` Note: ${note}.`);
  if (opts.from) header.push(` credentials:, limits: and container: are kept from ${opts.from.source}.`);
  if (learned.rules.length === 0) header.push(' Nothing was used: this policy denies every request.');
  header.push(' Review before use: hosts the session reached are allowed even if its policy would have denied them.');
  // One comment line per entry, whatever a file name contains.
  doc.commentBefore = header.map((l) => l.replace(/[\r\n]+/g, ' ')).join('\n');

  const allow = doc.get('allow', true) as YAMLSeq;
  allow.items.forEach((item, i) => {
    const rule = learned.rules[i]!;
    const map = item as YAMLMap;
    map.commentBefore = ruleComment(rule);
    for (const key of ['ports', 'methods']) {
      const seq = map.get(key, true);
      if (isSeq(seq)) seq.flow = true;
    }
    for (const path of [['mcp', 'tools'], ['git', 'fetch'], ['github', 'repos'], ['github', 'allow'], ['github', 'graphql', 'mutations']]) {
      const seq = map.getIn(path, true);
      if (isSeq(seq)) seq.flow = true;
    }
  });
  if (learned.rules.length === 0) allow.flow = true;

  const text = doc.toString({ lineWidth: 0, flowCollectionPadding: false });
  // The output is meant to be used as is; prove it is a valid policy before anyone does.
  const policy = parsePolicy(text, `suggested policy for ${opts.session}`);
  return { learned, data, text, policy };
}
