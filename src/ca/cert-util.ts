// Certificate constants and helpers that need no ASN.1 library (loading @peculiar/x509 and its
// packages costs ~100-200 ms, which `airlock exec` would otherwise pay before its command starts).
import { randomBytes } from 'node:crypto';

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
