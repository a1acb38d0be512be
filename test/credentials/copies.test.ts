import { describe, expect, it } from 'vitest';
import { holdsSecret, variablesHolding } from '../../src/credentials/copies.js';

const SECRET = 'ghp_Real+Token/With=Chars0123456789';
const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('holdsSecret', () => {
  it.each([
    ['the same value', SECRET],
    ['a URL with it as the password', `https://x-access-token:${SECRET}@github.com/o/r.git`],
    ['a header line', `Authorization: Bearer ${SECRET}`],
    ['percent-encoded (upper-case hex)', `https://api.example.com/?key=${encodeURIComponent(SECRET)}`],
    ['percent-encoded (lower-case hex)', encodeURIComponent(SECRET).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())],
    ['partly percent-encoded', SECRET.replace('/', '%2F')],
    ['in Basic credentials', `Basic ${b64(`x-access-token:${SECRET}`)}`],
    ["in npm's _auth", `//registry.npmjs.org/:_auth=${b64(`me:${SECRET}`)}`],
    ['base64 glued to other letters', `abc${b64(`user:${SECRET}`)}`],
    ['base64 at every alignment', `x${b64(`1${SECRET}`)}`],
    ['URL-safe base64', Buffer.from(`??${SECRET}>>`).toString('base64url')],
    ['in a Docker config', JSON.stringify({ auths: { 'ghcr.io': { auth: b64(`u:${SECRET}`) } } })],
  ])('finds it in %s', (_what, value) => {
    expect(holdsSecret(value, SECRET)).toBe(true);
  });

  it('finds a secret with JSON specials in its JSON-escaped form', () => {
    const secret = 'pa"ss\\word-0123456789';
    expect(holdsSecret(JSON.stringify({ password: secret }), secret)).toBe(true);
  });

  it.each([
    ['a prefix of it', SECRET.slice(0, -1)],
    ['another token', 'ghp_Other+Token/With=Chars0123456789'],
    ['base64 of a prefix', b64(SECRET.slice(0, -1))],
    ['an ordinary PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    ['nothing', ''],
  ])('does not find it in %s', (_what, value) => {
    expect(holdsSecret(value, SECRET)).toBe(false);
  });

  it('never matches an empty secret', () => {
    expect(holdsSecret('anything', '')).toBe(false);
  });
});

describe('variablesHolding', () => {
  it('names the variables holding any of the secrets, by value or by name', () => {
    const env = { A: SECRET, B: 'plain', C: `x ${SECRET} y`, D: undefined, E: 'other-secret-value', [`T_${'ghp_x1y2z3w4'}`]: '1' };
    expect(variablesHolding(env, [SECRET, 'other-secret-value', 'ghp_x1y2z3w4'])).toEqual(['A', 'C', 'E', 'T_ghp_x1y2z3w4']);
  });
});
