// Copies of a secret outside the proxy: whether a string (a host environment variable, a value
// meant for a session) carries a real secret, as is or in an encoding the proxy itself produces
// when it swaps one in. Not a general leak detector: a value built to hide a secret (reversed, hex,
// compressed) gets through. It does not need to catch those: the values checked are the user's
// (the host environment, -e flags), never the session's, so what turns up is honest copies: the
// same token under another name, a URL or header line with it inside, Basic credentials, npm's
// _auth.

import { jsonEscaped } from './secret-forms.js';

/** Runs of the base64 alphabets (standard and URL-safe), where an encoded secret would sit. */
const BASE64_RUN = /[A-Za-z0-9+/_-]+/g;
const PERCENT_ESCAPE = /%([0-9A-Fa-f]{2})/g;

/** `value` with every %XX escape decoded, as bytes (the escapes need not form valid UTF-8). */
function percentDecoded(value: string): Buffer {
  const parts: Buffer[] = [];
  let last = 0;
  for (const m of value.matchAll(PERCENT_ESCAPE)) {
    parts.push(Buffer.from(value.slice(last, m.index), 'utf8'), Buffer.from([parseInt(m[1]!, 16)]));
    last = m.index + 3;
  }
  parts.push(Buffer.from(value.slice(last), 'utf8'));
  return Buffer.concat(parts);
}

/**
 * True when `value` holds `secret`: as is; JSON-escaped (the proxy's swap in JSON bodies);
 * percent-encoded in either hex case, wholly or in part (its swap in queries and forms, and
 * userinfo in URLs); or inside base64 (its swap inside Basic credentials, where the user name
 * before the secret is unknown, so runs are decoded rather than the secret encoded).
 */
export function holdsSecret(value: string, secret: string): boolean {
  if (secret === '') return false;
  if (value.includes(secret)) return true;
  const json = jsonEscaped(secret);
  if (json !== secret && value.includes(json)) return true;
  const bytes = Buffer.from(secret, 'utf8');
  if (value.includes('%') && percentDecoded(value).includes(bytes)) return true;
  // Fewer base64 characters than this cannot encode the secret's bytes.
  const shortest = Math.floor((bytes.length * 4) / 3);
  for (const [run] of value.matchAll(BASE64_RUN)) {
    if (run.length < shortest) continue;
    // The encoding may start anywhere in the run (glued to other letters): try all four alignments.
    for (let skip = 0; skip < 4; skip++) {
      if (Buffer.from(run.slice(skip), 'base64').includes(bytes)) return true;
    }
  }
  return false;
}

/** Names of the variables of `env` that hold one of `secrets` (the name counts too: the session sees it). */
export function variablesHolding(env: Readonly<Record<string, string | undefined>>, secrets: readonly string[]): string[] {
  return Object.keys(env).filter((name) => {
    const value = env[name];
    return value !== undefined && secrets.some((secret) => holdsSecret(`${name}=${value}`, secret));
  });
}
