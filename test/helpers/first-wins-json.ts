// A JSON reader that keeps the first of two equal keys, as some server parsers do (JSON.parse
// keeps the last): the MCP fuzz run's model of such a server.
import { StrictJsonError, type JsonValue } from '../../src/policy/strict-json.js';

const MAX_DEPTH = 64;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
/** A run of string characters that need no attention: no quote, backslash or control. */
const PLAIN_RUN = /[^"\\\x00-\x1f]*/y;
const foldKey = (key: string) => key.toLowerCase().toUpperCase();

/** Reads `text` as JSON, a repeated key read as parsers that keep the first one read it. */
export function parseFirstWins(text: string): JsonValue {
  const firstWins = true;
  let i = 0;
  const fail = (what: string): never => {
    throw new StrictJsonError(what, i);
  };
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else return;
    }
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    ws();
    const c = text[i];
    if (c === '{') return object(depth);
    if (c === '[') return array(depth);
    if (c === '"') return string();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number();
    return fail(c === undefined ? 'unexpected end' : `unexpected character ${JSON.stringify(c)}`);
  };
  const literal = <T extends JsonValue>(word: string, v: T): T => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return v;
    }
    return fail('invalid literal');
  };
  const number = (): number => {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    m.lastIndex = 0;
    const rest = text.slice(i, i + 400);
    const found = m.exec(rest);
    if (!found || found[0].length === 0) return fail('invalid number');
    if (found[0].length === rest.length && rest.length === 400) fail('number too long');
    i += found[0].length;
    return Number(found[0]);
  };
  const string = (): string => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      PLAIN_RUN.lastIndex = i;
      PLAIN_RUN.test(text);
      i = PLAIN_RUN.lastIndex;
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        i += 2;
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            const hex = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape');
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            i -= 2;
            fail('invalid escape');
        }
        start = i;
        continue;
      }
      i++;
    }
  };
  /** After a member: true for ",", false for the closing bracket. */
  const more = (close: ']' | '}'): boolean => {
    ws();
    if (text[i] !== ',' && text[i] !== close) fail(`expected "," or "${close}"`);
    return text[i++] === ',';
  };
  const array = (depth: number): JsonValue[] => {
    i++;
    const out: JsonValue[] = [];
    ws();
    if (text[i] === ']') {
      i++;
      return out;
    }
    do out.push(value(depth + 1));
    while (more(']'));
    return out;
  };
  const object = (depth: number): { [key: string]: JsonValue } => {
    i++;
    const out = Object.create(null) as { [key: string]: JsonValue };
    const seen = new Set<string>();
    ws();
    if (text[i] === '}') {
      i++;
      return out;
    }
    do {
      ws();
      if (text[i] !== '"') fail('expected a key');
      const at = i;
      const key = string();
      const folded = foldKey(key);
      const again = seen.has(folded);
      if (again && !firstWins) {
        i = at;
        fail(`key ${JSON.stringify(key.slice(0, 40))} appears twice (or twice but for case)`);
      }
      seen.add(folded);
      ws();
      if (text[i] !== ':') fail('expected ":"');
      i++;
      const member = value(depth + 1);
      // First wins: a repeated key (exactly, or but for case) keeps the value seen first.
      if (!again || !(key in out)) out[key] = member;
    } while (more('}'));
    return out;
  };
  const result = value(0);
  ws();
  if (i !== text.length) fail('text after the value');
  return result;
}

