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

/** A PEM block without its line breaks, to compare certificates written differently. */
const normalized = (pem: string): string => pem.replace(/\s+/g, '');

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
 * Checks a CreateCertificate response before anything is written, reading it as istiod lays it
 * out (security/pkg/server/ca/server.go, CreateCertificate): the leaf, each certificate of the
 * chain one per element, then every trusted root in ONE last element (several PEM blocks during
 * a root change). Every element but the last is one certificate; the leaf holds the public half
 * of our key and each certificate is signed by the next, the last of them by one of the roots —
 * so the files on disk can never pair a certificate with the wrong key.
 *
 * Tolerated, from other servers: a last element of one certificate that is not self-signed (a
 * response without roots: `fallbackRootPem`, the configured root file, stands in), and
 * self-signed certificates among the chain (roots sent one per element, as Castellan did before
 * this layout, or a root repeated in the chain, Istio's issue #39001), which join the roots.
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
  const elements = certChain.map((element, i) => {
    const pems = splitPemCertificates(element);
    const last = i === certChain.length - 1 && i > 0;
    if (last ? pems.length === 0 : pems.length !== 1) {
      throw new CastellanError(
        'malformed',
        `holds ${pems.length} certificates, expected ${last ? 'one or more (the roots)' : 'exactly one'}`,
        { subject: `cert_chain[${i}]` },
      );
    }
    return pems.map((pem) => ({ pem, cert: parseCertificate(pem, `cert_chain[${i}]`), index: i }));
  });
  const [leaf] = elements[0] as [Issued];

  const ours = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  const theirs = leaf.cert.publicKey.export({ type: 'spki', format: 'der' });
  if (!ours.equals(theirs)) {
    throw new CastellanError('key-mismatch', 'the issued certificate is not for our key', {
      subject: 'cert_chain[0]',
    });
  }

  const tail = elements.length > 1 ? (elements[elements.length - 1] as Issued[]) : [];
  const tailIsRoots = tail.length > 1 || (tail[0] !== undefined && isSelfSigned(tail[0].cert));
  const chain: Issued[] = [leaf];
  const roots: Issued[] = [];
  const addRoot = (c: Issued): void => {
    if (!roots.some((r) => r.cert.raw.equals(c.cert.raw))) roots.push(c);
  };
  for (const [c] of elements.slice(1, tailIsRoots ? -1 : undefined) as [Issued][]) {
    if (isSelfSigned(c.cert)) addRoot(c);
    else chain.push(c);
  }
  // In the order sent: a self-signed certificate in the chain comes before the bundle.
  if (tailIsRoots) tail.forEach(addRoot);

  for (let i = 0; i < chain.length; i++) {
    const child = chain[i] as Issued;
    const parent = chain[i + 1];
    if (parent) {
      if (!signs(parent.cert, child.cert)) {
        throw new CastellanError(
          'chain-invalid',
          `is not signed by cert_chain[${parent.index}] (${parent.cert.subject.replace(/\n/g, ', ')})`,
          { subject: `cert_chain[${child.index}]` },
        );
      }
    } else if (roots.length > 0 && !roots.some((r) => signs(r.cert, child.cert))) {
      throw new CastellanError(
        'chain-invalid',
        `is not signed by any of the ${roots.length} root(s) the response sends`,
        { subject: `cert_chain[${child.index}]` },
      );
    }
  }

  const rootCertPem = roots.length > 0 ? roots.map((r) => r.pem).join('') : fallbackRootPem;
  if (!rootCertPem.includes('-----BEGIN CERTIFICATE-----')) {
    // Never hand a workload an empty trust bundle: keep the files we have instead.
    throw new CastellanError(
      'malformed',
      'the response holds no root certificate and the configured root file could not be read',
      { subject: 'cert_chain' },
    );
  }

  const notBefore = Date.parse(leaf.cert.validFrom);
  const notAfter = Date.parse(leaf.cert.validTo);
  return {
    // As Istio's agent writes it: the leaf, the chain, then the roots.
    certChainPem: [...chain, ...roots].map((c) => c.pem).join(''),
    keyPem,
    rootCertPem,
    notBefore,
    notAfter,
    obtainedAt: Math.min(notAfter, Math.max(notBefore, now ?? notBefore)),
    serialNumber: leaf.cert.serialNumber,
    uris: uriSans(leaf.cert),
  };
}

/** One certificate of a response, with the element it came in. */
interface Issued {
  readonly pem: string;
  readonly cert: X509Certificate;
  readonly index: number;
}

function signs(issuer: X509Certificate, child: X509Certificate): boolean {
  return child.checkIssued(issuer) && child.verify(issuer.publicKey);
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
    // cert-chain.pem holds the leaf, the chain and the roots; root-cert.pem says which are roots.
    const roots = new Set(splitPemCertificates(rootCertPem).map(normalized));
    const chain = splitPemCertificates(certChainPem).filter((p) => !roots.has(normalized(p)));
    return { ...acceptIssuedChain([...chain, rootCertPem], keyPem, rootCertPem), rootCertPem };
  } catch {
    return undefined;
  }
}
