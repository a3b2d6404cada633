import { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate, SubjectAlternativeName, id_ce_subjectAltName } from '@peculiar/asn1-x509';
import { CastellanError } from '../errors.js';
import { systemClock, type Clock } from '../clock.js';
import { formatSerial, revokedEntry, type CaCrl } from '../pki/crl.js';
import { parseSpiffeId, validateTrustDomain } from '../pki/spiffe.js';
import type { AuthRequest, Authenticator, Caller } from './authenticator.js';

/**
 * A trusted root as the CA state holds it: node's X509Certificate, DER bytes, or any object
 * with `rawData` (@peculiar/x509's X509Certificate) — so the server can pass its bundle as is.
 */
export type TrustedRoot = X509Certificate | Uint8Array | { readonly rawData: ArrayBuffer };

export interface ClientCertAuthenticatorOptions {
  /**
   * Our trust domain: SPIFFE IDs in it authenticate. A function is asked on every request, so a
   * mesh config change is followed at once (src/cli/serve/mesh-holder.ts).
   */
  readonly trustDomain: string | (() => string);
  /**
   * Former trust domains (MeshConfig `trustDomainAliases`) whose certificates may still renew,
   * asked on every request; the renewed certificate is issued in the current trust domain,
   * since the identity handed on is the namespace and service account only.
   */
  readonly trustDomainAliases?: (() => readonly string[]) | undefined;
  /** The current roots, asked on every request so a CA rotation is followed at once. */
  readonly roots: () => readonly TrustedRoot[];
  /**
   * The CRL of the current CA state, asked on every request like the roots (the wiring passes
   * `() => caState.current()?.bundle.crl`). A certificate it revokes cannot renew.
   */
  readonly revocations?: (() => CaCrl | undefined) | undefined;
  readonly clock?: Clock | undefined;
}

/** Deeper than any mesh PKI we know of; bounds the work a hostile peer can make us do. */
const MAX_CHAIN_LENGTH = 8;
const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';

/**
 * Authenticates renewals by the workload certificate the client presents in TLS (issue 3): the
 * peer chain must lead, signature by signature, to one of the current roots, every certificate
 * within its validity on our clock, and the leaf must carry exactly one SPIFFE URI SAN in our
 * trust domain. We verify ourselves rather than trust the TLS layer's verdict, because the
 * server accepts connections without client certificates and its roots change with rotation.
 */
export class ClientCertAuthenticator implements Authenticator {
  readonly name = 'client-certificate' as const;
  private readonly trustDomain: () => string;
  private readonly trustDomainAliases: () => readonly string[];
  private readonly roots: () => readonly TrustedRoot[];
  private readonly revocations: () => CaCrl | undefined;
  private readonly clock: Clock;
  /** Roots are parsed once per object: the CA state hands out the same objects until a swap. */
  private readonly parsedRoots = new WeakMap<object, X509Certificate>();

