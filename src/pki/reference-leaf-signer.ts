import type { X509Certificate } from '@peculiar/x509';
import { issueCertificate } from './issue.js';
import type { LeafParams, LeafSigner } from './leaf-signer.js';
import { signerOf, type SigningKey } from './signer.js';

/**
 * The reference LeafSigner: every leaf made with @peculiar/x509's generator in the workload
 * profile of profiles.ts. Clear and slow (~2.4 ms of CPU per leaf); the fast signer must
 * produce the same bytes for the same parameters.
 */
export function createReferenceLeafSigner(
  issuerCert: X509Certificate,
  issuerKey: SigningKey,
): LeafSigner {
  const issuer = { cert: issuerCert, key: signerOf(issuerKey) };
  return {
    async sign(params: LeafParams): Promise<Uint8Array> {
      const cert = await issueCertificate({
        profile: { kind: 'workload', sans: params.sans, commonName: params.commonName },
        publicKey: params.spki,
        issuer,
        serial: params.serial,
        notBefore: params.notBefore,
        notAfter: params.notAfter,
      });
      return new Uint8Array(cert.rawData);
    },
  };
}
