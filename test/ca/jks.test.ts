// The Java trust store a session's bundle becomes: read back by the JDK's own keytool.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jksTrustStore, pemCertificates } from '../../src/ca/jks.js';
import { createTestPki, rmTmp, runProcess, tmpDir } from '../helpers/servers.js';
import type { TestPki } from '../helpers/servers.js';

let dir: string;
let a: TestPki;
let b: TestPki;

beforeAll(async () => {
  dir = tmpDir('airlock-jks-');
  [a, b] = await Promise.all([createTestPki(), createTestPki()]);
});

afterAll(() => rmTmp(dir, a?.dir, b?.dir));

const fingerprint = (der: Buffer) => createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');

describe('jksTrustStore', () => {
  it('holds every certificate of the bundle as a trusted entry, which keytool lists with the default password', async () => {
    const bundle = [readFileSync(a.caFile, 'utf8'), 'not a certificate', readFileSync(b.caFile, 'utf8')].join('\n');
    const file = join(dir, 'store.jks');
    writeFileSync(file, jksTrustStore(bundle));
    const r = await runProcess('keytool', ['-list', '-keystore', file, '-storepass', 'changeit'], { timeoutMs: 60_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('Keystore type: JKS');
    expect(r.stdout).toContain('Your keystore contains 2 entries');
    expect(r.stdout.match(/trustedCertEntry/g)?.length).toBe(2);
    for (const der of pemCertificates(bundle)) expect(r.stdout).toContain(fingerprint(der));
    expect(pemCertificates(bundle).map((d) => new X509Certificate(d).subject)).toEqual([a.caFile, b.caFile].map((f) => new X509Certificate(readFileSync(f)).subject));
  }, 60_000);

  it('carries the keystore digest: keytool refuses a wrong password as tampering', async () => {
    const file = join(dir, 'digest.jks');
    writeFileSync(file, jksTrustStore(readFileSync(a.caFile, 'utf8')));
    const r = await runProcess('keytool', ['-list', '-keystore', file, '-storepass', 'wrong-password'], { timeoutMs: 60_000 });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/tampered with, or password was incorrect/);
  }, 60_000);
});

describe('pemCertificates', () => {
  it("gives each block's DER exactly as a certificate parser does, for the whole system bundle", () => {
    const system = readFileSync('/etc/ssl/certs/ca-certificates.crt', 'utf8');
    const blocks = system.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    expect(blocks.length).toBeGreaterThan(50);
    expect(pemCertificates(system)).toEqual(blocks.map((block) => Buffer.from(new X509Certificate(block).raw)));
  });

  it('refuses a block that is not base64 of one DER certificate of its own length', () => {
    const good = readFileSync(a.caFile, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0];
    const body = good.split('\n').slice(1, -1).join('');
    const wrap = (b64: string) => `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
    expect(() => pemCertificates(wrap(body.slice(0, -8)))).toThrow(/not one DER certificate/);
    expect(() => pemCertificates(wrap(Buffer.from('hello').toString('base64')))).toThrow(/not one DER certificate/);
    expect(() => pemCertificates(wrap('!!not base64!!'))).toThrow(/not base64/);
  });
});
