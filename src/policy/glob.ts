// Path globs for allow rules: `*` matches any run of characters (including "/"), `?` matches
// exactly one character, everything else is literal.
//
// Matching is done with the classic two-pointer wildcard algorithm instead of a RegExp: it has
// no special characters to escape and is O(path * glob) in the worst case, whereas a regex like
// /^.*a.*a.*a.*b$/ backtracks polynomially on hostile paths. This runs on every request.

export type PathMatcher = (path: string) => boolean;

export function compilePathGlob(glob: string): PathMatcher {
  if (typeof glob !== 'string' || !glob.startsWith('/')) {
    throw new Error(`path glob must start with "/": ${JSON.stringify(glob)}`);
  }
  return compileGlob(glob);
}

/** The same globs for names that are not paths (git repositories, branches, tags). */
export function compileGlob(glob: string): PathMatcher {
  // "**" means the same as "*"; collapsing keeps the matcher's backtracking minimal.
  const pattern = glob.replace(/\*{2,}/g, '*');
  if (!pattern.includes('*') && !pattern.includes('?')) {
    return (path) => path === pattern;
  }
  return (path) => wildcardMatch(pattern, path);
}

// Globs compiled once per (frozen) list.
const matchers = new WeakMap<readonly string[], readonly PathMatcher[]>();

/** Whether any of the name globs (compileGlob) matches `name`. */
export function matchesAnyGlob(globs: readonly string[], name: string): boolean {
  let compiled = matchers.get(globs);
  if (!compiled) {
    compiled = globs.map(compileGlob);
    matchers.set(globs, compiled);
  }
  return compiled.some((matches) => matches(name));
}

function wildcardMatch(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  // Position of the last "*" seen in the pattern, and the text position it was tried at.
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    const pc = pattern[p];
    if (pc === '*') {
      starP = p++;
      starT = t;
    } else if (pc !== undefined && (pc === '?' || pc === text[t])) {
      p++;
      t++;
    } else if (starP !== -1) {
      // Mismatch: let the last "*" swallow one more character and retry from there.
      p = starP + 1;
      t = ++starT;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}
