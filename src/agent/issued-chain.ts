import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { CastellanError } from '../errors.js';

/** A certificate the agent holds: what goes on disk plus what the scheduler needs. */
export interface IssuedCertificate {
  /** The CA's response as Istio's agent writes it: leaf, intermediates, root(s), PEM. */
  readonly certChainPem: string;
  /** The private key of the leaf, PKCS#8 PEM. */
  readonly keyPem: string;
  /** The trust bundle: the self-signed certificates that end the response. */
  readonly rootCertPem: string;
  readonly notBefore: number;
  readonly notAfter: number;
  /**
   * When we got it: the start of the lifetime the renewal schedule divides. CAs backdate
   * notBefore for clock skew (minutes), which would otherwise eat short lifetimes; Istio's
   * agent counts from the moment of issuance too.
   */
  readonly obtainedAt: number;
  readonly serialNumber: string;
  /** The leaf's URI SANs (the SPIFFE ID), for logs. */
  readonly uris: readonly string[];
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function splitPemCertificates(pem: string): string[] {
  return [...pem.matchAll(PEM_CERT)].map((m) => `${m[0]}\n`);
}

function parseCertificate(pem: string, subject: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (e) {
    throw new CastellanError('malformed', 'not a PEM certificate', { subject, cause: e });
  }
}

function isSelfSigned(cert: X509Certificate): boolean {
  return cert.subject === cert.issuer && cert.verify(cert.publicKey);
}

function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/**
 * Checks a CreateCertificate response before anything is written: every element is one
 * certificate, each is signed by the next, and the leaf holds the public half of our key —
 * so the files on disk can never pair a certificate with the wrong key. The trailing
 * self-signed certificates are the CA's roots (one or more, during a root migration); when
 * the response carries none, `fallbackRootPem` (the configured root file) stands in.
 */
export function acceptIssuedChain(
  certChain: readonly string[],
  keyPem: string,
  fallbackRootPem: string,
  now?: number,
): IssuedCertificate {
  if (certChain.length === 0) {
    throw new CastellanError('internal', 'the CA returned an empty certificate chain');
  }
  const pems = certChain.map((element, i) => {
    const found = splitPemCertificates(element);
    if (found.length !== 1) {
      throw new CastellanError(
        'malformed',
        `holds ${found.length} certificates, expected exactly one`,
        { subject: `cert_chain[${i}]` },
      );
    }
    return found[0] as string;
  });
  const certs = pems.map((pem, i) => parseCertificate(pem, `cert_chain[${i}]`));
  const leaf = certs[0] as X509Certificate;

  const ours = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  const theirs = leaf.publicKey.export({ type: 'spki', format: 'der' });
  if (!ours.equals(theirs)) {
    throw new CastellanError('key-mismatch', 'the issued certificate is not for our key', {
      subject: 'cert_chain[0]',
    });
  }

  for (let i = 0; i + 1 < certs.length; i++) {
    const child = certs[i] as X509Certificate;
    if (isSelfSigned(child)) break; // the roots begin: they need not sign each other
    const parent = certs[i + 1] as X509Certificate;
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      throw new CastellanError(
        'chain-invalid',
        `is not signed by cert_chain[${i + 1}] (${parent.subject.replace(/\n/g, ', ')})`,
        { subject: `cert_chain[${i}]` },
      );
    }
  }

  let firstRoot = certs.length;
  while (firstRoot > 1 && isSelfSigned(certs[firstRoot - 1] as X509Certificate)) firstRoot--;
  const roots = pems.slice(firstRoot);
  const rootCertPem = roots.length > 0 ? roots.join('') : fallbackRootPem;
  if (!rootCertPem.includes('-----BEGIN CERTIFICATE-----')) {
    // Never hand a workload an empty trust bundle: keep the files we have instead.
    throw new CastellanError(
      'malformed',
      'the response holds no root certificate and the configured root file could not be read',
      { subject: 'cert_chain' },
    );
  }

  const notBefore = Date.parse(leaf.validFrom);
  const notAfter = Date.parse(leaf.validTo);
  return {
    certChainPem: pems.join(''),
    keyPem,
    rootCertPem,
    notBefore,
    notAfter,
    obtainedAt: Math.min(notAfter, Math.max(notBefore, now ?? notBefore)),
    serialNumber: leaf.serialNumber,
    uris: uriSans(leaf),
  };
}

/**
 * Reads back a certificate and key found on disk (an earlier run, or material provisioned
 * out of band for mTLS renewal). Returns undefined when the pair is unusable.
 */
export function acceptStoredCertificate(
  certChainPem: string,
  keyPem: string,
  rootCertPem: string,
): IssuedCertificate | undefined {
  try {
    const chain = splitPemCertificates(certChainPem);
    return { ...acceptIssuedChain(chain, keyPem, rootCertPem), rootCertPem };
  } catch {
    return undefined;
  }
}
