/**
 * The seam of the issuance hot path. A LeafSigner is made once per CA snapshot and signs
 * workload leaves in Istio's profile (see profiles.ts). Two implementations exist and must
 * produce the same certificates for the same parameters:
 *  - the reference one, built with @peculiar/x509's generator (clear, slow: ~2.4 ms CPU);
 *  - the fast one, which encodes the fixed parts once per CA and splices in the per-request
 *    fields, signing with node:crypto asynchronously.
 * A differential test holds them together.
 */
export interface LeafParams {
  /** The CSR's SubjectPublicKeyInfo, DER, copied verbatim into the certificate. */
  readonly spki: Uint8Array;
  /**
   * Subject alternative names, in order: `spiffe://…` and other URIs become URI SANs, IP
   * addresses IP SANs, anything else DNS SANs.
   */
  readonly sans: readonly string[];
  /** When the CSR carried a CN, Istio sets CN = first SAN; undefined → empty subject. */
  readonly commonName?: string | undefined;
  /** Positive serial number, big-endian, at least 16 bytes of randomness (no leading zero byte needed). */
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  /** Already clamped to the signing certificate's notAfter by the caller. */
  readonly notAfter: Date;
}

export interface LeafSigner {
  /** Returns the signed certificate, DER. */
  sign(params: LeafParams): Promise<Uint8Array>;
}
