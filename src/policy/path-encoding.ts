// Paths that servers read differently from the bytes a rule was matched against.
//
// A `paths:` rule is matched against the path as Airlock reads it. When the server behind it reads
// another path out of the same bytes, the match proves nothing: nginx decodes %2F before matching
// locations, Tomcat and Spring drop ";" parameters and so turn "..;" into "..", some servers
// decode twice, truncate at NUL, accept overlong UTF-8 or IIS's %u escapes, fold Unicode
// compatibility characters (NFKC) or strip trailing dots and spaces from segments. So where a rule
// has paths:, a path in any of these spellings is refused rather than guessed at; a rule without
// paths: forwards it as before. Plain "." and ".." segments are not ambiguous: the proxy resolves
// them before matching and forwards the resolved path. "//" is left alone too: collapsing it only
// drops empty segments, and clients produce it innocently (a base URL ending in "/" plus "/x").

// Anything that could need a closer look: percent-escapes, backslashes, ";" and runs of dots.
// Paths without any of these (nearly all) are answered by this one test.
const SUSPECT = /[%\\;]|\.\.\.|[^\x21-\x7e]/;
const HEX2 = /^[0-9A-Fa-f]{2}$/;
const ESCAPE = /%[0-9A-Fa-f]{2}/;
const ESCAPES = /%([0-9A-Fa-f]{2})/g;
// Bytes above 0x7f, escaped or not: overlong UTF-8, or characters NFKC folds into "." or "/".
const NON_ASCII = /%[89a-fA-F][0-9A-Fa-f]|[^\x00-\x7f]/;
// An ASCII segment that could decode to a dot segment: dots and escapes only, up to a ";" (or an
// encoded one) that starts parameters.
const DOTS_AND_ESCAPES = /^(?:\.|%[0-9A-Fa-f]{2})+(?:(?:;|%3[bB]).*)?$/;
// Dots, whitespace and control characters: a segment made only of these (with a dot among them)
// once decoded and cut at ";" is a dot segment to some server. One class, so no backtracking.
const DOTS_AND_BLANKS = /^[.\s\x00-\x1f\x7f]*$/;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/**
 * Why `path` (as the client sent it, query removed) would be read differently by common servers,
 * as a phrase for a deny message; null when its reading is unambiguous.
 */
export function ambiguousPathEncoding(path: string): string | null {
  if (!SUSPECT.test(path)) return null;
  if (path.includes('\\')) return 'a backslash, which many servers read as "/"';
  for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 1)) {
    const hex = path.slice(i + 1, i + 3);
    if (!HEX2.test(hex)) return 'a "%" not followed by two hex digits, such as IIS\'s %u002e for "."';
    const byte = parseInt(hex, 16);
    if (byte === 0x2f) return 'an encoded slash, %2F';
    if (byte === 0x5c) return 'an encoded backslash, %5C';
    if (byte < 0x20 || byte === 0x7f) return 'an encoded control character such as %00, where some servers cut the path';
  }
  // Decoded once, "%252e" and "%25%32%65" both leave "%2e": a server that decodes twice sees ".".
  if (/%25/i.test(path) && ESCAPE.test(decodeOnce(path))) return 'a double-encoded character such as %252e';
  for (const segment of path.split('/')) {
    if (segment === '.' || segment === '..') continue; // resolved before matching and forwarding
    if (NON_ASCII.test(segment)) {
      const bytes = decodeBytes(segment);
      if (overlong(bytes)) return 'an overlong UTF-8 sequence such as %c0%ae for "."';
      const text = fromUtf8.decode(Uint8Array.from(bytes)).normalize('NFKC');
      if (text.includes('/') || text.includes('\\')) return 'a character that NFKC normalisation turns into "/" or "\\"';
      if (isDotSegment(text)) return HIDDEN_DOTS;
    } else if (DOTS_AND_ESCAPES.test(segment) && isDotSegment(decodeOnce(segment))) {
      return HIDDEN_DOTS;
    }
  }
  return null;
}

const HIDDEN_DOTS = 'a dot segment hidden by encoding or ";" parameters, such as "..;" or "%2e%2e"';

/** A decoded segment that some server reads as "." or "..": dots (and blanks) up to any ";". */
function isDotSegment(text: string): boolean {
  const semicolon = text.indexOf(';');
  const bare = semicolon === -1 ? text : text.slice(0, semicolon);
  return bare.includes('.') && DOTS_AND_BLANKS.test(bare);
}

/** The path as servers that drop ";" parameters from every segment (Tomcat, Spring) read it. */
export function withoutPathParameters(path: string): string {
  return path
    .split('/')
    .map((segment) => {
      const semicolon = segment.indexOf(';');
      return semicolon === -1 ? segment : segment.slice(0, semicolon);
    })
    .join('/');
}

/** Percent-escapes decoded once, each to the character with that code (enough for ASCII checks). */
function decodeOnce(text: string): string {
  return text.replace(ESCAPES, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** A segment's bytes with its percent-escapes decoded once (ambiguousPathEncoding checked them). */
function decodeBytes(segment: string): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < segment.length; ) {
    const c = segment.charCodeAt(i);
    if (c === 0x25) {
      bytes.push(parseInt(segment.slice(i + 1, i + 3), 16));
      i += 3;
    } else if (c < 0x80) {
      bytes.push(c);
      i++;
    } else {
      const cp = segment.codePointAt(i)!;
      bytes.push(...utf8.encode(String.fromCodePoint(cp)));
      i += cp > 0xffff ? 2 : 1;
    }
  }
  return bytes;
}

/**
 * A lead byte followed by a continuation byte that spells a character longer than it needs to be
 * (%c0%ae is "."). Strict decoders refuse these; lenient ones (old IIS, some Java) decode them.
 */
function overlong(bytes: readonly number[]): boolean {
  for (let i = 0; i + 1 < bytes.length; i++) {
    const lead = bytes[i]!;
    const next = bytes[i + 1]!;
    if (next < 0x80 || next > 0xbf) continue;
    if (lead === 0xc0 || lead === 0xc1 || lead >= 0xf8) return true;
    if (lead === 0xe0 && next < 0xa0) return true;
    if (lead === 0xf0 && next < 0x90) return true;
  }
  return false;
}
