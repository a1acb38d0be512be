// Fast leaf certificates. Building each leaf through a general ASN.1 library costs ~3 ms of
// JavaScript; a session's leaves differ only in serial, validity and name, so everything else is
// encoded once per session and each new host costs a few byte copies and one signature.
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import type * as x509 from '@peculiar/x509';
import { serialNumber } from './cert-util.js';

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One DER TLV. */
export function der(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

export const SEQUENCE = 0x30;
export const SET = 0x31;
export const OID = 0x06;
export const INTEGER = 0x02;
export const BIT_STRING = 0x03;
export const OCTET_STRING = 0x04;
export const UTF8_STRING = 0x0c;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;

export const OID_COMMON_NAME = Buffer.from([0x55, 0x04, 0x03]); // 2.5.4.3
const OID_SUBJECT_ALT_NAME = Buffer.from([0x55, 0x1d, 0x11]); // 2.5.29.17

export function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const compact = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z'; // YYYYMMDDHHMMSSZ
  const year = date.getUTCFullYear();
  // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
  return year < 2050 ? der(UTC_TIME, Buffer.from(compact.slice(2), 'ascii')) : der(GENERALIZED_TIME, Buffer.from(compact, 'ascii'));
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  const url = new URL(`http://[${ip}]`).hostname.slice(1, -1); // canonical, expanded below
  const [head, tail] = url.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.flatMap((g: string) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** The signature of the issuing key, as X.509 wants it. */
type Signer = (tbs: Buffer) => Promise<Buffer>;

/** ECDSA signatures come from WebCrypto as r||s; X.509 wants SEQUENCE { INTEGER r, INTEGER s }. */
export function ecdsaDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  const int = (b: Buffer) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const trimmed = b.subarray(i);
    return der(INTEGER, trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
  };
  return der(SEQUENCE, int(raw.subarray(0, half)), int(raw.subarray(half)));
}

export interface LeafTemplateInput {
  /** The CA certificate (its subject becomes the issuer; its key signs). */
  readonly ca: x509.X509Certificate;
  readonly caPrivateKey: CryptoKey;
  readonly keyType: 'ec' | 'rsa';
  /** The session's one leaf public key. */
  readonly leafPublicKey: CryptoKey;
  /** Extensions common to every leaf (basic constraints, key usage, EKU, AKI). */
  readonly commonExtensions: readonly x509.Extension[];
}

export class LeafTemplate {
  private constructor(
    private readonly issuer: Buffer,
    private readonly spki: Buffer,
    private readonly signatureAlgorithm: Buffer,
    private readonly commonExtensions: Buffer[],
    private readonly sign: Signer,
  ) {}

  static async create(input: LeafTemplateInput): Promise<LeafTemplate> {
    const ecdsa = input.keyType === 'ec';
    // ecdsa-with-SHA256 (no parameters) or sha256WithRSAEncryption (NULL parameters).
    const signatureAlgorithm = ecdsa
      ? der(SEQUENCE, der(OID, Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])))
      : der(SEQUENCE, der(OID, Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b])), Buffer.from([0x05, 0x00]));
    const algorithm = ecdsa ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5' };
    const sign: Signer = async (tbs) => {
      const raw = Buffer.from(await webcrypto.subtle.sign(algorithm, input.caPrivateKey, tbs));
      return ecdsa ? ecdsaDer(raw) : raw;
    };
    return new LeafTemplate(
      Buffer.from(input.ca.subjectName.toArrayBuffer()),
      Buffer.from(await webcrypto.subtle.exportKey('spki', input.leafPublicKey)),
      signatureAlgorithm,
      input.commonExtensions.map((e) => Buffer.from(e.rawData)),
      sign,
    );
  }

  /** A DER certificate for `host` (a normalised DNS name or IP literal). */
  async issue(host: string, notBefore: Date, notAfter: Date): Promise<Buffer> {
    const ip = isIP(host) !== 0;
    // Host names reaching here are normalised ([a-z0-9._-]); CN is limited to 64 characters.
    const cn = !ip && host.length <= 64 ? host : 'Airlock leaf';
    const subject = der(SEQUENCE, der(SET, der(SEQUENCE, der(OID, OID_COMMON_NAME), der(UTF8_STRING, Buffer.from(cn, 'utf8')))));
    const altName = ip ? der(0x87, ipBytes(host)) : der(0x82, Buffer.from(host, 'ascii'));
    const san = der(SEQUENCE, der(OID, OID_SUBJECT_ALT_NAME), der(OCTET_STRING, der(SEQUENCE, altName)));
    const tbs = der(
      SEQUENCE,
      Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]), // [0] version v3
      der(INTEGER, Buffer.from(serialNumber(), 'hex')),
      this.signatureAlgorithm,
      this.issuer,
      der(SEQUENCE, time(notBefore), time(notAfter)),
      subject,
      this.spki,
      der(0xa3, der(SEQUENCE, ...this.commonExtensions, san)), // [3] extensions
    );
    const signature = await this.sign(tbs);
    return der(SEQUENCE, tbs, this.signatureAlgorithm, der(BIT_STRING, Buffer.from([0]), signature));
  }
}
