import type { Clock } from '../clock.js';
import { issueWorkloadCertificate, workloadValidity } from '../ca/issue-workload.js';
import { issueCertificate } from '../pki/issue.js';
import { dualUseCommonName } from '../pki/profiles.js';
import { CsrRejected, type LeafIssuer } from './create-certificate.js';
import type { CheckedCsr } from '../pki/csr.js';
import { inlineCsrChecker, LeafOrderFailure, type CsrChecker } from './csr-check-threads.js';
import type { ServingCertificateIssuer } from './serving-certificate.js';

/**
 * Workload issuance as the handler calls it: the hot-path CSR parser (public key and
 * self-signature only; held to the reference parser by a differential fuzz test), inline or on
 * a CsrCheckPool's threads, and src/ca's issuer (the snapshot's LeafSigner, NotAfter clamped).
 * With a crypto thread up and the CA key in this process, `issue` does all of it in one hop to
 * the thread, with the same validity and the same CN rule as issueWorkloadCertificate.
 */
export function workloadLeafIssuer(
  clock: Clock,
  csrChecker: CsrChecker = inlineCsrChecker,
): LeafIssuer<CheckedCsr> {
  const issue = csrChecker.issue?.bind(csrChecker);
  return {
    parseCsr: (pem) => csrChecker.check(pem),
    sign: (snapshot, csr, sans, ttlMs) =>
      issueWorkloadCertificate(snapshot, { csr, sans, ttlMs }, clock),
    ...(issue && {
      issue(snapshot, pem, sans, ttlMs) {
        let validity: { notBefore: Date; notAfter: Date };
        try {
          validity = workloadValidity(snapshot, { sans, ttlMs }, clock);
        } catch {
          // The two steps then refuse it, each failure in its order (a bad CSR first).
          return undefined;
        }
        const first = sans[0];
        const sent = issue(snapshot, {
          pem,
          sans,
          dualUseCommonName: first !== undefined ? dualUseCommonName(first) : undefined,
          notBeforeMs: validity.notBefore.getTime(),
          notAfterMs: validity.notAfter.getTime(),
        });
        return sent?.then(
          (issued) => ({
            certChainPem: [issued.leafPem, ...snapshot.bundle.responseChainPem],
            serialHex: issued.serialHex,
            notAfter: validity.notAfter,
          }),
          (e: unknown) => {
            if (e instanceof LeafOrderFailure) {
              throw e.stage === 'csr' ? new CsrRejected(e.error) : e.error;
            }
            throw e;
          },
        );
      },
    }),
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
