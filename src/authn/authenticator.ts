/**
 * Authentication, as in Istio's security/pkg: an ordered list of Authenticators; the first
 * that succeeds names the Caller. The identity in a certificate always comes from the Caller,
 * never from the CSR.
 */
export type AuthenticatorName = 'client-certificate' | 'jwt' | 'token-review';

export interface Caller {
  readonly authenticator: AuthenticatorName;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** What the credential named: a token `sub`/username or a certificate's SPIFFE URI. For the audit log. */
  readonly subject: string;
  /** From bound service account tokens, when present. */
  readonly podName?: string | undefined;
  readonly podUid?: string | undefined;
}

/** What an authenticator may look at: transport facts, never the CSR. */
export interface AuthRequest {
  /** gRPC metadata / HTTP headers, names lowercased, values as sent. */
  readonly metadata: Readonly<Record<string, readonly string[]>>;
  /** The TLS peer's verified-or-not certificate chain, DER, leaf first; empty without one. */
  readonly peerCertificates: readonly Uint8Array[];
  /** `ip:port` of the peer, for logs. */
  readonly peerAddress: string;
}

export interface Authenticator {
  readonly name: AuthenticatorName;
  /**
   * Resolves to the Caller, or to null when the request carries no credential of this kind
   * (so the next authenticator is tried). Rejects with CastellanError('unauthenticated', reason)
   * when a credential of this kind is present but not valid; the reason is logged, never sent.
   */
  authenticate(request: AuthRequest): Promise<Caller | null>;
}
