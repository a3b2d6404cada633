import { X509Certificate as NodeX509 } from 'node:crypto';
import {
  BasicConstraintsExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  type X509Certificate,
} from '@peculiar/x509';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';

/** Names a certificate in error messages. */
function label(cert: X509Certificate): string {
  return cert.subject === '' ? `certificate ${cert.serialNumber}` : `"${cert.subject}"`;
}

/** Whether `cert`'s signature verifies with `issuer`'s public key (node:crypto, synchronous). */
export function isSignedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return new NodeX509(Buffer.from(cert.rawData)).verify(
      new NodeX509(Buffer.from(issuer.rawData)).publicKey,
    );
  } catch {
    return false;
  }
}

/** Refuses a certificate outside its validity window at `clock.now()`. */
export function checkValidity(cert: X509Certificate, clock: Clock, subject?: string): void {
  const now = clock.now();
  const opts = subject ? { subject } : {};
  if (now > cert.notAfter.getTime()) {
    throw new CastellanError(
      'expired',
      `${label(cert)} expired on ${cert.notAfter.toISOString()}`,
      opts,
    );
  }
  if (now < cert.notBefore.getTime()) {
    throw new CastellanError(
      'not-yet-valid',
      `${label(cert)} is not valid before ${cert.notBefore.toISOString()}`,
      opts,
    );
  }
}

/**
 * Refuses a certificate that may not sign certificates: basicConstraints must say CA:TRUE
 * (critical or not: Istio's 2018 sample CA marks it non-critical), and a keyUsage, when
 * present, must include keyCertSign. Returns the path length constraint, if any.
 */
export function checkIsCa(cert: X509Certificate, subject?: string): number | undefined {
  const opts = subject ? { subject } : {};
  const bc = cert.getExtension(BasicConstraintsExtension);
  if (!bc || !bc.ca) {
    throw new CastellanError(
      'not-a-ca',
      `${label(cert)} is not a CA certificate (no basicConstraints CA:TRUE)`,
      opts,
    );
  }
  const ku = cert.getExtension(KeyUsagesExtension);
  if (ku && (ku.usages & KeyUsageFlags.keyCertSign) === 0) {
    throw new CastellanError('not-a-ca', `${label(cert)} has a keyUsage without keyCertSign`, opts);
  }
  return bc.pathLength;
}

/**
 * Verifies a chain we hold: `chain[0]` is the certificate of interest, each next certificate
 * issued it, and the last one is issued by (or is) one of `roots`. Checks, for every link:
 * issuer name, signature, validity at `clock`, CA flags and keyCertSign on every issuer, and
 * path length constraints (with `firstIsCa`, chain[0] counts as an intermediate). Returns the root the chain ends at.
 * Errors: `bad-signature`, `expired`, `not-yet-valid`, `not-a-ca`, `chain-invalid`.
 */
export function verifyChain(
  chain: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  clock: Clock,
  options: { subject?: string; firstIsCa?: boolean } = {},
): X509Certificate {
  const { subject } = options;
  // With firstIsCa, chain[0] is itself a CA that will sign leaves: it counts against the
  // path length constraints above it.
  const extra = options.firstIsCa ? 1 : 0;
  const opts = subject ? { subject } : {};
  if (chain.length === 0) throw new CastellanError('chain-invalid', 'empty chain', opts);
  for (const cert of chain) checkValidity(cert, clock, subject);
  for (let i = 0; i + 1 < chain.length; i++) {
    const cert = chain[i] as X509Certificate;
    const issuer = chain[i + 1] as X509Certificate;
    if (cert.issuer !== issuer.subject) {
      throw new CastellanError(
        'chain-invalid',
        `${label(cert)} is issued by "${cert.issuer}", but the next certificate in the chain is ${label(issuer)}`,
        opts,
      );
    }
    const pathLength = checkIsCa(issuer, subject);
    // Intermediate CA certificates below `issuer` (excluding the leaf at index 0).
    const below = i + extra;
    if (pathLength !== undefined && below > pathLength) {
      throw new CastellanError(
        'chain-invalid',
        `${label(issuer)} allows a path length of ${pathLength}, found ${below}`,
        opts,
      );
    }
    if (!isSignedBy(cert, issuer)) {
      throw new CastellanError(
        'bad-signature',
        `the signature of ${label(cert)} does not verify with ${label(issuer)}'s key`,
        opts,
      );
    }
  }
  const top = chain[chain.length - 1] as X509Certificate;
  // The top of the chain may be a root itself (a root in cert-chain.pem, or a self-signed CA).
  const same = roots.find((r) => Buffer.from(r.rawData).equals(Buffer.from(top.rawData)));
  if (same) return same;
  const candidates = roots.filter((r) => r.subject === top.issuer);
  for (const root of candidates) {
    if (!isSignedBy(top, root)) continue;
    checkValidity(root, clock, subject);
    const pathLength = checkIsCa(root, subject);
    const below = chain.length - 1 + extra;
    if (pathLength !== undefined && below > pathLength) {
      throw new CastellanError(
        'chain-invalid',
        `${label(root)} allows a path length of ${pathLength}, found ${below}`,
        opts,
      );
    }
    return root;
  }
  throw new CastellanError(
    candidates.length > 0 ? 'bad-signature' : 'chain-invalid',
    candidates.length > 0
      ? `the signature of ${label(top)} does not verify with the root's key`
      : `${label(top)} (issued by "${top.issuer}") does not lead to any of the trusted roots`,
    opts,
  );
}
