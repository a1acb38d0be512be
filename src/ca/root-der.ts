// The session CAs' own certificates (EC keys), encoded directly: the same fields @peculiar/x509
// wrote for them, without loading it (and its ASN.1 packages) at every session start. RSA CAs,
// rare, still go through the library (session-ca.ts).
import { createHash, webcrypto } from 'node:crypto';
import { BIT_STRING, der, ecdsaDer, INTEGER, OCTET_STRING, OID, OID_COMMON_NAME, SEQUENCE, SET, time, UTF8_STRING } from './leaf-template.js';
import { serialNumber } from './cert-util.js';

const BOOLEAN_TRUE = Buffer.from([0x01, 0x01, 0xff]);
const OID_ORGANIZATION = Buffer.from([0x55, 0x04, 0x0a]); // 2.5.4.10
const OID_BASIC_CONSTRAINTS = Buffer.from([0x55, 0x1d, 0x13]); // 2.5.29.19
const OID_KEY_USAGE = Buffer.from([0x55, 0x1d, 0x0f]); // 2.5.29.15
const OID_SUBJECT_KEY_ID = Buffer.from([0x55, 0x1d, 0x0e]); // 2.5.29.14
const OID_NAME_CONSTRAINTS = Buffer.from([0x55, 0x1d, 0x1e]); // 2.5.29.30
const ECDSA_WITH_SHA256 = der(SEQUENCE, der(OID, Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])));

export interface RootCertificateInput {
  readonly keys: CryptoKeyPair;
  readonly commonName: string;
  readonly organization: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** DNS subtrees the CA may issue for, or null for no constraint. */
  readonly permittedDns: readonly string[] | null;
  /** DNS subtrees (and every IPv4 and IPv6 address) the CA may never issue for, or null. */
  readonly excludedDns: readonly string[] | null;
}

function extension(oid: Buffer, critical: boolean, value: Buffer): Buffer {
  return der(SEQUENCE, der(OID, oid), ...(critical ? [BOOLEAN_TRUE] : []), der(OCTET_STRING, value));
}

/** GeneralSubtree for a dNSName ([2] IA5String) or an iPAddress range ([7] address + mask). */
const dnsSubtree = (name: string) => der(SEQUENCE, der(0x82, Buffer.from(name, 'ascii')));
const ipSubtree = (bytes: number) => der(SEQUENCE, der(0x87, Buffer.alloc(bytes * 2)));

/**
 * A self-signed ECDSA P-256 CA certificate (DER): basic constraints CA with path length 0 and key
 * usage keyCertSign + cRLSign (both critical), a subject key identifier (SHA-1 of the public key,
 * RFC 5280 4.2.1.2), and name constraints (critical) when asked for.
 */
export async function ecRootCertificate(input: RootCertificateInput): Promise<Buffer> {
  if (input.permittedDns !== null && input.excludedDns !== null) throw new Error('a CA is either permitted some names or excluded from some, not both');
  for (const name of [...(input.permittedDns ?? []), ...(input.excludedDns ?? [])]) {
    // An IA5String of visible ASCII (names reach here normalised by the policy parser).
    if (!/^[\x21-\x7e]+$/.test(name)) throw new Error(`not a DNS name for a name constraint: ${JSON.stringify(name)}`);
  }
  const name = der(
    SEQUENCE,
    der(SET, der(SEQUENCE, der(OID, OID_COMMON_NAME), der(UTF8_STRING, Buffer.from(input.commonName, 'utf8')))),
    der(SET, der(SEQUENCE, der(OID, OID_ORGANIZATION), der(UTF8_STRING, Buffer.from(input.organization, 'utf8')))),
  );
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', input.keys.publicKey));
  // The subjectPublicKey BIT STRING's bytes: the raw EC point (65 bytes for P-256), its last field.
  const point = Buffer.from(await webcrypto.subtle.exportKey('raw', input.keys.publicKey));
  const extensions = [
    extension(OID_BASIC_CONSTRAINTS, true, der(SEQUENCE, BOOLEAN_TRUE, der(INTEGER, Buffer.from([0])))),
    // keyCertSign (bit 5) and cRLSign (bit 6): 0b0000_0110 with its last unused bit.
    extension(OID_KEY_USAGE, true, der(BIT_STRING, Buffer.from([0x01, 0x06]))),
    extension(OID_SUBJECT_KEY_ID, false, der(OCTET_STRING, createHash('sha1').update(point).digest())),
  ];
  if (input.permittedDns !== null) {
    // An empty list would be no constraint at all: the caller passes a name nothing can hold.
    if (input.permittedDns.length === 0) throw new Error('permittedDns is empty');
    extensions.push(extension(OID_NAME_CONSTRAINTS, true, der(SEQUENCE, der(0xa0, ...input.permittedDns.map(dnsSubtree)))));
  }
  if (input.excludedDns !== null) {
    const excluded = [...input.excludedDns.map(dnsSubtree), ipSubtree(4), ipSubtree(16)];
    extensions.push(extension(OID_NAME_CONSTRAINTS, true, der(SEQUENCE, der(0xa1, ...excluded))));
  }
  const tbs = der(
    SEQUENCE,
    Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]), // [0] version v3
    der(INTEGER, Buffer.from(serialNumber(), 'hex')),
    ECDSA_WITH_SHA256,
    name,
    der(SEQUENCE, time(input.notBefore), time(input.notAfter)),
    name,
    spki,
    der(0xa3, der(SEQUENCE, ...extensions)),
  );
  const signature = ecdsaDer(Buffer.from(await webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, input.keys.privateKey, tbs)));
  return der(SEQUENCE, tbs, ECDSA_WITH_SHA256, der(BIT_STRING, Buffer.from([0]), signature));
}
