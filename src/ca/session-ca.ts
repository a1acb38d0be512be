// A per-session certificate authority: one root (name-constrained to the hosts the session may
// inspect), one leaf key for the whole session, and a leaf certificate minted on first use of each
// host and kept as a ready SecureContext. A new host costs one signature; a known host nothing.
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } from '@peculiar/asn1-x509';
import { Lru } from './lru.js';
import { EC_KEYGEN, EC_SIGN, serialNumber, toPem } from './x509-util.js';
import { LeafTemplate } from './leaf-template.js';

export type CaKeyType = 'ec' | 'rsa';

export interface SessionCaOptions {
  /** Shown in the CA's subject so users can tell sessions apart in a trust store. */
  readonly sessionId: string;
  readonly keyType?: CaKeyType;
  /**
   * DNS subtrees the CA may issue for (RFC 5280 name constraints). null = unconstrained.
   * An empty list constrains the CA to nothing usable.
   */
  readonly permittedDns?: readonly string[] | null;
  /**
   * DNS subtrees the CA may never issue for (RFC 5280 excluded subtrees). Given, the CA also
   * excludes every IP address and may not be combined with permittedDns (a notice CA).
   */
  readonly excludedDns?: readonly string[];
  /**
   * Whether the CA's private key can ever leave the process (exportKeyPem). A notice CA's key is
   * made non-extractable: it exists only inside this process, for its lifetime.
   */
  readonly extractable?: boolean;
  /** How many leaf contexts to keep ready. */
  readonly cacheSize?: number;
  readonly validityDays?: number;
}

const RSA_KEYGEN = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
} as const;
// A name no public DNS will ever hold (RFC 2606): a constrained CA with nothing to inspect.
const NOTHING_PERMITTED = 'invalid';
const DAY_MS = 86_400_000;

function subtrees(names: readonly GeneralName[]): GeneralSubtrees {
  return new GeneralSubtrees(names.map((base) => new GeneralSubtree({ base })));
}

function nameConstraintsExtension(dns: readonly string[]): x509.Extension {
  const names = dns.length > 0 ? dns : [NOTHING_PERMITTED];
  const value = new NameConstraints({ permittedSubtrees: subtrees(names.map((dNSName) => new GeneralName({ dNSName }))) });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(value));
}

/** Excludes `dns` (each name and everything under it) and every IPv4 and IPv6 address. */
function exclusionExtension(dns: readonly string[]): x509.Extension {
  const names = [...dns.map((dNSName) => new GeneralName({ dNSName })), new GeneralName({ iPAddress: '0.0.0.0/0' }), new GeneralName({ iPAddress: '::/0' })];
  const value = new NameConstraints({ excludedSubtrees: subtrees(names) });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(value));
}

/** Whether a DNS name constraint `base` covers `host` (the name itself or a name under it). */
function underSubtree(base: string, host: string): boolean {
  return host === base || host.endsWith('.' + base);
}

export class SessionCa {
  readonly certPem: string;
  private readonly contexts: Lru<string, tls.SecureContext>;
  private readonly pending = new Map<string, Promise<tls.SecureContext>>();
  private material: Promise<{ keyPem: string; template: LeafTemplate }> | undefined;
  /** The excluded DNS subtrees (and with them every IP address), or null for none. */
  private excluded: readonly string[] | null = null;

  private constructor(
    private readonly cert: x509.X509Certificate,
    private readonly keys: CryptoKeyPair,
    private readonly keyType: CaKeyType,
    private readonly validityDays: number,
    cacheSize: number,
  ) {
    this.certPem = cert.toString('pem') + '\n';
    this.contexts = new Lru(cacheSize);
  }

