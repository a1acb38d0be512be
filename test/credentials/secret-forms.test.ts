// The scrubber against every form the proxy writes a secret in, without sockets: base64 inside
// longer runs at each alignment (edges included), percent and JSON forms, any chunking.
import { describe, expect, it } from 'vitest';
import { secretForms } from '../../src/credentials/secret-forms.js';
import { Replacer } from '../../src/credentials/replace-stream.js';
import { secretLeaks } from '../helpers/secret-leaks.js';

const SECRET = 'ghs_Re4l/Secret+Value=0123456789abcdefXYZ';
const PLACEHOLDER = 'ghp_airlockFormsPlaceholder000000000000';

function seeded(seed: number) {
  return (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
}

function streamed(text: Buffer, cuts: number[]): Buffer {
  const r = new Replacer(secretForms(SECRET, PLACEHOLDER, 'github'));
  const out: Buffer[] = [];
  let at = 0;
  for (const cut of [...cuts, text.length]) {
    out.push(...r.push(text.subarray(at, cut)));
    at = cut;
  }
  out.push(r.flush());
  return Buffer.concat(out);
}

describe('secret forms', () => {
  it('base64 of "user:secret" at every alignment decodes to the same bytes with the secret masked', () => {
    for (const prefix of ['', 'a', 'ab', 'x-access-token:', 'x-access-token:y', 'user:']) {
      for (const suffix of ['', '!', '!?', '@host/path']) {
        const encoded = Buffer.from(prefix + SECRET + suffix).toString('base64');
        const out = new Replacer(secretForms(SECRET, PLACEHOLDER, 'github')).replaceWhole(Buffer.from(`Basic ${encoded}\n`)).toString();
        expect(out.length).toBe(`Basic ${encoded}\n`.length);
        const decoded = Buffer.from(out.slice(6).trim(), 'base64').toString('latin1');
        // Nothing around the secret changed; the secret's bytes became the mask, edge bits too.
        expect(decoded.slice(0, prefix.length)).toBe(prefix);
        expect(decoded.slice(prefix.length + SECRET.length)).toBe(suffix);
        expect(decoded.slice(prefix.length, prefix.length + SECRET.length)).toMatch(/^(airlock-redacted-github-)+/);
        expect(secretLeaks(out, SECRET)).toEqual([]);
      }
    }
  });

  it('base64 forms only for credentials the proxy may write into Basic credentials', () => {
    const token = 'sk-PlainToken0123456789abcdefghij';
    expect(secretForms(token, PLACEHOLDER, 'api', false).map((f) => f.find.toString())).toEqual([token]);
    expect(secretForms(token, PLACEHOLDER, 'api', true)).toHaveLength(4);
  });

  it('percent-encoded (either case) and JSON-escaped forms become the placeholder', () => {
    const pct = encodeURIComponent(SECRET);
    const lowerHex = pct.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase());
    const text = `q=${pct}&l=${lowerHex}&j="${SECRET.replace(/\//g, '\\/')}"&raw=${SECRET}\n`;
    const out = new Replacer(secretForms(SECRET, PLACEHOLDER, 'github')).replaceWhole(Buffer.from(text)).toString();
    expect(out).toBe(`q=${PLACEHOLDER}&l=${PLACEHOLDER}&j="${PLACEHOLDER}"&raw=${PLACEHOLDER}\n`);
  });

  it('seeded bodies with the secret in random forms, cut anywhere: nothing recoverable, same as whole', () => {
    const rand = seeded(1234);
    const forms = [
      () => SECRET,
      () => encodeURIComponent(SECRET),
      () => encodeURIComponent(SECRET).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
      () => JSON.stringify(SECRET).slice(1, -1).replace(/\//g, '\\/'),
      () => Buffer.from('ab'.slice(0, rand(3)) + SECRET + 'xyz'.slice(0, rand(4))).toString('base64'),
      () => `Basic ${Buffer.from(`x-access-token:${SECRET}`).toString('base64')}`,
    ];
    const filler = 'lorem ipsum {"a":1}\n data: x\n\n AAAA/+== ';
    for (let round = 0; round < 400; round++) {
      let text = '';
      while (text.length < 400) text += rand(3) === 0 ? forms[rand(forms.length)]!() : filler.slice(rand(filler.length));
      const body = Buffer.from(text);
      const cuts: number[] = [];
      for (let at = 1 + rand(20); at < body.length; at += 1 + rand(40)) cuts.push(at);
      const out = streamed(body, cuts);
      expect(secretLeaks(out, SECRET, 12), `round ${round}`).toEqual([]);
      expect(out.equals(new Replacer(secretForms(SECRET, PLACEHOLDER, 'github')).replaceWhole(body))).toBe(true);
    }
  });

  it('three messages with the secret spread over all of them, and an empty one between', () => {
    const text = Buffer.from(`token ${SECRET} end`);
    const replacer = new Replacer(secretForms(SECRET, PLACEHOLDER, 'github'));
    for (let a = 0; a <= text.length; a += 3) {
      for (let b = a; b <= text.length; b += 5) {
        const parts = replacer.replaceAcross([text.subarray(0, a), Buffer.alloc(0), text.subarray(a, b), text.subarray(b)]);
        expect(parts).toHaveLength(4);
        for (const part of parts) expect(secretLeaks(part, SECRET, 8), `${a}/${b}`).toEqual([]);
        expect(Buffer.concat(parts).toString()).toBe(`token ${PLACEHOLDER} end`);
      }
    }
  });

  it('two messages scrubbed across their boundary: split anywhere, nothing recoverable, same as whole', () => {
    const text = Buffer.from(`a ${SECRET} b ${Buffer.from(`x-access-token:${SECRET}`).toString('base64')} c ${encodeURIComponent(SECRET)} d`);
    const replacer = new Replacer(secretForms(SECRET, PLACEHOLDER, 'github'));
    for (let cut = 0; cut <= text.length; cut++) {
      const [a, b] = replacer.replaceAcross([text.subarray(0, cut), text.subarray(cut)]) as [Buffer, Buffer];
      expect(secretLeaks(a, SECRET, 8), `cut ${cut}`).toEqual([]);
      expect(secretLeaks(b, SECRET, 8), `cut ${cut}`).toEqual([]);
      expect(Buffer.concat([a, b]).equals(replacer.replaceWhole(text)), `cut ${cut}`).toBe(true);
    }
  });
});
