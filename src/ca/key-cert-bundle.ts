import type { X509Certificate } from '@peculiar/x509';
import type { CaCrl } from '../pki/crl.js';
import type { KeyType } from '../pki/key-type.js';
import type { LeafSigner } from '../pki/leaf-signer.js';
import type { CaSigner } from '../pki/signer.js';

/**
 * The CA's material: an immutable snapshot, built only after every check passed (key matches
 * certificate, certificate is a CA, chain reaches a root), then swapped in one step.
 */
export interface KeyCertBundle {
  readonly signingCert: X509Certificate;
  /**
   * Holds the signing certificate's private key and signs with it: a key in this process, or
   * in a PKCS#11 token (src/ca/signers/). Everything this CA signs goes through it.
   */
  readonly signer: CaSigner;
  readonly signingKeyType: KeyType;
  /** From the signing certificate up to, not including, the root. Starts with signingCert. */
  readonly certChain: readonly X509Certificate[];
  /** One or more roots, deduplicated. */
  readonly roots: readonly X509Certificate[];
  /**
   * What follows the leaf in a CreateCertificate response, laid out as istiod sends it: each
   * certificate of the chain one per element, then ALL roots as one last element (rootBundlePem:
   * the union during a root change); a root already in the chain is not sent twice. PEM, each
   * element ending "\n".
   */
  readonly responseChainPem: readonly string[];
  /** The trust bundle clients need (`root-cert.pem`): the roots, concatenated PEM. */
  readonly rootBundlePem: string;
  /** Where it came from, for logs and metrics: e.g. `self-signed:/data`, `cacerts-dir:/etc/cacerts`. */
  readonly source: string;
  /**
   * The plugged-in `ca-crl.pem`, verified against this chain (pki/crl.ts: verifyCaCrl), when
   * one was given. `expired` when its nextUpdate had passed at load: still published.
   */
  readonly crl?: CaCrl | undefined;
}

/** A CA snapshot ready to sign: the verified bundle plus the per-CA signer built from it. */
export interface CaSnapshot {
  readonly bundle: KeyCertBundle;
  readonly leafSigner: LeafSigner;
  /** Increases by one with each swap; lets caches (serving certificate, templates) follow. */
  readonly generation: number;
}

/** A provider of the current CA snapshot. Sources (files, secret, self-signed) feed one. */
export interface CaState {
  /** The current snapshot, or undefined while no CA is loaded yet. */
  current(): CaSnapshot | undefined;
  /** Called after each swap with the new snapshot. Returns an unsubscribe function. */
  onChange(listener: (snapshot: CaSnapshot) => void): () => void;
}
