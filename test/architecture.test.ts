// The import rules of src/ (see ARCHITECTURE.md): no file-level import cycle anywhere, and each
// folder imports only the folders below it:
//
//   cli → launcher → sessions → proxy → { credentials, audit } → policy;  ca imports nothing of ours;
//   proxy → proxy/http1, which imports nothing of ours outside itself;
//   cli → view → sessions (the live view sits beside launcher).
//
// Every relative import counts: `import`, `import type`, `export … from`, `import('…')` calls and
// `import('…')` types. Imports of packages and node: builtins are not ours and are ignored.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/**
 * The folders each src/ folder may import (besides itself). A folder missing here fails the
 * test: a new part of the code gets a place in the layering before it gets code.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  policy: [],
  ca: [],
  credentials: ['policy'],
  audit: ['policy'],
  proxy: ['proxy/http1', 'policy', 'ca', 'credentials', 'audit'],
  // HTTP/1 on the wire (heads, framing, the upstream client, the tunnel's server side): used by
  // the proxy, and knows nothing of it, of sessions or of policies.
  'proxy/http1': [],
  sessions: ['proxy', 'policy', 'ca', 'credentials', 'audit'],
  launcher: ['sessions', 'proxy', 'policy', 'ca', 'credentials', 'audit'],
  view: ['sessions', 'proxy', 'policy', 'ca', 'credentials', 'audit'],
  cli: ['launcher', 'view', 'sessions', 'proxy', 'policy', 'ca', 'credentials', 'audit'],
};

/**
 * Single file-to-file imports allowed although their folders may not import each other, each
 * with the reason. Keep this empty; an entry is a debt, not a rule.
 */
const ALLOWED_EXCEPTIONS: ReadonlyArray<{ from: string; to: string; why: string }> = [];

/** Module specifiers a source file imports, in every form that creates a dependency. */
function moduleSpecifiers(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push(node.moduleReference.expression.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg && ts.isStringLiteralLike(arg)) found.push(arg.text);
      else found.push('<non-literal dynamic import>');
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** The src/ file a relative specifier names ('./x.js' is ./x.ts under NodeNext), or null. */
function resolveRelative(from: string, specifier: string): string | null {
  const base = resolve(dirname(from), specifier);
  const candidates = [base.replace(/\.js$/, '.ts'), base.replace(/\.js$/, '.d.ts'), `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((c) => c.endsWith('.ts') && existsSync(c)) ?? null;
}

const rel = (file: string) => relative(SRC, file).split(sep).join('/');
/** Folders below a top-level folder that are units of their own in MAY_IMPORT. */
const SUB_UNITS = ['proxy/http1'];
const folderOf = (relPath: string) =>
  SUB_UNITS.find((unit) => relPath.startsWith(`${unit}/`)) ?? (relPath.includes('/') ? relPath.slice(0, relPath.indexOf('/')) : '(src root)');

interface Graph {
  /** File (relative to src/) → files it imports. */
  readonly files: Map<string, Set<string>>;
  /** Relative specifiers that name no file under src/. */
  readonly unresolved: string[];
}

function buildGraph(): Graph {
  const files = new Map<string, Set<string>>();
  const unresolved: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const edges = new Set<string>();
    for (const specifier of moduleSpecifiers(file, readFileSync(file, 'utf8'))) {
      if (specifier.startsWith('<')) {
        unresolved.push(`${rel(file)}: ${specifier}`);
        continue;
      }
      if (!specifier.startsWith('.')) continue; // a package or a node: builtin
      const target = resolveRelative(file, specifier);
      if (!target || relative(SRC, target).startsWith('..')) unresolved.push(`${rel(file)}: '${specifier}'`);
      else if (target !== file) edges.add(rel(target));
    }
    files.set(rel(file), edges);
  }
  return { files, unresolved };
}

/**
 * The cycle closed by each back edge of a depth-first search, as paths a → … → a: not every
 * cycle of a tangle, but at least one whenever there is one (fix it and run again).
 */
function findCycles(graph: Map<string, Set<string>>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      const s = state.get(next);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

function folderGraph(files: Map<string, Set<string>>): Map<string, Set<string>> {
  const folders = new Map<string, Set<string>>();
  for (const [from, targets] of files) {
    const edges = folders.get(folderOf(from)) ?? new Set<string>();
    folders.set(folderOf(from), edges);
    for (const to of targets) if (folderOf(to) !== folderOf(from)) edges.add(folderOf(to));
  }
  return folders;
}

function ruleViolations(files: Map<string, Set<string>>): string[] {
  const problems: string[] = [];
  for (const [from, targets] of files) {
    const folder = folderOf(from);
    const allowed = MAY_IMPORT[folder];
    if (!allowed) {
      problems.push(`${from}: folder "${folder}" has no import rule (add it to MAY_IMPORT in test/architecture.test.ts and to ARCHITECTURE.md)`);
      continue;
    }
    for (const to of targets) {
      const target = folderOf(to);
      if (target === folder || allowed.includes(target)) continue;
      if (ALLOWED_EXCEPTIONS.some((e) => e.from === from && e.to === to)) continue;
      problems.push(`${from} imports ${to}: ${folder} may import only ${allowed.length ? allowed.join(', ') : 'nothing of ours'}`);
    }
  }
  return problems.sort();
}

describe('import rules of src/', () => {
  const graph = buildGraph();

  it('finds the source files and their imports', () => {
    expect(graph.files.size).toBeGreaterThan(50);
    expect(graph.files.get('proxy/server.ts')).toContain('proxy/forward.ts');
    expect(graph.unresolved).toEqual([]);
  });

  it('has no import cycle between files', () => {
    const cycles = findCycles(graph.files).map((c) => c.join(' → '));
    expect(cycles, `import cycles in src/:\n  ${cycles.join('\n  ')}`).toEqual([]);
  });

  it('has no import cycle between folders', () => {
    const cycles = findCycles(folderGraph(graph.files)).map((c) => c.join(' → '));
    expect(cycles, `folder import cycles in src/:\n  ${cycles.join('\n  ')}`).toEqual([]);
  });

  it('imports only downwards: cli → launcher → sessions → proxy → credentials, audit → policy; ca alone', () => {
    const problems = ruleViolations(graph.files);
    expect(problems, `forbidden imports:\n  ${problems.join('\n  ')}`).toEqual([]);
  });

  it('lists only exceptions that are still needed', () => {
    const stale = ALLOWED_EXCEPTIONS.filter((e) => !graph.files.get(e.from)?.has(e.to));
    expect(stale).toEqual([]);
  });
});

describe('moduleSpecifiers', () => {
  it('sees every form of import', () => {
    const text = [
      `import a from './a.js';`,
      `import type { B } from './b.js';`,
      `import { type C, d } from\n  '../c.js';`,
      `import './side-effect.js';`,
      `export { e } from './e.js';`,
      `export * from './f.js';`,
      `export type { G } from './g.js';`,
      `const h = await import('./h.js');`,
      `let i: import('./i.js').I;`,
      `import node from 'node:fs';`,
      `// import nope from './comment.js';`,
      `const s = "import x from './string.js'";`,
    ].join('\n');
    expect(moduleSpecifiers('x.ts', text)).toEqual(['./a.js', './b.js', '../c.js', './side-effect.js', './e.js', './f.js', './g.js', './h.js', './i.js', 'node:fs']);
  });
});
