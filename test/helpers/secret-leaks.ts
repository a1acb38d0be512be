// What a hostile session would try on everything it received to get a secret back: every form
// the proxy itself writes (raw, percent-encoded, JSON-escaped, base64 at any alignment, lower-cased
// as header names are), and decoding what it saw (base64 runs, percent-escapes). Written apart
// from the proxy's own scrubber on purpose, so a mistake there cannot hide here.

const B64_RUN = /[A-Za-z0-9+/]{8,}={0,2}/g;
const B64URL_RUN = /[A-Za-z0-9_-]{8,}={0,2}/g;

/** The base64 characters that depend only on `secret` when it starts `align` bytes into a group. */
export function base64Cores(secret: string, url = false): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const cores: string[] = [];
  for (const align of [0, 1, 2]) {
    const text = Buffer.concat([Buffer.alloc(align), bytes]).toString(url ? 'base64url' : 'base64').replace(/=+$/, '');
    cores.push(text.slice(Math.ceil((8 * align) / 6), Math.floor((8 * (align + bytes.length)) / 6)));
  }
  return cores;
}

function percentDecode(text: string): string {
  return text.replace(/(%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return Buffer.from(run.replace(/%/g, ''), 'hex').toString('latin1');
    }
  });
}

function decodeRuns(text: string, run: RegExp, encoding: 'base64' | 'base64url'): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(run)) {
    const s = m[0].replace(/=+$/, '');
    // Every starting offset, so a run glued to other base64 characters is still decoded right.
    for (let off = 0; off < 4; off++) out.push(Buffer.from(s.slice(off), encoding).toString('latin1'));
  }
  return out;
}

/**
 * Ways `secret` can be read out of `output`; empty when none. `minFragment` also reports any run
 * of that many characters of the secret found raw (a slice the session could reassemble).
 */
export function secretLeaks(output: string | Buffer, secret: string, minFragment = 0): string[] {
  const text = typeof output === 'string' ? output : output.toString('latin1');
  const lower = text.toLowerCase();
  const found: string[] = [];
  const check = (what: string, hit: boolean) => hit && found.push(what);
  check('raw', text.includes(secret));
  check('lower-cased', lower.includes(secret.toLowerCase()));
  const pct = encodeURIComponent(secret);
  check('percent-encoded', text.includes(pct) || lower.includes(pct.toLowerCase()));
  check('JSON-escaped', text.includes(JSON.stringify(secret).slice(1, -1)) || text.includes(JSON.stringify(secret).slice(1, -1).replace(/\//g, '\\/')));
  base64Cores(secret).forEach((core, a) => check(`base64 (alignment ${a})`, text.includes(core)));
  base64Cores(secret, true).forEach((core, a) => check(`base64url (alignment ${a})`, text.includes(core)));
  const decoded = [percentDecode(text), ...decodeRuns(text, B64_RUN, 'base64'), ...decodeRuns(text, B64URL_RUN, 'base64url')];
  check('after decoding', decoded.some((d) => d.includes(secret)));
  if (minFragment > 0) {
    for (let i = 0; i + minFragment <= secret.length; i++) {
      if (text.includes(secret.slice(i, i + minFragment))) {
        found.push(`fragment ${JSON.stringify(secret.slice(i, i + minFragment))}`);
        break;
      }
    }
  }
  return found;
}
