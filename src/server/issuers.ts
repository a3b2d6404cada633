import type { Clock } from '../clock.js';
import { issueWorkloadCertificate } from '../ca/issue-workload.js';
import { issueCertificate } from '../pki/issue.js';
import type { LeafIssuer } from './create-certificate.js';
import { inlineCsrChecker, type CheckedCsr, type CsrChecker } from './csr-check-threads.js';
import type { ServingCertificateIssuer } from './serving-certificate.js';

/**
 * Workload issuance as the handler calls it: the hot-path CSR parser (public key and
 * self-signature only; held to the reference parser by a differential fuzz test), inline or on
 * a CsrCheckPool's threads, and src/ca's issuer (the snapshot's LeafSigner, NotAfter clamped).
 */
export function workloadLeafIssuer(
  clock: Clock,
  csrChecker: CsrChecker = inlineCsrChecker,
): LeafIssuer<CheckedCsr> {
  return {
    parseCsr: (pem) => csrChecker.check(pem),
    sign: (snapshot, csr, sans, ttlMs) =>
      issueWorkloadCertificate(snapshot, { csr, sans, ttlMs }, clock),
  };
}

/** The listener's own certificate, in the serving profile (DNS/IP SANs, serverAuth). */
export const servingCertificateIssuer: ServingCertificateIssuer = async (snapshot, request) => {
  const cert = await issueCertificate({
    profile: {
      kind: 'serving',
      sans: [...request.names.dnsNames, ...request.names.ipAddresses],
    },
    publicKey: request.publicKey,
    issuer: { cert: snapshot.bundle.signingCert, key: snapshot.bundle.signer },
    notBefore: request.notBefore,
    notAfter: request.notAfter,
  });
  return cert.toString('pem');
};
