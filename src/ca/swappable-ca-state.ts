import { createFastLeafSigner } from '../pki/fast/fast-leaf-signer.js';
import type { LeafSigner } from '../pki/leaf-signer.js';
import type { CaSnapshot, CaState, KeyCertBundle } from './key-cert-bundle.js';

export type LeafSignerFactory = (bundle: KeyCertBundle) => LeafSigner;

/**
 * The hot path: fixed parts encoded once per CA, signed by the bundle's signer (an in-process
 * key on libuv's thread pool, or an HSM). Byte-identical
 * to the @peculiar/x509 reference signer, src/pki/reference-leaf-signer.ts
 * (test/pki/fast/fast-leaf-signer.test.ts), so it is the default.
 */
export const fastLeafSignerFactory: LeafSignerFactory = (b) =>
  createFastLeafSigner(new Uint8Array(b.signingCert.rawData), b.signer);

/**
 * The CA state the server reads: one snapshot, replaced whole. A request that already holds
 * a snapshot keeps signing with it; the next request sees the new one. Never partially updated.
 */
export class SwappableCaState implements CaState {
  private snapshot: CaSnapshot | undefined;
  private generation = 0;
  private readonly listeners = new Set<(s: CaSnapshot) => void>();
  private readonly leafSignerFactory: LeafSignerFactory;

  constructor(options: { leafSignerFactory?: LeafSignerFactory } = {}) {
    this.leafSignerFactory = options.leafSignerFactory ?? fastLeafSignerFactory;
  }

  current(): CaSnapshot | undefined {
    return this.snapshot;
  }

  /** Installs a verified bundle (build it with buildKeyCertBundle) and notifies listeners. */
  swap(bundle: KeyCertBundle): CaSnapshot {
    const next: CaSnapshot = Object.freeze({
      bundle,
      leafSigner: this.leafSignerFactory(bundle),
      generation: this.generation + 1,
    });
    this.generation = next.generation;
    this.snapshot = next;
    for (const l of [...this.listeners]) l(next);
    return next;
  }

  onChange(listener: (snapshot: CaSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
}
