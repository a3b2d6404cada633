import { sign, type KeyObject } from 'node:crypto';
import { asCastellanError, CastellanError } from '../errors.js';
import type { CheckedCsr } from '../pki/csr.js';
import { parseCsrFast, parseCsrFastAsync } from '../pki/fast/fast-csr.js';
import {
  buildLeafTemplate,
  encodeCertificate,
  encodeTbs,
  type LeafTemplate,
} from '../pki/fast/leaf-template.js';
import { keyTypeOf } from '../pki/keys.js';
import { toPem } from '../pki/pem.js';
import { caSignatureAlgorithm, type CaSignatureAlgorithm } from '../pki/profiles.js';
import { randomSerial, serialToHex } from '../pki/serial.js';

/**
 * Checks a CSR with the hot-path parser (src/pki/csr.ts rules): on the event loop, or in a
 * CsrCheckPool thread (this module is all that thread loads, besides the parser).
 */
export function checkCsr(pem: string): CheckedCsr {
  return parseCsrFast(pem);
}

/** A CA as the crypto thread holds it: made once per CA snapshot, from what the pool posts. */
export interface ThreadCa {
  readonly template: LeafTemplate;
  readonly key: KeyObject;
  readonly algorithm: CaSignatureAlgorithm;
}

export function threadCa(certDer: Uint8Array, key: KeyObject): ThreadCa {
  const keyType = keyTypeOf(key, 'CA key');
  return {
    template: buildLeafTemplate(certDer, keyType),
    key,
    algorithm: caSignatureAlgorithm(keyType),
  };
}

/** One workload leaf to issue on the crypto thread: the CSR, and what the event loop decided. */
export interface LeafOrder {
  readonly pem: string;
  readonly sans: readonly string[];
  /** The CN the leaf gets when the CSR has one (istiod's dual-use CN; undefined: none fits). */
  readonly dualUseCommonName: string | undefined;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

/** The leaf: its PEM (ending "\n") and serial. */
export interface IssuedOnThread {
  readonly leafPem: string;
  readonly serialHex: string;
}

/** Why an order failed: the CSR (the caller's fault) or the signing (ours). */
export class LeafOrderFailure extends Error {
  constructor(
    readonly stage: 'csr' | 'sign',
    readonly error: CastellanError,
  ) {
    super(error.message);
  }
}

/**
 * Everything issuance computes for one request, in one place: the CSR check (P-256 keys by the
 * native check, src/pki/fast/native-p256.ts, where it was built; src/pki/fast/fast-csr.ts,
 * parseCsrFastAsync), the TBS from
 * the CA's template, the signature, the PEM. ECDSA signs here (≈ 35 µs for P-256: a trip to
 * libuv's pool and back would cost about as much); RSA signs on libuv's pool, whose threads (one
 * per core, bin/castellan.js) sign on every core: an RSA-4096 signature takes milliseconds, and
 * one thread signing them all would cap the CA at one core.
 */
export async function issueLeafOrder(ca: ThreadCa, order: LeafOrder): Promise<IssuedOnThread> {
  let csr: CheckedCsr;
  try {
    csr = await parseCsrFastAsync(order.pem);
  } catch (e) {
    throw new LeafOrderFailure('csr', asCastellanError(e, 'malformed'));
  }
  try {
    const serial = randomSerial();
    const tbs = encodeTbs(ca.template, {
      spki: csr.spki,
      sans: order.sans,
      commonName: csr.commonName !== undefined ? order.dualUseCommonName : undefined,
      serial,
      notBefore: new Date(order.notBeforeMs),
      notAfter: new Date(order.notAfterMs),
    });
    const signature = await signTbs(ca, tbs);
    const leafDer = encodeCertificate(ca.template, tbs, signature);
    return { leafPem: toPem('CERTIFICATE', leafDer), serialHex: serialToHex(serial) };
  } catch (e) {
    throw new LeafOrderFailure('sign', asCastellanError(e));
  }
}

function signTbs(ca: ThreadCa, tbs: Uint8Array): Promise<Uint8Array> | Uint8Array {
  const { algorithm, key } = ca;
  if (algorithm.family === 'ecdsa') return sign(algorithm.hash, tbs, { key, dsaEncoding: 'der' });
  return new Promise((resolve, reject) => {
    sign(algorithm.hash, tbs, key, (err, signature) => {
      if (err) reject(new CastellanError('internal', 'signing failed', { cause: err }));
      else resolve(signature);
    });
  });
}
