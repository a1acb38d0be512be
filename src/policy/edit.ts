// Approving a denied request: the narrowest allow rule that lets exactly that request through,
// and the policy file with that rule added, everything else in it kept byte for byte.
//
// The yaml Document API finds where the `allow:` list is and renders the new rule; the rule's
// text is then put in at the end of that list. (Document.toString() would re-space every inline
// comment and flow list of the file, so the operator's diff would not be the one change made.)
// The result is parsed again and must be the old policy plus that one rule, or nothing is written.
import { Document, isMap, isScalar, isSeq, parseDocument, type Pair, type YAMLMap } from 'yaml';
import { decide } from './decide.js';
import { isIpLiteral, matchHostPattern, normalizeHost } from './hosts.js';
import { parsePolicy } from './parse.js';
import type { AllowRule, CredentialSpec, Policy, RequestFacts } from './types.js';

/** A request to allow, as the inbox knows it. */
export interface RequestToAllow {
  readonly host: string;
  readonly port: number;
  readonly scheme: 'http' | 'https';
  /** null: only the host and port are known (a refused CONNECT). */
  readonly method: string | null;
  /** Path without the query; null when unknown. */
  readonly path: string | null;
}

/** An allow rule as written in the file. */
export interface RuleText {
  readonly host: string;
  readonly ports?: readonly number[];
  readonly methods?: readonly string[];
  readonly paths?: readonly string[];
}

export interface RuleEdit {
  readonly rule: RuleText;
  /** The policy file's new text. */
  readonly text: string;
  /** The policy parsed from it. */
  readonly policy: Policy;
  /** What the rule lets through beyond the request itself, in words; empty when nothing. */
  readonly notes: readonly string[];
  /** Credentials whose bound hosts the rule opens, each with the hosts it matches. */
  readonly credentialReach: readonly { readonly name: string; readonly hosts: readonly string[] }[];
}

export class RuleEditError extends Error {}

const DEFAULT_PORTS = [80, 443];

/** The narrowest rule the policy syntax can write that allows `request`. */
export function narrowestRule(request: RequestToAllow): { rule: RuleText; notes: string[] } {
  const host = normalizeHost(request.host);
  if (!host) throw new RuleEditError(`${JSON.stringify(request.host)} is not a host name a rule can name`);
  const notes: string[] = [];
  const rule: { host: string; ports?: number[]; methods?: string[]; paths?: string[] } = { host };
  if (!DEFAULT_PORTS.includes(request.port)) rule.ports = [request.port];
  if (request.method === null || request.path === null) {
    notes.push(`only ${host}:${request.port} is known of the refused request (a CONNECT is refused before its method and path are seen), so the rule allows any method and path there`);
    return { rule, notes };
  }
  rule.methods = [request.method];
  // A path glob has no escape for "*" ("?" cannot occur: the query is cut off): "?" matches one
  // character, the nearest the syntax comes to a literal "*".
  const path = request.path.replace(/\*/g, '?');
  if (path !== request.path) notes.push(`"*" in the path is written as "?" (any one character): path globs have no literal "*"`);
  rule.paths = [path];
  if (DEFAULT_PORTS.includes(request.port)) notes.push(`rules allow ports 80 and 443 unless they say otherwise`);
  return { rule, notes };
}

/** The facts decide() sees for `request`, to check an edit lets it through. */
function factsOf(request: RequestToAllow, host: string): RequestFacts {
  if (request.method === null || request.path === null) return { phase: 'connect', scheme: 'https', host, port: request.port };
  return { phase: 'request', scheme: request.scheme, host, port: request.port, method: request.method, path: request.path, rawPath: request.path };
}

/**
 * Adds the narrowest rule for `request` at the end of `allow:` in the policy file `text`. Throws
 * RuleEditError when the request is allowed already, or when no rule could let it through (an
 * ambiguous path spelling, say).
 */
export function allowRequest(text: string, source: string, request: RequestToAllow): RuleEdit {
  const before = parsePolicy(text, source);
  const { rule, notes } = narrowestRule(request);
  if (decide(before, factsOf(request, rule.host)).action === 'allow') {
    throw new RuleEditError(`${describe(request)} is already allowed by ${source} (version ${before.digest})`);
  }
  const edited = insertRule(text, rule);
  const policy = parsePolicy(edited, source);
  requireOneMoreRule(before, policy, rule);
  const decision = decide(policy, factsOf(request, rule.host));
  if (decision.action !== 'allow') {
    throw new RuleEditError(`no rule can allow ${describe(request)}: ${decision.message}`);
  }
  return { rule, text: edited, policy, notes, credentialReach: credentialReach(before.credentials, rule.host) };
}

function describe(request: RequestToAllow): string {
  const target = `${request.host}:${request.port}`;
  return request.method === null ? target : `${request.method} ${target}${request.path ?? ''}`;
}

/** Credentials bound to a host pattern that `host` (the new rule's) matches. */
export function credentialReach(credentials: readonly CredentialSpec[], host: string): { name: string; hosts: string[] }[] {
  const reach: { name: string; hosts: string[] }[] = [];
  for (const c of credentials) {
    const hosts = c.hosts.filter((pattern) => matchHostPattern(pattern, host));
    if (hosts.length > 0) reach.push({ name: c.name, hosts });
  }
  return reach;
}

