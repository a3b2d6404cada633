import { sign, type KeyObject } from 'node:crypto';
import { CastellanError } from '../../errors.js';
import type { LeafParams, LeafSigner } from '../leaf-signer.js';
import {
  buildLeafTemplate,
  encodeCertificate,
  encodeTbs,
  type LeafTemplate,
} from './leaf-template.js';

/**
 * The hot-path LeafSigner: the CA's fixed certificate parts are encoded once (leaf-template.ts)
 * and each request only places its own fields and signs. Signing goes through node:crypto with a
 * callback, so it runs on libuv's thread pool (both cores) instead of the event loop, and the
 * KeyObject given here is the one parsed once per CA — never re-read per request.
 *
 * Produces the same bytes as createReferenceLeafSigner for the same LeafParams (ECDSA
 * signatures aside, which are randomised); test/pki/fast/fast-leaf-signer.test.ts holds them
 * together.
 */
export function createFastLeafSigner(issuerCertDer: Uint8Array, issuerKey: KeyObject): LeafSigner {
  const template = buildLeafTemplate(issuerCertDer, issuerKey);
  const key = template.isEcdsa ? { key: issuerKey, dsaEncoding: 'der' as const } : issuerKey;
  return {
    async sign(params: LeafParams): Promise<Uint8Array> {
      const tbs = encodeTbs(template, params);
      const signature = await signAsync(template, tbs, key);
      return encodeCertificate(template, tbs, signature);
    },
  };
}

function signAsync(
  template: LeafTemplate,
  tbs: Uint8Array,
  key: KeyObject | { key: KeyObject; dsaEncoding: 'der' },
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    sign(template.digest, tbs, key, (err, signature) => {
      if (err)
        reject(new CastellanError('internal', 'signing the certificate failed', { cause: err }));
      else resolve(signature);
    });
  });
}
