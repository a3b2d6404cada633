import type { LeafParams, LeafSigner } from '../leaf-signer.js';
import { caSignatureAlgorithm } from '../profiles.js';
import { signerOf, type SigningKey } from '../signer.js';
import { buildLeafTemplate, encodeCertificate, encodeTbs } from './leaf-template.js';

/**
 * The hot-path LeafSigner: the CA's fixed certificate parts are encoded once (leaf-template.ts)
 * and each request only places its own fields and hands the TBS bytes to the CA's signer (an
 * in-process key signs on libuv's thread pool, a PKCS#11 key inside its token: src/pki/signer.ts).
 *
 * Produces the same bytes as createReferenceLeafSigner for the same LeafParams (ECDSA
 * signatures aside, which are randomised); test/pki/fast/fast-leaf-signer.test.ts holds them
 * together.
 */
export function createFastLeafSigner(issuerCertDer: Uint8Array, issuerKey: SigningKey): LeafSigner {
  const signer = signerOf(issuerKey);
  const template = buildLeafTemplate(issuerCertDer, signer.keyType);
  const algorithm = caSignatureAlgorithm(signer.keyType, signer.description);
  return {
    async sign(params: LeafParams): Promise<Uint8Array> {
      const tbs = encodeTbs(template, params);
      const signature = await signer.sign(tbs, algorithm);
      return encodeCertificate(template, tbs, signature);
    },
  };
}
