// The host side's own requests to token endpoints verify TLS like the proxy's upstream requests.
// Without --upstream-ca the CLI passes no roots (Node's default store: its bundled roots and
// NODE_EXTRA_CA_CERTS); with it, its roots. Either way a certificate of an unknown CA or for
// another name is refused before any byte of the request (which carries a refresh token or a
// signed assertion) is sent. Real TLS servers on loopback, reached through --resolve-style
// overrides, as the CLI's token transport is.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenRequest, TokenEndpointError } from '../../src/credentials/token-http.js';
import { createTestPki, rmTmp, startHttpsUpstream } from '../helpers/servers.js';
import type { TestPki, TestUpstream } from '../helpers/servers.js';

const NAME = 'oauth.token-tls.test';
const REFRESH = 'refresh-token-that-must-not-leave';

let pki: TestPki;
let otherPki: TestPki;
let good: TestUpstream;
let unknownCa: TestUpstream;
let wrongName: TestUpstream;

beforeAll(async () => {
  pki = await createTestPki();
  otherPki = await createTestPki(); // in no trust store
  good = await startHttpsUpstream({ pki, names: [NAME] });
  unknownCa = await startHttpsUpstream({ pki: otherPki, names: [NAME] });
  wrongName = await startHttpsUpstream({ pki, names: ['other.token-tls.test'] });
});

afterAll(async () => {
  await Promise.all([good?.close(), unknownCa?.close(), wrongName?.close()]);
  rmTmp(pki?.dir, otherPki?.dir);
});

const at = (port: number) => new Map([[`${NAME}:443`, { address: '127.0.0.1', port }]]);
const post = (port: number, ca?: readonly string[]) =>
  tokenRequest(`https://${NAME}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=refresh_token&refresh_token=${REFRESH}` }, { resolve: at(port), ca, timeoutMs: 10_000 });

async function refused(p: Promise<unknown>): Promise<TokenEndpointError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenEndpointError);
  expect((err as TokenEndpointError).kind).toBe('unreachable');
  expect((err as Error).message).not.toContain(REFRESH);
  return err as TokenEndpointError;
}

describe('token endpoint TLS', () => {
  it("no roots given (Node's default store): an unknown CA is refused, nothing sent", async () => {
    const err = await refused(post(unknownCa.port));
    expect(err.message).toMatch(/SELF_SIGNED|UNABLE_TO|CERT/);
    expect(unknownCa.requests).toHaveLength(0);
  });

  it('roots given (--upstream-ca): an unknown CA is refused, a certificate for another name is refused, nothing sent', async () => {
    const err = await refused(post(unknownCa.port, [pki.caPem]));
    expect(err.message).toMatch(/SELF_SIGNED|UNABLE_TO|CERT/);
    const named = await refused(post(wrongName.port, [pki.caPem]));
    expect(named.message).toMatch(/ALTNAME|HOSTNAME/);
    expect(unknownCa.requests).toHaveLength(0);
    expect(wrongName.requests).toHaveLength(0);
  });

  it('the control: the right name under the given roots answers', async () => {
    const r = await post(good.port, [pki.caPem]);
    expect(r.status).toBe(200);
    expect(good.requests.map((q) => q.url)).toEqual(['/token']);
  });
});
