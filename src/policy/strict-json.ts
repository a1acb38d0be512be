// A strict JSON reader (RFC 8259) for bodies the proxy decides on and then forwards unchanged.
//
// JSON.parse keeps the last of two equal keys; other parsers keep the first, and some (Go's
// encoding/json) match keys without regard to case. A body with `"method"` twice, or `"method"`
// and `"METHOD"`, could be read one way here and another way by the server. So every object's
// keys must differ once case-folded (foldKey). The grammar itself is JSON.parse's, which is
// RFC 8259's (no byte-order mark, comments, trailing commas, NaN or unescaped controls); a
// second pass over the text finds each object's keys, skipping string values with indexOf, so a
// body of megabytes is read in milliseconds, not seconds: this runs before anything is sent.
// Then every conforming reader sees the same value the proxy decided on. Depth is bounded.

export class StrictJsonError extends Error {
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(`${message} at offset ${at}`);
  }
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

const MAX_DEPTH = 64;
/** Object keys in one text at most: each is checked, and real MCP messages hold far fewer. */
export const MAX_KEYS = 50_000;

/** How a key compares to another for the duplicate check. */
export function foldKey(key: string): string {
  // Go's encoding/json matches a key to a field by upper(lower(rune)) rune by rune, which also
  // takes "ſ" (long s) for "s" and "K" (Kelvin) for "k"; this is that fold, native and cheap.
  return key.toLowerCase().toUpperCase();
}

export function parseStrictJson(text: string): JsonValue {
  // Keys first: a text with too many keys is refused before JSON.parse spends time on it.
  checkKeys(text);
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new StrictJsonError(`not JSON (${(err as Error).message.slice(0, 120)})`, 0);
  }
}

/** The end of the string that starts with the quote at `open`: the index of its closing quote. */
function stringEnd(text: string, open: number): number {
  let end = text.indexOf('"', open + 1);
  for (;;) {
    if (end === -1) throw new StrictJsonError('unterminated string', open);
    let slashes = 0;
    for (let k = end - 1; text.charCodeAt(k) === 0x5c; k--) slashes++;
    if (slashes % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
}

/**
 * Refuses repeated keys (folded), nesting past MAX_DEPTH and more than MAX_KEYS keys. On text
 * that is not JSON it may pass or refuse; JSON.parse then has the last word.
 */
function checkKeys(text: string): void {
  // One entry per open object (its folded keys) or array (null).
  const stack: (Set<string> | null)[] = [];
  const n = text.length;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const end = stringEnd(text, i);
      const keys = stack[stack.length - 1];
      if (keys) {
        // In an object a string is a key when a colon follows it, else a value.
        let j = end + 1;
        for (let w = text.charCodeAt(j); w === 0x20 || w === 0x0a || w === 0x0d || w === 0x09; w = text.charCodeAt(++j));
        if (text.charCodeAt(j) === 0x3a) {
          const raw = text.slice(i + 1, end);
          const key = raw.includes('\\') ? (JSON.parse(text.slice(i, end + 1)) as string) : raw;
          if (++count > MAX_KEYS) throw new StrictJsonError(`more than ${MAX_KEYS} object keys`, i);
          const folded = foldKey(key);
          if (keys.has(folded)) throw new StrictJsonError(`key ${JSON.stringify(key.slice(0, 40))} appears twice (or twice but for case)`, i);
          keys.add(folded);
        }
      }
      i = end;
    } else if (c === 0x7b || c === 0x5b) {
      if (stack.length >= MAX_DEPTH) throw new StrictJsonError(`nesting deeper than ${MAX_DEPTH}`, i);
      stack.push(c === 0x7b ? new Set() : null);
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
    }
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes as UTF-8 text, or null when they are not valid UTF-8. A BOM is kept (and then refused). */
export function utf8Text(bytes: Uint8Array): string | null {
  try {
    return UTF8.decode(bytes);
  } catch {
    return null;
  }
}
