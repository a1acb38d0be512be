// A per-session certificate authority: one root (name-constrained to the hosts the session may
// inspect), one leaf key for the whole session, and a leaf certificate minted on first use of each
// host and kept as a ready SecureContext. A new host costs one signature; a known host nothing.
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import tls from 'node:tls';
import type * as X509 from '@peculiar/x509';
import { Lru } from './lru.js';
import { EC_KEYGEN, serialNumber, toPem } from './cert-util.js';
import { LeafTemplate } from './leaf-template.js';
import { ecRootCertificate } from './root-der.js';

/**
 * @peculiar/x509 and its ASN.1 packages, loaded on first need (a session's first leaf, or an RSA
 * CA): an EC CA's own certificate is encoded without them (root-der.ts), so a session starts
 * without paying for their load.
 */
async function asn1() {
  const [x509, schema, asnX509] = await Promise.all([import('./x509-util.js').then(() => import('@peculiar/x509')), import('@peculiar/asn1-schema'), import('@peculiar/asn1-x509')]);
  return { x509, AsnConvert: schema.AsnConvert, asnX509 };
}
type Asn1 = Awaited<ReturnType<typeof asn1>>;

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

function subtrees(a: Asn1, names: readonly InstanceType<Asn1['asnX509']['GeneralName']>[]) {
  return new a.asnX509.GeneralSubtrees(names.map((base) => new a.asnX509.GeneralSubtree({ base })));
}

function nameConstraintsExtension(a: Asn1, dns: readonly string[]): X509.Extension {
  const value = new a.asnX509.NameConstraints({ permittedSubtrees: subtrees(a, permitted(dns).map((dNSName) => new a.asnX509.GeneralName({ dNSName }))) });
  return new a.x509.Extension(a.asnX509.id_ce_nameConstraints, true, a.AsnConvert.serialize(value));
}

/** Excludes `dns` (each name and everything under it) and every IPv4 and IPv6 address. */
function exclusionExtension(a: Asn1, dns: readonly string[]): X509.Extension {
  const { GeneralName } = a.asnX509;
  const names = [...dns.map((dNSName) => new GeneralName({ dNSName })), new GeneralName({ iPAddress: '0.0.0.0/0' }), new GeneralName({ iPAddress: '::/0' })];
  const value = new a.asnX509.NameConstraints({ excludedSubtrees: subtrees(a, names) });
  return new a.x509.Extension(a.asnX509.id_ce_nameConstraints, true, a.AsnConvert.serialize(value));
}

/** A permitted list that is empty would be no constraint at all: permit a name nothing holds. */
function permitted(dns: readonly string[]): readonly string[] {
  return dns.length > 0 ? dns : [NOTHING_PERMITTED];
}

/** Certificate validity as encoded: whole seconds. */
const seconds = (ms: number) => new Date(Math.floor(ms / 1000) * 1000);

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
    /** The CA certificate, DER. */
    private readonly certDer: Buffer,
    private readonly notBefore: Date,
    private readonly notAfter: Date,
    private readonly keys: CryptoKeyPair,
    private readonly keyType: CaKeyType,
    private readonly validityDays: number,
    cacheSize: number,
  ) {
    this.certPem = toPem('CERTIFICATE', certDer) + '\n';
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
    const notBefore = seconds(now - 3_600_000);
    const notAfter = seconds(now + validityDays * DAY_MS);
    const permittedDns = options.permittedDns !== null && options.permittedDns !== undefined ? options.permittedDns : null;
    let certDer: Buffer;
    if (keyType === 'ec') {
      certDer = await ecRootCertificate({
        keys,
        commonName: `Airlock session ${options.sessionId}`,
        organization: 'Airlock',
        notBefore,
        notAfter,
        permittedDns: permittedDns === null ? null : permitted(permittedDns),
        excludedDns: options.excludedDns ?? null,
      });
    } else {
      const a = await asn1();
      const extensions: X509.Extension[] = [
        new a.x509.BasicConstraintsExtension(true, 0, true),
        new a.x509.KeyUsagesExtension(a.x509.KeyUsageFlags.keyCertSign | a.x509.KeyUsageFlags.cRLSign, true),
        await a.x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ];
      if (permittedDns !== null) extensions.push(nameConstraintsExtension(a, permittedDns));
      if (options.excludedDns !== undefined) extensions.push(exclusionExtension(a, options.excludedDns));
      const cert = await a.x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: serialNumber(),
        name: `CN=Airlock session ${options.sessionId}, O=Airlock`,
        notBefore,
        notAfter,
        keys,
        signingAlgorithm: RSA_KEYGEN,
        extensions,
      });
      certDer = Buffer.from(cert.rawData);
    }
    const ca = new SessionCa(certDer, notBefore, notAfter, keys, keyType, validityDays, options.cacheSize ?? 1000);
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
    return now >= this.notBefore.getTime() && now < this.notAfter.getTime();
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

  /**
   * Makes the leaf key and template now (and loads the ASN.1 library for them) instead of at the
   * first new host: a launcher calls it once its command is running.
   */
  prepare(): void {
    this.leafMaterial().catch(() => {}); // a failure here shows again, and is reported, at the first leaf
  }

  /** The session's one leaf key and the leaf template built around it, made on first use. */
  private leafMaterial(): Promise<{ keyPem: string; template: LeafTemplate }> {
    this.material ??= (async () => {
      const { x509 } = await asn1();
      const cert = new x509.X509Certificate(new Uint8Array(this.certDer));
      const keys = (await webcrypto.subtle.generateKey(this.keyType === 'ec' ? EC_KEYGEN : RSA_KEYGEN, true, [
        'sign',
        'verify',
      ])) as CryptoKeyPair;
      const template = await LeafTemplate.create({
        ca: cert,
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
          await x509.AuthorityKeyIdentifierExtension.create(cert),
        ],
      });
      return { keyPem: toPem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), template };
    })();
    return this.material;
  }

  private async mint(host: string): Promise<tls.SecureContext> {
    const { keyPem, template } = await this.leafMaterial();
    const now = Date.now();
    const notAfter = new Date(Math.min(now + this.validityDays * DAY_MS, this.notAfter.getTime()));
    const leaf = await template.issue(host, new Date(now - 3_600_000), notAfter);
    const context = tls.createSecureContext({ key: keyPem, cert: toPem('CERTIFICATE', leaf) });
    this.contexts.set(host, context);
    return context;
  }
}
