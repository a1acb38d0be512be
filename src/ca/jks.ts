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
/** The certificate type, in Java's modified UTF-8 (ASCII here) after its 2-byte length. */
const X509 = Buffer.from('X.509', 'utf8');

/**
 * The certificates of a PEM bundle, DER-encoded, in order; anything else in it is ignored. The
 * DER is the block's base64 decoded: parsing each certificate (X509Certificate) cost ~90 ms for a
 * system bundle at every session start. A block that does not decode to one DER SEQUENCE of
 * exactly its length is skipped, as a block X509Certificate could not read would have failed.
 * One scan per block with indexOf and one regular expression, and Node's decoder skipping the
 * line breaks: stripping them first and matching again took ~6 ms of a session's start-up for a
 * system bundle twice over (NODE_EXTRA_CA_CERTS naming the system file), this ~2.
 */
export function pemCertificates(pem: string): Buffer[] {
  const out: Buffer[] = [];
  for (let at = pem.indexOf(BEGIN); at >= 0; at = pem.indexOf(BEGIN, at)) {
    const end = pem.indexOf(END, at + BEGIN.length);
    if (end < 0) break;
    const body = pem.slice(at + BEGIN.length, end);
    at = end + END.length;
    // Base64 and white space only; "=" only as the last one or two characters but white space.
    if (body.trim() === '' || NOT_BASE64.test(body)) throw new Error('a certificate block in the bundle is not base64');
    const der = Buffer.from(body, 'base64');
    if (derLength(der) !== der.length) throw new Error('a certificate block in the bundle is not one DER certificate');
    out.push(der);
  }
  return out;
}

const BEGIN = '-----BEGIN CERTIFICATE-----';
const END = '-----END CERTIFICATE-----';
const NOT_BASE64 = /[^A-Za-z0-9+/=\s]|=\s*[^=\s]|=\s*=\s*=/;

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

/**
 * A JKS trust store of the bundle's certificates (aliases `<prefix>-0`, `<prefix>-1`, ...), with
 * the keystore digest for `password`.
 */
export function jksTrustStore(pemBundle: string, opts: { password?: string; aliasPrefix?: string; date?: Date } = {}): Buffer {
  const certs = pemCertificates(pemBundle);
  const when = BigInt((opts.date ?? new Date()).getTime());
  const prefix = opts.aliasPrefix ?? 'airlock';
  // Aliases are ASCII, so Java's modified UTF-8 (DataOutput.writeUTF, a 2-byte length first) is UTF-8.
  const aliases = certs.map((_, i) => Buffer.from(`${prefix}-${i}`, 'utf8'));
  // Written into one buffer: a few small buffers per certificate and a concat of them all took
  // ~8 ms of a session's start-up for ~300 roots.
  let size = 12;
  certs.forEach((der, i) => (size += 4 + 2 + aliases[i]!.length + 8 + 2 + X509.length + 4 + der.length));
  const body = Buffer.allocUnsafe(size);
  let at = body.writeUInt32BE(MAGIC, 0);
  at = body.writeUInt32BE(VERSION, at);
  at = body.writeUInt32BE(certs.length, at);
  certs.forEach((der, i) => {
    at = body.writeUInt32BE(TRUSTED_CERT, at);
    at = body.writeUInt16BE(aliases[i]!.length, at);
    at += aliases[i]!.copy(body, at);
    at = body.writeBigUInt64BE(when, at);
    at = body.writeUInt16BE(X509.length, at);
    at += X509.copy(body, at);
    at = body.writeUInt32BE(der.length, at);
    at += der.copy(body, at);
  });
  // sun.security.provider.JavaKeyStore: SHA-1 over the password as UTF-16BE, "Mighty Aphrodite", the body.
  const digest = createHash('sha1')
    .update(Buffer.from(opts.password ?? JKS_DEFAULT_PASSWORD, 'utf16le').swap16())
    .update('Mighty Aphrodite', 'utf8')
    .update(body)
    .digest();
  return Buffer.concat([body, digest]);
}
