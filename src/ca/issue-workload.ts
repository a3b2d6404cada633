import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import type { ParsedCsr } from '../pki/csr.js';
import { truncateToSeconds } from '../pki/issue.js';
import { dualUseCommonName } from '../pki/profiles.js';
import { toPem } from '../pki/pem.js';
import { randomSerial, serialToHex } from '../pki/serial.js';
import type { CaSnapshot } from './key-cert-bundle.js';

/**
 * Istio backdates leaves by two minutes to absorb clock skew between nodes; the self-signed
 * root is backdated the same.
 */
export const NOT_BEFORE_BACKDATE_MS = 2 * 60_000;

export interface IssuedWorkload {
  /** Leaf PEM, then the bundle's response chain; each element one PEM ending "\n". */
  readonly certChainPem: string[];
  readonly serialHex: string;
  readonly notAfter: Date;
  readonly leafDer: Uint8Array;
}

/**
 * Signs a workload leaf for an already authenticated identity. `sans` come from the caller's
 * identity, never from the CSR; CN = first SAN only when the CSR had a CN and it fits in 64
 * characters (istiod's DualUseCommonName).
 * NotBefore = now − 2 min; NotAfter = min(now + ttl, signing certificate's NotAfter), in whole
 * seconds.
 */
export async function issueWorkloadCertificate(
  snapshot: CaSnapshot,
  request: {
    csr: Pick<ParsedCsr, 'spki' | 'commonName'>;
    sans: readonly string[];
    ttlMs: number;
  },
  clock: Clock,
): Promise<IssuedWorkload> {
  const { notBefore, notAfter } = workloadValidity(snapshot, request, clock);
  const serial = randomSerial();
  const leafDer = await snapshot.leafSigner.sign({
    spki: request.csr.spki,
    sans: request.sans,
    // istiod's dual-use CN: the first SAN, omitted when over 64 characters (pki/profiles.ts).
    commonName:
      request.csr.commonName !== undefined && request.sans[0] !== undefined
        ? dualUseCommonName(request.sans[0])
        : undefined,
    serial,
    notBefore,
    notAfter,
  });
  return {
    certChainPem: [toPem('CERTIFICATE', leafDer), ...snapshot.bundle.responseChainPem],
    serialHex: serialToHex(serial),
    notAfter,
    leafDer,
  };
}

/**
 * issueWorkloadCertificate's checks and validity period, for issuers that sign elsewhere (the
 * crypto thread, src/server/csr-check-threads.ts): NotBefore = now − 2 min; NotAfter = min(now +
 * ttl, signing certificate's NotAfter), in whole seconds. Throws as issueWorkloadCertificate does.
 */
export function workloadValidity(
  snapshot: CaSnapshot,
  request: { sans: readonly string[]; ttlMs: number },
  clock: Clock,
): { notBefore: Date; notAfter: Date } {
  if (request.sans.length === 0) {
    throw new CastellanError('invalid-argument', 'a workload certificate needs at least one SAN');
  }
  if (!(request.ttlMs > 0)) {
    throw new CastellanError('invalid-argument', `TTL must be positive, got ${request.ttlMs} ms`);
  }
  const now = clock.now();
  const signerNotAfter = snapshot.bundle.signingCert.notAfter.getTime();
  if (now >= signerNotAfter) {
    throw new CastellanError('unavailable', 'the signing certificate has expired');
  }
  return {
    notBefore: truncateToSeconds(new Date(now - NOT_BEFORE_BACKDATE_MS)),
    notAfter: truncateToSeconds(new Date(Math.min(now + request.ttlMs, signerNotAfter))),
  };
}
