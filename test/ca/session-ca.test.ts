// The per-session CA: cached leaves, name constraints that real verifiers (OpenSSL via Node's TLS
// and the openssl CLI) enforce, the trust bundle, RSA keys and the bounded leaf cache.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { NameConstraints, id_ce_nameConstraints } from '@peculiar/asn1-x509';
import { SessionCa } from '../../src/ca/session-ca.js';
import { Lru } from '../../src/ca/lru.js';
import { SessionRegistry } from '../../src/sessions/registry.js';
import { upstreamRoots } from '../../src/cli/config.js';
import { parsePolicy } from '../../src/policy/index.js';
import { createTestPki, rmTmp, runProcess, startAirlock, startHttpsUpstream, tmpDir } from '../helpers/servers.js';
import type { TestPki } from '../helpers/servers.js';
import { httpsViaProxy } from '../helpers/clients.js';

let dir: string;
beforeAll(() => {
  dir = tmpDir('airlock-ca-test-');
});
afterAll(() => rmTmp(dir));

/** Serves `context` on loopback and connects a TLS client trusting only `caPem`. */
async function handshake(context: tls.SecureContext, caPem: string, servername: string | undefined, host = '127.0.0.1') {
  const server = net.createServer((socket) => {
    const t = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
    t.on('error', () => t.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const connect = (verify: boolean) =>
    new Promise<{ ok: boolean; error?: string; leaf?: X509Certificate }>((resolve) => {
      const client = tls.connect({ host, port, servername, ca: caPem, rejectUnauthorized: verify });
      client.once('secureConnect', () => {
        resolve({ ok: client.authorized, leaf: client.getPeerX509Certificate() });
        client.destroy();
      });
      client.once('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, error: `${err.code}: ${err.message}` }));
    });
  try {
    // A verifying client (chain, name constraints, host name), and one that only fetches the leaf.
    const verified = await connect(true);
    const { leaf } = await connect(false);
    return { ...verified, leaf };
  } finally {
    server.close();
  }
}

function nameConstraintsOf(pem: string): string[] | null {
  const cert = new x509.X509Certificate(pem);
  const ext = cert.getExtension(id_ce_nameConstraints);
  if (!ext) return null;
  expect(ext.critical).toBe(true);
  const value = AsnConvert.parse(ext.value, NameConstraints);
  return (value.permittedSubtrees ?? []).map((s) => s.base.dNSName ?? `other:${JSON.stringify(s.base)}`);
}

describe('leaf cache', () => {
  it('the second call for a known host returns the same SecureContext, synchronously', async () => {
    const ca = await SessionCa.create({ sessionId: 's-cache', permittedDns: ['api.github.com'] });
    const first = ca.contextFor('api.github.com');
    expect(first).toBeInstanceOf(Promise); // minted on first use
    expect(ca.contextFor('api.github.com')).toBe(first); // concurrent first uses share one mint
    const context = await first;
    const t0 = performance.now();
    const again = ca.contextFor('api.github.com');
    const elapsed = performance.now() - t0;
    expect(again).toBe(context); // the very same object, not a Promise
    expect(elapsed).toBeLessThan(5); // no signature, no key generation
  });

  it('evicts the least recently used leaf when full (LRU)', async () => {
    const ca = await SessionCa.create({ sessionId: 's-lru', permittedDns: null, cacheSize: 2 });
    const a = await ca.contextFor('a.example');
    const b = await ca.contextFor('b.example');
    expect(ca.contextFor('a.example')).toBe(a); // refreshes a: b is now the oldest
    const c = await ca.contextFor('c.example');
    expect(ca.contextFor('a.example')).toBe(a);
    expect(ca.contextFor('c.example')).toBe(c);
    const bAgain = ca.contextFor('b.example');
    expect(bAgain).toBeInstanceOf(Promise); // evicted: minted again
    expect(await bAgain).not.toBe(b);
  });

  it('Lru keeps at most `capacity` entries and refreshes on get', () => {
    const lru = new Lru<string, number>(2);
    lru.set('x', 1);
    lru.set('y', 2);
    expect(lru.get('x')).toBe(1);
    lru.set('z', 3);
    expect(lru.size).toBe(2);
    expect(lru.get('y')).toBeUndefined();
    expect(lru.get('x')).toBe(1);
    expect(lru.get('z')).toBe(3);
    expect(() => new Lru(0)).toThrow(RangeError);
  });
});

describe('name constraints', () => {
  let ca: SessionCa;
  let caFile: string;
  beforeAll(async () => {
    ca = await SessionCa.create({ sessionId: 's-nc', permittedDns: ['api.github.com', 'githubusercontent.com'] });
    caFile = join(dir, 'nc-ca.pem');
    writeFileSync(caFile, ca.certPem);
  });

  it('are in the CA certificate, critical, with the permitted DNS subtrees', () => {
    expect(nameConstraintsOf(ca.certPem)).toEqual(['api.github.com', 'githubusercontent.com']);
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).toBe(true);
  });

  it('openssl shows them', async () => {
    const r = await runProcess('openssl', ['x509', '-in', caFile, '-noout', '-text']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/X509v3 Name Constraints: critical\s+Permitted:\s+DNS:api\.github\.com\s+DNS:githubusercontent\.com/);
  });

  it('a leaf inside the permitted subtrees verifies (Node TLS)', async () => {
    expect((await handshake(await ca.contextFor('api.github.com'), ca.certPem, 'api.github.com')).ok).toBe(true);
    expect((await handshake(await ca.contextFor('raw.githubusercontent.com'), ca.certPem, 'raw.githubusercontent.com')).ok).toBe(true);
  });

  it('a leaf outside the permitted subtrees is rejected by Node TLS (even though the CA signed it)', async () => {
    const result = await handshake(await ca.contextFor('evil.example'), ca.certPem, 'evil.example');
    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/subtree|constraint/i);
  });

  it('openssl verify: OK inside, "permitted subtree violation" outside', async () => {
    const inside = (await handshake(await ca.contextFor('api.github.com'), ca.certPem, 'api.github.com')).leaf!;
    const outside = (await handshake(await ca.contextFor('evil.example'), ca.certPem, 'evil.example')).leaf!;
    writeFileSync(join(dir, 'inside.pem'), inside.toString());
    writeFileSync(join(dir, 'outside.pem'), outside.toString());
    const ok = await runProcess('openssl', ['verify', '-CAfile', caFile, join(dir, 'inside.pem')]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain(': OK');
    const bad = await runProcess('openssl', ['verify', '-CAfile', caFile, join(dir, 'outside.pem')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/permitted subtree violation/i);
  });

  it('an empty permitted list constrains the CA to nothing usable', async () => {
    const none = await SessionCa.create({ sessionId: 's-none', permittedDns: [] });
    expect(nameConstraintsOf(none.certPem)).toEqual(['invalid']);
    expect((await handshake(await none.contextFor('api.github.com'), none.certPem, 'api.github.com')).ok).toBe(false);
  });

  it('leaves are end-entity serverAuth certificates for exactly the host', async () => {
    const leaf = (await handshake(await ca.contextFor('api.github.com'), ca.certPem, 'api.github.com')).leaf!;
    expect(leaf.ca).toBe(false);
    expect(leaf.subjectAltName).toBe('DNS:api.github.com');
    expect(leaf.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(leaf.keyUsage).toContain('1.3.6.1.5.5.7.3.1');
    expect(new Date(leaf.validTo).getTime()).toBeLessThanOrEqual(new Date(new X509Certificate(ca.certPem).validTo).getTime());
  });

  it('IP literal hosts get an IP SAN', async () => {
    const open = await SessionCa.create({ sessionId: 's-ip', permittedDns: null });
    const result = await handshake(await open.contextFor('127.0.0.1'), open.certPem, undefined);
    expect(result.leaf!.subjectAltName).toBe('IP Address:127.0.0.1');
    expect(result.ok).toBe(true);
  });
});

describe('the session registry builds CAs from the policy', () => {
  const policy = (text: string) => parsePolicy(`version: 1\nname: p\n${text}`, 'p.yaml');

  it('constrains the CA to the inspected hosts (wildcards as their subtree, inspect:false left out)', async () => {
    const registry = new SessionRegistry({ stateDir: dir, trustRoots: [] });
    const s = await registry.create(policy('allow:\n  - host: api.github.com\n  - host: "*.githubusercontent.com"\n  - host: pinned.example.com\n    inspect: false\n'));
    expect(nameConstraintsOf(s.ca.certPem)).toEqual(['api.github.com', 'githubusercontent.com']);
    await registry.closeAll();
  });

  it('leaves the CA unconstrained when the policy has IP rules or is in report mode', async () => {
    const registry = new SessionRegistry({ stateDir: dir, trustRoots: [] });
    const withIp = await registry.create(policy('allow:\n  - host: api.github.com\n  - host: 10.0.0.5\n'));
    expect(nameConstraintsOf(withIp.ca.certPem)).toBeNull();
    const report = await registry.create(policy('mode: report\nallow:\n  - host: api.github.com\n'));
    expect(nameConstraintsOf(report.ca.certPem)).toBeNull();
    await registry.closeAll();
  });

  it('writes the bundle as session CA + notice CA + trust roots, and ca.pem as the CA alone', async () => {
    const pki = await createTestPki({ dir });
    const roots = upstreamRoots([pki.caFile], {});
    const registry = new SessionRegistry({ stateDir: dir, trustRoots: roots });
    const s = await registry.create(policy('allow:\n  - host: api.github.com\n'));
    const bundle = readFileSync(s.bundlePath, 'utf8');
    const certs = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    expect(certs.length).toBe(tls.rootCertificates.length + 3);
    expect(new X509Certificate(certs[0]!).fingerprint256).toBe(new X509Certificate(s.ca.certPem).fingerprint256);
    expect(new X509Certificate(certs[1]!).fingerprint256).toBe(new X509Certificate(s.notice!.certPem).fingerprint256);
    expect(certs.map((c) => new X509Certificate(c).fingerprint256)).toContain(new X509Certificate(pki.caPem).fingerprint256);
    expect(readFileSync(join(s.dir, 'ca.pem'), 'utf8')).toBe(s.ca.certPem);
    await registry.closeAll();
  });
});

describe('RSA session CA', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await createTestPki();
  });
  afterAll(() => rmTmp(pki?.dir));

  it('creates RSA CA and leaf keys that clients accept', async () => {
    const ca = await SessionCa.create({ sessionId: 's-rsa', keyType: 'rsa', permittedDns: ['api.github.com'] });
    const cert = new X509Certificate(ca.certPem);
    expect(cert.publicKey.asymmetricKeyType).toBe('rsa');
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const result = await handshake(await ca.contextFor('api.github.com'), ca.certPem, 'api.github.com');
    expect(result.ok).toBe(true);
    expect(result.leaf!.publicKey.asymmetricKeyType).toBe('rsa');
  });

  it('works end to end through the proxy (caKeyType: rsa)', async () => {
    const upstream = await startHttpsUpstream({ pki, names: ['api.github.com'] });
    const airlock = await startAirlock({ policy: 'version: 1\nname: rsa\nallow:\n  - host: api.github.com\n', resolve: { 'api.github.com:443': upstream.port }, upstreamCa: [pki.caPem], caKeyType: 'rsa' });
    try {
      expect(new X509Certificate(airlock.session.ca.certPem).publicKey.asymmetricKeyType).toBe('rsa');
      const res = await httpsViaProxy({ proxyPort: airlock.port, proxyAuthorization: airlock.proxyAuthorization, url: 'https://api.github.com/rsa', ca: readFileSync(airlock.bundlePath, 'utf8') });
      expect(res.status).toBe(200);
    } finally {
      await airlock.close();
      await upstream.close();
    }
  });
});
