// A throwaway CA and a leaf for 127.0.0.1/localhost, made fresh for each `airlock doctor` run: the
// doctor serves TLS with the leaf inside the container and checks that clients trust the CA the
// way a session's CA is trusted (through /etc/airlock/ca.pem and the CA variables).
import { webcrypto } from 'node:crypto';
import { EC_KEYGEN as KEYGEN, EC_SIGN as SIGN, serialNumber as serial, toPem as pem } from '../ca/cert-util.js';

export interface DoctorCa {
  readonly caPem: string;
  readonly leafPem: string;
  readonly leafKeyPem: string;
}


export async function makeDoctorCa(): Promise<DoctorCa> {
  // Loaded here, not with the command line: every other command would pay for it at start.
  await import('../ca/x509-util.js');
  const x509 = await import('@peculiar/x509');
  const now = Date.now();
  const notBefore = new Date(now - 3_600_000);
  const notAfter = new Date(now + 86_400_000);
  const caKeys = (await webcrypto.subtle.generateKey(KEYGEN, true, ['sign', 'verify'])) as CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=Airlock doctor test CA, O=Airlock',
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const leafKeys = (await webcrypto.subtle.generateKey(KEYGEN, true, ['sign', 'verify'])) as CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=localhost',
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingKey: caKeys.privateKey,
    publicKey: leafKeys.publicKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  return {
    caPem: ca.toString('pem') + '\n',
    leafPem: leaf.toString('pem') + '\n',
    leafKeyPem: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey)),
  };
}
