// A Java KeyStore (JKS) holding trusted certificates only: what a JVM reads as its default trust
// store (`cacerts`). Java reads no PEM bundle and no CA variable, so a session's bundle reaches a
// JVM in a container only as this file in place of the image's own `cacerts`. Every JVM since
// Java 9 reads JKS whatever its default keystore type (keystore.type.compat).
import { createHash } from 'node:crypto';

/** The password every JDK's `cacerts` has; a trust store loaded without one skips the digest. */
export const JKS_DEFAULT_PASSWORD = 'changeit';

const MAGIC = 0xfeedfeed;
const VERSION = 2;
const TRUSTED_CERT = 2;

/**
 * The certificates of a PEM bundle, DER-encoded, in order; anything else in it is ignored. The
 * DER is the block's base64 decoded: parsing each certificate (X509Certificate) cost ~90 ms for a
 * system bundle at every session start. A block that does not decode to one DER SEQUENCE of
 * exactly its length is skipped, as a block X509Certificate could not read would have failed.
 */
export function pemCertificates(pem: string): Buffer[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/g) ?? [];
  const out: Buffer[] = [];
  for (const block of blocks) {
    const body = block.slice('-----BEGIN CERTIFICATE-----'.length, -'-----END CERTIFICATE-----'.length).replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new Error('a certificate block in the bundle is not base64');
    const der = Buffer.from(body, 'base64');
    if (derLength(der) !== der.length) throw new Error('a certificate block in the bundle is not one DER certificate');
    out.push(der);
  }
  return out;
}

/** The total length a DER SEQUENCE at the start of `der` declares, or -1. */
function derLength(der: Buffer): number {
  if (der.length < 2 || der[0] !== 0x30) return -1;
  const first = der[1]!;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  if (n === 0 || n > 4 || der.length < 2 + n) return -1;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[2 + i]!;
  return 2 + n + len;
}

/** Java's modified UTF-8 with a 2-byte length (DataOutput.writeUTF); aliases here are ASCII. */
function utf(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/**
 * A JKS trust store of the bundle's certificates (aliases `<prefix>-0`, `<prefix>-1`, ...), with
 * the keystore digest for `password`.
 */
export function jksTrustStore(pemBundle: string, opts: { password?: string; aliasPrefix?: string; date?: Date } = {}): Buffer {
  const certs = pemCertificates(pemBundle);
  const when = BigInt((opts.date ?? new Date()).getTime());
  const parts: Buffer[] = [u32(MAGIC), u32(VERSION), u32(certs.length)];
  certs.forEach((der, i) => {
    const date = Buffer.alloc(8);
    date.writeBigUInt64BE(when);
    parts.push(u32(TRUSTED_CERT), utf(`${opts.aliasPrefix ?? 'airlock'}-${i}`), date, utf('X.509'), u32(der.length), der);
  });
  const body = Buffer.concat(parts);
  // sun.security.provider.JavaKeyStore: SHA-1 over the password as UTF-16BE, "Mighty Aphrodite", the body.
  const digest = createHash('sha1')
    .update(Buffer.from(opts.password ?? JKS_DEFAULT_PASSWORD, 'utf16le').swap16())
    .update('Mighty Aphrodite', 'utf8')
    .update(body)
    .digest();
  return Buffer.concat([body, digest]);
}
