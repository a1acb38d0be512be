// Every form in which the proxy itself writes a secret on the way out, so an upstream that echoes
// the request back cannot return the secret in one of them: raw (headers), percent-encoded
// (query and form bodies), JSON-escaped (JSON bodies) and base64 at each of the three alignments
// it can take inside a longer base64 run (Basic credentials, "user:secret").
import type { Replacement } from './replace-stream.js';

/**
 * Bytes of the same length as the secret, for base64 forms: a replacement of another length would
 * shift every base64 character after it and garble the rest of the run.
 */
function mask(name: string, length: number): Buffer {
  const fill = `airlock-redacted-${name}-`;
  return Buffer.from(fill.repeat(Math.ceil(length / fill.length)).slice(0, length));
}

/**
 * The base64 characters that depend on `bytes` alone when they start `align` bytes into a 3-byte
 * group, and how many secret bits spill into the characters on either side.
 */
function base64Core(bytes: Buffer, align: number): { core: string; leadIndex: number; trailIndex: number; leadBits: number; trailBits: number; text: string } {
  const text = Buffer.concat([Buffer.alloc(align), bytes, Buffer.alloc(2)]).toString('base64');
  const startBit = 8 * align;
  const endBit = 8 * (align + bytes.length);
  const first = Math.ceil(startBit / 6);
  const end = Math.floor(endBit / 6);
  return {
    text,
    core: text.slice(first, end),
    leadIndex: first - 1,
    trailIndex: end,
    leadBits: 6 * first - startBit,
    trailBits: endBit - 6 * end,
  };
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** A string as it stands inside JSON quotes. */
export function jsonEscaped(value: string): string {
  return JSON.stringify(value).slice(1, -1);
}

/**
 * Needles for one secret value, each replaced by the same form of the placeholder (or a mask).
 * Base64 forms only with `base64` (the credential may be swapped into Basic credentials): each
 * costs a pass over every scrubbed body, and the proxy writes no base64 otherwise.
 */
export function secretForms(secret: string, placeholder: string, name: string, base64 = true): Replacement[] {
  const forms = new Map<string, Replacement>();
  const add = (find: string, replace: string) => {
    if (find.length > 0 && !forms.has(find)) forms.set(find, { find: Buffer.from(find, 'latin1'), replace: Buffer.from(replace, 'latin1') });
  };
  const raw = Buffer.from(secret, 'utf8');
  add(raw.toString('latin1'), placeholder);
  // Header values go out as Latin-1: "ö" is one byte there, two in UTF-8.
  if (/^[\x00-\xff]*$/.test(secret)) add(secret, placeholder);
  const pct = encodeURIComponent(secret);
  add(pct, encodeURIComponent(placeholder));
  add(pct.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()), encodeURIComponent(placeholder));
  // JSON escapes non-ASCII as UTF-8 bytes already handled by `raw`; "/" may be escaped or not.
  add(Buffer.from(jsonEscaped(secret), 'utf8').toString('latin1'), jsonEscaped(placeholder));
  add(Buffer.from(jsonEscaped(secret).replace(/\//g, '\\/'), 'utf8').toString('latin1'), jsonEscaped(placeholder));
  const masked = mask(name, raw.length);
  for (const align of base64 ? [0, 1, 2] : []) {
    const s = base64Core(raw, align);
    const m = base64Core(masked, align);
    if (s.core.length === 0 || forms.has(s.core)) continue;
    forms.set(s.core, {
      find: Buffer.from(s.core),
      replace: Buffer.from(m.core),
      edges: s.leadBits + s.trailBits === 0 ? undefined : {
        leadBits: s.leadBits,
        leadValue: s.leadBits > 0 ? B64.indexOf(m.text[m.leadIndex]!) : 0,
        trailBits: s.trailBits,
        trailValue: s.trailBits > 0 ? B64.indexOf(m.text[m.trailIndex]!) : 0,
      },
    });
  }
  return [...forms.values()];
}

/**
 * Why a secret value cannot be used, or null. A line end or other control character would let
 * the scrubber (which holds back unfinished lines) pass on part of the secret, and cannot go in a
 * header anyway.
 */
export function secretValueProblem(value: string): string | null {
  if (value === '') return 'is empty';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) return 'contains a line end or another control character';
  return null;
}

/** The value the proxy uses: blanks around it dropped, as HTTP drops them around a header value. */
export function usableSecret(credential: string, value: string): string {
  const trimmed = value.trim();
  const problem = secretValueProblem(trimmed);
  if (problem) throw new Error(`credential "${credential}": its secret ${problem}; fix the secret source`);
  return trimmed;
}