/** The rule as a YAML map, its lists in flow style ([GET]), as policy files write them. */
function ruleNode(doc: Document, rule: RuleText, flow: boolean): YAMLMap {
  const map = doc.createNode({ ...rule }) as YAMLMap;
  map.flow = flow;
  for (const pair of map.items as Pair[]) {
    if (isSeq(pair.value)) pair.value.flow = true;
    // IPv6 literals and anything else YAML could read otherwise are quoted by the renderer.
    if (isScalar(pair.value) && pair.key !== null && isScalar(pair.key) && pair.key.value === 'host' && isIpLiteral(rule.host)) pair.value.type = 'QUOTE_DOUBLE';
  }
  return map;
}

function render(rule: RuleText, flow: boolean): string {
  const doc = new Document();
  doc.contents = ruleNode(doc, rule, flow);
  return doc.toString({ flowCollectionPadding: false, lineWidth: 0 }).replace(/\n$/, '');
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

function insertRule(text: string, rule: RuleText): string {
  const doc = parseDocument(text);
  if (!isMap(doc.contents)) throw new RuleEditError('the policy file does not hold a map of settings');
  const pair = (doc.contents.items as Pair[]).find((p) => isScalar(p.key) && p.key.value === 'allow');
  const value = pair?.value;
  if (!pair || !isScalar(pair.key) || !pair.key.range) {
    // No allow: at all: a new list at the end of the file.
    const body = render(rule, false).split('\n').map((line, i) => (i === 0 ? `  - ${line}` : `    ${line}`));
    return `${text}${text.endsWith('\n') || text === '' ? '' : '\n'}allow:\n${body.join('\n')}\n`;
  }
  if (isSeq(value) && value.flow && value.range) {
    // allow: [ ... ]: one more entry before the closing bracket.
    const close = text.lastIndexOf(']', value.range[1]);
    const entry = render(rule, true);
    const inner = text.slice(value.range[0] + 1, close);
    return `${text.slice(0, close)}${inner.trim() === '' ? entry : `, ${entry}`}${text.slice(close)}`;
  }
  if (isSeq(value) && value.items.length > 0) {
    const first = value.items[0] as { range?: [number, number, number] };
    const last = value.items[value.items.length - 1] as { range?: [number, number, number] };
    if (!first.range || !last.range) throw new RuleEditError('cannot find the allow: list in the file');
    const dash = text.lastIndexOf('-', first.range[0]);
    const dashColumn = dash - lineStart(text, dash);
    const itemColumn = first.range[0] - lineStart(text, first.range[0]);
    const pad = ' '.repeat(dashColumn);
    const gap = ' '.repeat(Math.max(1, itemColumn - dashColumn - 1));
    const lines = render(rule, false).split('\n').map((line, i) => (i === 0 ? `${pad}-${gap}${line}` : `${' '.repeat(itemColumn)}${line}`));
    let at = last.range[1];
    const prefix = text.slice(0, at);
    // The last item's range ends after its line break, unless it is the file's last line.
    const joint = prefix.endsWith('\n') ? '' : '\n';
    if (joint === '' && at === text.length) at = text.length;
    return `${prefix}${joint}${lines.join('\n')}\n${text.slice(at)}`;
  }
  if (value === null || value === undefined || (isScalar(value) && value.value === null) || (isSeq(value) && value.items.length === 0 && !value.flow)) {
    // `allow:` with nothing (or only comments) under it: the list starts right after the key.
    const colon = text.indexOf(':', pair.key.range[1]);
    const keyColumn = pair.key.range[0] - lineStart(text, pair.key.range[0]);
    const pad = ' '.repeat(keyColumn + 2);
    const lines = render(rule, false).split('\n').map((line, i) => (i === 0 ? `${pad}- ${line}` : `${pad}  ${line}`));
    const lineEnd = text.indexOf('\n', colon);
    const at = lineEnd === -1 ? text.length : lineEnd;
    return `${text.slice(0, at)}\n${lines.join('\n')}${text.slice(at)}`;
  }
  throw new RuleEditError('allow: in the policy file is not a list');
}

/** Everything but line numbers, for comparing two versions of one rule or section. */
function meaning(value: unknown): string {
  return JSON.stringify(value, (key, v: unknown) => (key === 'line' ? undefined : v));
}

function requireOneMoreRule(before: Policy, after: Policy, rule: RuleText): void {
  const added: AllowRule | undefined = after.allow[before.allow.length];
  const same =
    after.allow.length === before.allow.length + 1 &&
    meaning(after.allow.slice(0, -1)) === meaning(before.allow) &&
    added !== undefined &&
    added.host === rule.host &&
    meaning(added.methods) === meaning(rule.methods ?? null) &&
    meaning(added.paths) === meaning(rule.paths ?? null) &&
    meaning(added.ports) === meaning(rule.ports ?? DEFAULT_PORTS) &&
    added.inspect &&
    meaning({ ...before, allow: [], digest: '' }) === meaning({ ...after, allow: [], digest: '' });
  if (!same) throw new RuleEditError('adding the rule would change more of the policy than that rule (an unusual layout of allow:); add it by hand');
}
