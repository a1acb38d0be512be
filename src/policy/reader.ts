// Typed access to a parsed YAML document that remembers where every value came from.
//
// The loader never converts the document to plain JS first: walking the node tree keeps each
// value's source range, so every validation error can point at the exact line and field.

import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import { PolicyError } from './errors.js';

/** A value at a field path. `node` is null when the key was given with nothing after it. */
export interface Value {
  readonly node: Node | null;
  /** Field path for messages, e.g. "allow[1].ports". */
  readonly path: string;
  readonly line: number | null;
}

export class Reader {
  constructor(
    readonly source: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  fail(at: { line: number | null }, path: string, problem: string, hint: string): never {
    throw new PolicyError(this.source, at.line, path || 'policy', problem, hint);
  }

  lineAt(offset: number): number {
    return this.lines.linePos(offset).line;
  }

  /** Wrap a node as a Value, resolving aliases; `fallbackLine` is used when the node has no range. */
  value(node: unknown, path: string, fallbackLine: number | null): Value {
    let n = isNodeLike(node) ? node : null;
    const line = n?.range ? this.lineAt(n.range[0]) : fallbackLine;
    if (n && isAlias(n)) {
      const target = n.resolve(this.doc);
      if (!target) {
        // The usual cause: an unquoted wildcard, which YAML reads as an alias ("*name").
        this.fail(
          { line },
          path,
          `*${n.source} is read by YAML as a reference to an anchor named "${n.source}"`,
          `Quote values that start with "*", e.g. host: "*${n.source}"`,
        );
      }
      n = target;
    }
    return { node: n, path, line };
  }

  isNull(v: Value): boolean {
    return v.node === null || (isScalar(v.node) && v.node.value === null);
  }

  /** One key of a map, without checking the others (used to read `version` before anything else). */
  lookup(v: Value, key: string): Value | undefined {
    if (!v.node || !isMap(v.node)) return undefined;
    for (const pair of v.node.items) {
      if (isScalar(pair.key) && pair.key.value === key) {
        const keyLine = pair.key.range ? this.lineAt(pair.key.range[0]) : v.line;
        return this.value(pair.value, joinPath(v.path, key), keyLine);
      }
    }
    return undefined;
  }

  /**
   * The keys of a map, refusing any key not in `allowed` (this is what catches typos such as
   * `method:` for `methods:`). Returns key -> Value.
   */
  entries(v: Value, allowed: readonly string[], hint: string): Map<string, Value> {
    if (!v.node || !isMap(v.node)) {
      this.fail(v, v.path, `must be a map, got ${describe(v.node)}`, hint);
    }
    const out = new Map<string, Value>();
    for (const pair of v.node.items) {
      const keyNode = pair.key as unknown;
      const keyLine = isNodeLike(keyNode) && keyNode.range ? this.lineAt(keyNode.range[0]) : v.line;
      const key = isNodeLike(keyNode) && isScalar(keyNode) ? String(keyNode.value) : null;
      const keyPath = key === null ? v.path : joinPath(v.path, key);
      if (key === null || !allowed.includes(key)) {
        const shown = key === null ? 'a non-text key' : `unknown key "${key}"`;
        const guess = key === null ? undefined : closest(key, allowed);
        this.fail(
          { line: keyLine },
          keyPath,
          guess ? `${shown} (did you mean "${guess}"?)` : shown,
          `Allowed keys${v.path ? ` in ${v.path}` : ''}: ${allowed.join(', ')}`,
        );
      }
      out.set(key, this.value(pair.value, keyPath, keyLine));
    }
    return out;
  }

  list(v: Value, hint: string): Value[] {
    if (!v.node || !isSeq(v.node)) {
      this.fail(v, v.path, `must be a list, got ${describe(v.node)}`, hint);
    }
    return v.node.items.map((item, i) => this.value(item, `${v.path}[${i}]`, v.line));
  }

  /** A scalar's JS value (string, number, boolean or null); collections are refused. */
  scalar(v: Value, hint: string): unknown {
    if (v.node === null) return null;
    if (!isScalar(v.node)) this.fail(v, v.path, `must be a single value, got ${describe(v.node)}`, hint);
    return v.node.value;
  }

  string(v: Value, hint: string): string {
    const s = this.scalar(v, hint);
    if (typeof s !== 'string') this.fail(v, v.path, `must be text, got ${describe(v.node)}`, hint);
    return s;
  }

  integer(v: Value, min: number, max: number, hint: string, path = v.path): number {
    const n = this.scalar(v, hint);
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) {
      this.fail(v, path, `${describe(v.node)} is not an integer from ${min} to ${max}`, hint);
    }
    return n;
  }

  boolean(v: Value, hint: string): boolean {
    const b = this.scalar(v, hint);
    if (typeof b !== 'boolean') this.fail(v, v.path, `${describe(v.node)} is not true or false`, hint);
    return b;
  }
}

export function joinPath(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

/** How a node looks in a message: `"http"`, `8443`, `a list`, `nothing`. */
export function describe(node: Node | null): string {
  if (node === null) return 'nothing';
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'nothing';
    if (typeof v === 'string') return JSON.stringify(v);
    return String(v);
  }
  return 'an alias';
}

function isNodeLike(x: unknown): x is Node {
  return isScalar(x) || isMap(x) || isSeq(x) || isAlias(x);
}

/** The allowed key nearest to a typo (edit distance <= 2, or a prefix), if any. */
export function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of allowed) {
    const d = candidate.startsWith(key) || key.startsWith(candidate) ? 1 : editDistance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}
