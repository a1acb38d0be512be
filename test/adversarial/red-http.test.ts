// Reading a secret back over HTTP from reflecting bound hosts, through corners of the swap and the
// scrubber: two Basic credentials in one header, a secret with a Latin-1 character swapped into a
// header, a secret holding a line end, and the size of what the scrubber holds back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { TunnelAgent } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { SessionBroker } from '../../src/credentials/session-broker.js';
import type { SecretHandle } from '../../src/credentials/session-broker.js';

// Twilio-style: an account id and a token, both secret, sent together as Basic "id:token".
const ID_SECRET = 'ACRealAccountSid0123456789abcdefRED';
const ID_PLACEHOLDER = 'airlock-acct-placeholder-000000000000';
const TOKEN_SECRET = 'RealAuthToken0123456789abcdefTeamRED';
const TOKEN_PLACEHOLDER = 'airlock-token-placeholder-00000000000';
// A password with a character outside ASCII (but inside Latin-1), sent as a header.
const LATIN_SECRET = 'Passw\u00f6rd-RealLatinSecret-0123456789';
const LATIN_PLACEHOLDER = 'airlock-latin-placeholder-000000000000';
// A multi-line secret (a key file), sent in the query.
const NL_SECRET = 'line-one-of-the-real-key-ABCDEFGH\nline-two-of-the-real-key-IJKLMNOP';
const NL_PLACEHOLDER = 'airlock-multiline-placeholder-0000000';
// Two otherwise identical credentials whose secrets differ only in length.
const SHORT_SECRET = 'ghs_Short0123456789';
const LONG_SECRET = 'ghs_LongerSecret0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP';
// A secret pasted with a trailing blank (environment variables keep it).
const SPACED_SECRET = 'sk-SpacedRealSecret0123456789abcdef ';
const SPACED_PLACEHOLDER = 'airlock-spaced-placeholder-0000000000';

const POLICY = `version: 1
name: red-http
allow:
  - host: api.twilio.example
  - host: latin.example
  - host: lines.example
  - host: short.example
  - host: long.example
  - host: space.example
credentials:
  - name: acct
    env: [ACCOUNT_SID]
    placeholder: ${ID_PLACEHOLDER}
    secret: { env: X }
    hosts: [api.twilio.example]
  - name: token
    env: [AUTH_TOKEN]
    placeholder: ${TOKEN_PLACEHOLDER}
    secret: { env: X }
    hosts: [api.twilio.example]
  - name: latin
    env: [LATIN]
    placeholder: ${LATIN_PLACEHOLDER}
    secret: { env: X }
    hosts: [latin.example]
    in: [header]
    headers: [x-api-password]
  - name: lines
    env: [KEY]
    placeholder: ${NL_PLACEHOLDER}
    secret: { env: X }
    hosts: [lines.example]
    in: [query]
  - name: short
    env: [SHORT]
    placeholder: airlock-short-placeholder-0000
    secret: { env: X }
    hosts: [short.example]
  - name: long
    env: [LONG]
    placeholder: airlock-long-placeholder-00000
    secret: { env: X }
    hosts: [long.example]
  - name: spaced
    env: [SPACED]
    placeholder: ${SPACED_PLACEHOLDER}
    secret: { env: X }
    hosts: [space.example]
    in: [header]
    headers: [x-api-key]
`;

function fixed(value: string): SecretHandle {
  return { current: async () => value, known: () => [value] };
}

