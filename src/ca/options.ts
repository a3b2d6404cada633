import type { CaKeyType } from '../pki/key-type.js';

/**
 * What the CA is and, in local mode, where it comes from. Kubernetes mode reads its material from
 * Secrets instead (src/kube/cacerts-secret-source.ts) and uses only what makes a self-signed
 * root from here (its key type and lifetime), and `caKeyUri` for the `cacerts` Secret's key.
 */
export interface CaOptions {
  /**
   * The SPIFFE trust domain (`--trust-domain`) when the mesh config names none; the mesh config's
   * wins (the composition root holds the one current value).
   */
  readonly trustDomain: string;
  /** Key type of a new self-signed root (in the data dir, or Secret istio-ca-secret). */
  readonly selfSignedKeyType: CaKeyType;
  /** Lifetime of a new (or re-issued) self-signed root: CITADEL_SELF_SIGNED_CA_CERT_TTL. */
  readonly selfSignedRootTtlMs: number;
  /**
   * Local mode's state folder: the self-signed root, the development token issuer's key and the
   * published trust bundle (root-cert.pem).
   */
  readonly dataDir: string;
  /** A plugged-in CA folder (Istio's cacerts layout), followed; undefined = the self-signed root. */
  readonly cacertsDir: string | undefined;
  /** What set cacertsDir (`--cacerts-dir` or `ROOT_CA_DIR`), for errors to name it. */
  readonly cacertsDirSetting?: string | undefined;
  /**
   * The plugged-in CA's key inside a PKCS#11 token (RFC 7512 URI, src/ca/signers/pkcs11-uri.ts;
   * docs/hsm.md) instead of ca-key.pem, unless the set names its own (ca-key.uri). Used by both
   * modes: with the folder here, with the `cacerts` Secret in Kubernetes mode.
   */
  readonly caKeyUri: string | undefined;
  /** How often the plugged-in folder is re-read (mounted Secrets change by symlink swaps). */
  readonly cacertsPollIntervalMs: number;
  /**
   * Whether a plugged-in CA's `ca-crl.pem` is read, checked against renewals and published
   * (istiod's PILOT_ENABLE_CA_CRL, default true). false: the file is ignored, as by istiod.
   */
  readonly enableCaCrl: boolean;
}