  static async create(options: SessionCaOptions): Promise<SessionCa> {
    const keyType = options.keyType ?? 'ec';
    const validityDays = options.validityDays ?? 30;
    if (options.excludedDns !== undefined && options.permittedDns !== undefined && options.permittedDns !== null) {
      throw new Error('a CA is either permitted some names or excluded from some, not both');
    }
    const keys = (await webcrypto.subtle.generateKey(keyType === 'ec' ? EC_KEYGEN : RSA_KEYGEN, options.extractable ?? true, [
      'sign',
      'verify',
    ])) as CryptoKeyPair;
    const now = Date.now();
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ];
    if (options.permittedDns !== null && options.permittedDns !== undefined) {
      extensions.push(nameConstraintsExtension(options.permittedDns));
    }
    if (options.excludedDns !== undefined) extensions.push(exclusionExtension(options.excludedDns));
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: `CN=Airlock session ${options.sessionId}, O=Airlock`,
      notBefore: new Date(now - 3_600_000),
      notAfter: new Date(now + validityDays * DAY_MS),
      keys,
      signingAlgorithm: keyType === 'ec' ? EC_SIGN : RSA_KEYGEN,
      extensions,
    });
    const ca = new SessionCa(cert, keys, keyType, validityDays, options.cacheSize ?? 1000);
    if (options.excludedDns !== undefined) ca.excluded = Object.freeze([...options.excludedDns]);
    return ca;
  }

  /**
   * Whether a leaf for `host` would verify under this CA's exclusions: never for an IP literal
   * or a name in an excluded subtree. (Permitted subtrees are the caller's business.)
   */
  mayIssueOutsideExclusions(host: string): boolean {
    if (this.excluded === null) return true;
    if (isIP(host) !== 0) return false;
    return !this.excluded.some((base) => underSubtree(base, host));
  }

  /** Whether the certificate is still valid now (a notice CA outlived by a long run is not). */
  get current(): boolean {
    const now = Date.now();
    return now >= this.cert.notBefore.getTime() && now < this.cert.notAfter.getTime();
  }

  /** The CA's private key as PKCS#8 PEM, for callers that persist it (mode 0600, state dir only). */
  async exportKeyPem(): Promise<string> {
    return toPem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', this.keys.privateKey));
  }

  /** A ready TLS context presenting a leaf for `host` (a normalised name or IP literal). */
  contextFor(host: string): tls.SecureContext | Promise<tls.SecureContext> {
    const ready = this.contexts.get(host);
    if (ready) return ready;
    let pending = this.pending.get(host);
    if (!pending) {
      pending = this.mint(host).finally(() => this.pending.delete(host));
      this.pending.set(host, pending);
    }
    return pending;
  }

  /** The session's one leaf key and the leaf template built around it, made on first use. */
  private leafMaterial(): Promise<{ keyPem: string; template: LeafTemplate }> {
    this.material ??= (async () => {
      const keys = (await webcrypto.subtle.generateKey(this.keyType === 'ec' ? EC_KEYGEN : RSA_KEYGEN, true, [
        'sign',
        'verify',
      ])) as CryptoKeyPair;
      const template = await LeafTemplate.create({
        ca: this.cert,
        caPrivateKey: this.keys.privateKey,
        keyType: this.keyType,
        leafPublicKey: keys.publicKey,
        commonExtensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.digitalSignature | (this.keyType === 'rsa' ? x509.KeyUsageFlags.keyEncipherment : 0),
            true,
          ),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          await x509.AuthorityKeyIdentifierExtension.create(this.cert),
        ],
      });
      return { keyPem: toPem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), template };
    })();
    return this.material;
  }

  private async mint(host: string): Promise<tls.SecureContext> {
    const { keyPem, template } = await this.leafMaterial();
    const now = Date.now();
    const notAfter = new Date(Math.min(now + this.validityDays * DAY_MS, this.cert.notAfter.getTime()));
    const leaf = await template.issue(host, new Date(now - 3_600_000), notAfter);
    const context = tls.createSecureContext({ key: keyPem, cert: toPem('CERTIFICATE', leaf) });
    this.contexts.set(host, context);
    return context;
  }
}