describe('HTTP read-back through corners of the swap and the scrubber', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  let ca: string;

  beforeAll(async () => {
    pki = await createTestPki();
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const url = new URL(req.url ?? '/', 'https://x');
      req.resume();
      req.on('end', () => {
        if (url.pathname === '/echo-headers') {
          // A debugging endpoint: every request header back, as a header and in the body.
          for (const [name, value] of Object.entries(req.headers)) res.setHeader(`x-echo-${name}`, String(value));
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify(req.headers));
        } else if (url.pathname === '/search') {
          // "No results for <q>", streamed as it is produced.
          const q = url.searchParams.get('q') ?? '';
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          const cut = q.indexOf('\n') + 10;
          res.write(`no results for ${q.slice(0, cut)}`);
          setTimeout(() => res.end(`${q.slice(cut)}\n`), 150);
        } else if (url.pathname === '/slow') {
          // A long line streamed, then a pause before the rest.
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          res.write('a'.repeat(20_000));
          setTimeout(() => res.end('\n'), 600);
        } else {
          res.writeHead(404);
          res.end();
        }
      });
    };
    const names = ['api.twilio.example', 'latin.example', 'lines.example', 'short.example', 'long.example', 'space.example'];
    upstream = await startHttpsUpstream({ pki, names, handler });
    airlock = await startAirlock({
      policy: POLICY,
      resolve: Object.fromEntries(names.map((n) => [`${n}:443`, upstream.port])),
      upstreamCa: [pki.caPem],
      credentials: async (policy) =>
        new SessionBroker(
          policy.credentials,
          new Map([
            ['acct', fixed(ID_SECRET)],
            ['token', fixed(TOKEN_SECRET)],
            ['latin', fixed(LATIN_SECRET)],
            ['lines', fixed(NL_SECRET)],
            ['short', fixed(SHORT_SECRET)],
            ['long', fixed(LONG_SECRET)],
            ['spaced', fixed(SPACED_SECRET)],
          ]),
        ),
    });
    ca = readFileSync(airlock.bundlePath, 'utf8');
  });

  afterAll(async () => {
    await airlock?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  /** A request through the proxy; `onData` sees each piece of the body as it arrives. */
  function get(url: string, headers: Record<string, string> = {}, onData?: (n: number) => void) {
    const agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca });
    return new Promise<{ status: number; head: string; body: Buffer }>((resolve, reject) => {
      const req = https.request(url, { agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          onData?.(c.length);
        });
        res.on('end', () => {
          const head = res.rawHeaders.map((v, i) => (i % 2 ? `${v}\n` : `${v}: `)).join('');
          resolve({ status: res.statusCode ?? 0, head, body: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('two credentials swapped into one Basic header do not hand back the first secret in the echo', async () => {
    const basic = Buffer.from(`${ID_PLACEHOLDER}:${TOKEN_PLACEHOLDER}`).toString('base64');
    const r = await get('https://api.twilio.example/echo-headers', { Authorization: `Basic ${basic}` });
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Basic ${Buffer.from(`${ID_SECRET}:${TOKEN_SECRET}`).toString('base64')}`);
    const everything = r.head + r.body.toString('latin1');
    expect(secretLeaks(everything, ID_SECRET, 8)).toEqual([]);
    expect(secretLeaks(everything, TOKEN_SECRET, 8)).toEqual([]);
  });

  it('a secret with a Latin-1 character swapped into a header is scrubbed from the echoed header', async () => {
    const r = await get('https://latin.example/echo-headers', { 'X-Api-Password': LATIN_PLACEHOLDER });
    expect(upstream.requests.at(-1)?.headers['x-api-password']).toBe(LATIN_SECRET);
    // Headers as the session's client reads them (Latin-1), and the body as UTF-8.
    expect(secretLeaks(r.head, LATIN_SECRET, 8)).toEqual([]);
    expect(secretLeaks(r.body.toString('utf8'), LATIN_SECRET, 8)).toEqual([]);
  });

  it('a secret holding a line end is never swapped in, so no streamed echo can hand it over in parts', async () => {
    const before = upstream.requests.length;
    const r = await get(`https://lines.example/search?q=${NL_PLACEHOLDER}`);
    // Refused as unusable (the proxy log says which credential); the upstream saw nothing.
    expect(r.status).toBe(502);
    expect(upstream.requests.length).toBe(before);
    expect(secretLeaks(r.body, NL_SECRET, 8)).toEqual([]);
  });

  it('what the scrubber holds back of a long line does not depend on the secret', async () => {
    const before = async (url: string) => {
      let n = 0;
      let atPause = -1;
      const timer = setTimeout(() => (atPause = n), 400);
      await get(url, {}, (k) => (n += k));
      clearTimeout(timer);
      return 20_000 - atPause;
    };
    const heldShort = await before('https://short.example/slow');
    const heldLong = await before('https://long.example/slow');
    // The window held back is the longest form of the secret plus two: it reads out its length.
    expect({ heldShort, heldLong }).toEqual({ heldShort: heldLong, heldLong });
  });

  it('a secret with a trailing blank, echoed as HTTP trims it, is still scrubbed', async () => {
    const r = await get('https://space.example/echo-headers', { 'X-Api-Key': SPACED_PLACEHOLDER });
    expect(upstream.requests.at(-1)?.headers['x-api-key']).toBe(SPACED_SECRET.trim());
    expect(secretLeaks(r.head + r.body.toString('utf8'), SPACED_SECRET.trim(), 8)).toEqual([]);
  });
});
