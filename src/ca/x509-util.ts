// Small certificate helpers shared by the session CA, the doctor's throwaway CA and the tests.
import { webcrypto, randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// @peculiar/x509 signs with whatever WebCrypto it is given: Node's, i.e. native keys.
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const EC_KEYGEN = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const EC_SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A random positive 128-bit certificate serial number (hex). */
export function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01; // positive, and no leading zero byte (minimal DER)
  return bytes.toString('hex');
}

export function toPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const b64 = (der instanceof Uint8Array ? Buffer.from(der.buffer, der.byteOffset, der.byteLength) : Buffer.from(der)).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}
