import type { ParsedCsr } from '../pki/csr.js';
import { parseCsrFast } from '../pki/fast/fast-csr.js';

/**
 * A checked CSR as issuance uses it: ParsedCsr without its KeyObject, which stays in the thread
 * that imported it (issuance copies the SubjectPublicKeyInfo bytes, it never needs the key).
 */
export type CheckedCsr = Omit<ParsedCsr, 'publicKey'>;

/**
 * Checks a CSR with the hot-path parser (src/pki/csr.ts rules): on the event loop, or in a
 * CsrCheckPool thread (this module is all that thread loads, besides the parser).
 */
export function checkCsr(pem: string): CheckedCsr {
  const { der, spki, keyType, commonName, requestedSans } = parseCsrFast(pem);
  return { der, spki, keyType, requestedSans, ...(commonName !== undefined ? { commonName } : {}) };
}