  constructor(options: ClientCertAuthenticatorOptions) {
    const td = options.trustDomain;
    this.trustDomain =
      typeof td === 'function'
        ? td
        : (
            (v) => () =>
              v
          )(validateTrustDomain(td));
    this.trustDomainAliases = options.trustDomainAliases ?? (() => []);
    this.roots = options.roots;
    this.revocations = options.revocations ?? (() => undefined);
    this.clock = options.clock ?? systemClock;
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async so that a refusal is a rejection, as Authenticator promises; nothing here waits
  async authenticate(request: AuthRequest): Promise<Caller | null> {
    if (request.peerCertificates.length === 0) return null;
    if (request.peerCertificates.length > MAX_CHAIN_LENGTH) {
      throw new CastellanError(
        'unauthenticated',
        `client certificate chain has ${request.peerCertificates.length} certificates (at most ${MAX_CHAIN_LENGTH})`,
      );
    }
    const chain = request.peerCertificates.map((der, i) => {
      try {
        return new X509Certificate(der);
      } catch (e) {
        throw new CastellanError(
          'unauthenticated',
          `client certificate [${i}] is not a DER certificate: ${(e as Error).message}`,
        );
      }
    });
    const leaf = chain[0] as X509Certificate;
    const path = this.verifyChain(chain);
    this.checkRevocation(path);
    if (leaf.ca) {
      throw new CastellanError(
        'unauthenticated',
        'client certificate is a CA certificate, not a workload leaf',
      );
    }
    const ekus = leaf.keyUsage as string[] | undefined;
    if (ekus !== undefined && !ekus.includes(CLIENT_AUTH_EKU) && !ekus.includes(ANY_EKU)) {
      throw new CastellanError(
        'unauthenticated',
        'client certificate is not for TLS client authentication (extended key usage)',
      );
    }
    const uri = this.spiffeUriOf(request.peerCertificates[0] as Uint8Array);
    let id;
    try {
      id = parseSpiffeId(uri);
    } catch (e) {
      throw new CastellanError(
        'unauthenticated',
        `client certificate SAN: ${(e as Error).message}`,
      );
    }
    const trustDomain = this.trustDomain();
    if (id.trustDomain !== trustDomain && !this.trustDomainAliases().includes(id.trustDomain)) {
      const aliases = this.trustDomainAliases();
      throw new CastellanError(
        'unauthenticated',
        `client certificate SPIFFE ID ${uri} is not in trust domain "${trustDomain}"` +
          (aliases.length > 0 ? ` nor in its aliases ${JSON.stringify(aliases)}` : ''),
      );
    }
    return {
      authenticator: this.name,
      namespace: id.namespace,
      serviceAccount: id.serviceAccount,
      subject: uri,
    };
  }

  /**
   * Refuses a chain with a certificate that a CRL of the current CA revokes: the leaf, or an
   * intermediate it was issued through. A CRL applies to the certificates its signer issued
   * (name and key identifier, OpenSSL's check_issued); the chain is already verified.
   */
  private checkRevocation(path: readonly X509Certificate[]): void {
    const caCrl = this.revocations();
    if (!caCrl) return;
    for (const crl of caCrl.crls) {
      const signer = this.parse(crl.signer);
      for (let i = 0; i < path.length; i++) {
        const cert = path[i] as X509Certificate;
        if (!cert.checkIssued(signer)) continue;
        const entry = revokedEntry(crl, cert.serialNumber);
        if (entry) {
          throw new CastellanError(
            'unauthenticated',
            `client certificate [${i}] (serial ${formatSerial(entry.serial)}) is revoked by the CRL of "${crl.signer.subject}" (${caCrl.subject}), since ${entry.revocationDate.toISOString()}`,
          );
        }
      }
    }
  }

  /**
   * Walks leaf → issuer until a trusted root signs (or is) the current certificate. Returns the
   * presented certificates that the walk went through (the leaf first).
   */
  private verifyChain(chain: readonly X509Certificate[]): X509Certificate[] {
    const now = this.clock.now();
    const roots = this.roots().map((r) => this.parse(r));
    if (roots.length === 0) {
      throw new CastellanError(
        'unauthenticated',
        'no trusted roots loaded to verify client certificates',
      );
    }
    for (let i = 0; i < chain.length; i++) {
      const cert = chain[i] as X509Certificate;
      checkValidity(cert, now, `client certificate [${i}]`);
      if (roots.some((root) => root.raw.equals(cert.raw))) return chain.slice(0, i + 1);
      const root = roots.find((r) => cert.checkIssued(r) && cert.verify(r.publicKey));
      if (root) {
        checkValidity(root, now, 'trusted root');
        return chain.slice(0, i + 1);
      }
      const issuer = chain[i + 1];
      if (!issuer) {
        throw new CastellanError(
          'unauthenticated',
          `client certificate chain does not lead to a trusted root (no issuer for "${cert.issuer.replace(/\n/g, ', ')}")`,
        );
      }
      if (!cert.checkIssued(issuer)) {
        throw new CastellanError(
          'unauthenticated',
          `client certificate [${i + 1}] did not issue [${i}] (issuer name or key usage does not match)`,
        );
      }
      if (!issuer.ca) {
        throw new CastellanError('unauthenticated', `client certificate [${i + 1}] is not a CA`);
      }
      if (!cert.verify(issuer.publicKey)) {
        throw new CastellanError(
          'unauthenticated',
          `client certificate [${i}] signature does not verify with [${i + 1}]'s key`,
        );
      }
    }
    // Not reached: the last certificate either meets a root or has no issuer (thrown above).
    throw new CastellanError('unauthenticated', 'client certificate chain is empty');
  }

  /** The one SPIFFE URI SAN of the leaf, read from the DER with the X.509 ASN.1 schema. */
  private spiffeUriOf(der: Uint8Array): string {
    const cert = AsnConvert.parse(der, Certificate);
    const ext = cert.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_subjectAltName);
    const uris: string[] = [];
    if (ext) {
      const san = AsnConvert.parse(ext.extnValue, SubjectAlternativeName);
      for (const name of san) {
        if (name.uniformResourceIdentifier !== undefined) uris.push(name.uniformResourceIdentifier);
      }
    }
    const spiffe = uris.filter((u) => u.toLowerCase().startsWith('spiffe://'));
    if (spiffe.length !== 1) {
      throw new CastellanError(
        'unauthenticated',
        `client certificate has ${spiffe.length} SPIFFE URI SANs (exactly one is required)`,
      );
    }
    return spiffe[0] as string;
  }

  private parse(root: TrustedRoot): X509Certificate {
    if (root instanceof X509Certificate) return root;
    let parsed = this.parsedRoots.get(root);
    if (!parsed) {
      const der = root instanceof Uint8Array ? root : new Uint8Array(root.rawData);
      parsed = new X509Certificate(der);
      this.parsedRoots.set(root, parsed);
    }
    return parsed;
  }
}

function checkValidity(cert: X509Certificate, now: number, what: string): void {
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (now < notBefore) {
    throw new CastellanError(
      'unauthenticated',
      `${what} not valid before ${new Date(notBefore).toISOString()}`,
    );
  }
  if (now > notAfter) {
    throw new CastellanError(
      'unauthenticated',
      `${what} expired at ${new Date(notAfter).toISOString()}`,
    );
  }
}
