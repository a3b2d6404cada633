/** The key types Castellan makes, signs with, or accepts in CSRs. */
export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096' | 'ed25519';

/**
 * The key type of a CSR's public key: any KeyType, or RSA of another modulus size in the range
 * CSRs accept (see csrKeyTypeOf in keys.ts), e.g. `rsa-8192`.
 */
export type CsrKeyType = KeyType | `rsa-${number}`;

/** Key types a CA may sign with (Istio's tools make RSA; we add ECDSA). */
export const CA_KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'] as const;
export type CaKeyType = (typeof CA_KEY_TYPES)[number];

export function isCaKeyType(value: string): value is CaKeyType {
  return (CA_KEY_TYPES as readonly string[]).includes(value);
}
