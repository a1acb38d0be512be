// Fuzz through the real proxy: a bound upstream reflects the secret it received in every form the
// proxy writes (raw, percent-encoded either case, JSON-escaped, base64 at a random alignment
// inside a longer run, Basic "user:secret"), in headers and body, written in random slices with
// random pauses, chunked or with a length, sometimes gzip-compressed. Many seeds; no response may
// let the session recover the secret or a long piece of it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { createTestPki, rmTmp, startAirlock, startHttpsUpstream } from '../helpers/servers.js';
import type { AirlockHandle, TestPki, TestUpstream } from '../helpers/servers.js';
import { TunnelAgent } from '../helpers/clients.js';
import { secretLeaks } from '../helpers/secret-leaks.js';
import { credentialsFactory } from '../../src/credentials/sources.js';

const SECRET = 'ghs_Fuzz/Secret+Value=0123456789abcdefXYZ';
const PLACEHOLDER = 'ghp_airlockFuzzPlaceholder0000000000000';
const SEEDS = 150;

function seeded(seed: number) {
  let state = seed + 1;
  return (n: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
}

const FILLER = ['{"a":"', 'lorem ipsum ', '\n', 'data: x\n\n', 'QUJD', '+/==', '%2F', '\\/', 'ghs_', 'x-access-token:', ' '];

/** A body mixing filler and forms of `secret`, as a reflecting upstream would produce. */
function reflectedBody(secret: string, rand: (n: number) => number, size: number): string {
  const forms = [
    () => secret,
    () => encodeURIComponent(secret),
    () => encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
    () => JSON.stringify(secret).slice(1, -1).replace(/\//g, '\\/'),
    () => Buffer.from('xyz'.slice(0, rand(3)) + secret + 'pq'.slice(0, rand(3))).toString('base64'),
    () => `Basic ${Buffer.from(`x-access-token:${secret}`).toString('base64')}`,
  ];
  let body = '';
  while (body.length < size) body += rand(4) === 0 ? forms[rand(forms.length)]!() : FILLER[rand(FILLER.length)]!;
  return body;
}

describe('scrubbing fuzz: a reflecting bound upstream, many seeds', () => {
  let pki: TestPki;
  let upstream: TestUpstream;
  let airlock: AirlockHandle;
  let agent: TunnelAgent;
  let reflected = 0;

  beforeAll(async () => {
    pki = await createTestPki();
    upstream = await startHttpsUpstream({
      pki,
      names: ['api.github.com'],
      handler: (req, res) => {
        const secret = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
        if (secret === SECRET) reflected++;
        const rand = seeded(Number(new URL(req.url ?? '/', 'https://x').searchParams.get('seed')));
        const body = Buffer.from(reflectedBody(secret, rand, 200 + rand(3000)));
        const gzip = rand(4) === 0;
        const payload = gzip ? gzipSync(body) : body;
        const headers: Record<string, string> = { 'Content-Type': 'text/plain', 'X-Reflect': reflectedBody(secret, rand, 300).replace(/\n/g, ' ') };
        if (gzip) headers['Content-Encoding'] = 'gzip';
        if (rand(2) === 0) headers['Content-Length'] = String(payload.length);
        res.writeHead(200, headers);
        // Random slices, some after a pause, so chunk boundaries fall anywhere.
        let at = 0;
        const next = () => {
          if (at >= payload.length) return void res.end();
          const len = 1 + rand(rand(3) === 0 ? 8 : 200);
          res.write(payload.subarray(at, at + len));
          at += len;
          if (rand(8) === 0) setTimeout(next, 1);
          else next();
        };
        next();
      },
    });
    airlock = await startAirlock({
      policy: `version: 1\nname: fuzz\nallow:\n  - host: api.github.com\ncredentials:\n  - name: github\n    env: [GH_TOKEN]\n    placeholder: ${PLACEHOLDER}\n    secret: { env: AIRLOCK_GITHUB_TOKEN }\n    hosts: [api.github.com]\n`,
      resolve: { 'api.github.com:443': upstream.port },
      upstreamCa: [pki.caPem],
      credentials: credentialsFactory({ AIRLOCK_GITHUB_TOKEN: SECRET }),
    });
    agent = new TunnelAgent({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, ca: readFileSync(airlock.bundlePath, 'utf8') });
  });

  afterAll(async () => {
    await airlock?.close();
    await upstream?.close();
    rmTmp(pki?.dir);
  });

  function fetchSeed(seed: number): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = https.get(`https://api.github.com/fuzz?seed=${seed}`, { agent, headers: { Authorization: `Bearer ${PLACEHOLDER}`, 'Accept-Encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: JSON.stringify(res.headers) + Buffer.concat(chunks).toString('latin1') }));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
  }

  it(`no seed of ${SEEDS} gives the secret back in any form`, async () => {
    const failures: string[] = [];
    for (let seed = 0; seed < SEEDS; seed++) {
      const { status, text } = await fetchSeed(seed);
      const leaks = secretLeaks(text, SECRET, 12);
      if (status !== 200 || leaks.length > 0) failures.push(`seed ${seed}: status ${status}, ${leaks.join(', ')}`);
    }
    expect(failures).toEqual([]);
    // Every response really carried the secret: the upstream got it each time.
    expect(reflected).toBe(SEEDS);
  });
});
