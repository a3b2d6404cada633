/**
 * Every failure Castellan reports carries a kind. Callers branch on the kind, never on the
 * message; `src/server/status-map.ts` is the one place that maps kinds to gRPC and HTTP statuses.
 */
export type ErrorKind =
  /** Not parseable: garbage PEM/DER, truncated input, wrong PEM label. */
  | 'malformed'
  /** Well-formed but of an algorithm or shape we do not support (e.g. DSA keys, P-521). */
  | 'unsupported'
  /** A private key protected by a passphrase. */
  | 'encrypted-key'
  /** A key too small to be trusted (RSA < 2048). */
  | 'weak-key'
  /** A signature that does not verify (CSR proof of possession, certificate in a chain). */
  | 'bad-signature'
  /** A private key that does not belong to the certificate it is paired with. */
  | 'key-mismatch'
  /** A certificate used as an issuer that is not a CA (no CA:TRUE, no keyCertSign). */
  | 'not-a-ca'
  /** A certificate outside its validity window. */
  | 'expired'
  | 'not-yet-valid'
  /** A chain that does not lead to one of the trusted roots, or breaks a path length. */
  | 'chain-invalid'
  /** A plugged-in CA folder or secret that holds only part of a usable set. */
  | 'incomplete-ca'
  /** A request or flag value out of range (TTL above the maximum, bad duration, bad SPIFFE ID). */
  | 'invalid-argument'
  /** Input larger than we accept. */
  | 'too-large'
  /** The caller could not be authenticated. The message is for logs, never for the client. */
  | 'unauthenticated'
  /**
   * An authenticated caller asked for another identity (ambient mode's ImpersonatedIdentity) and
   * was not allowed it. A failed authentication as istiod counts it; the message is for logs.
   */
  | 'impersonation-refused'
  /** The caller is authenticated but not allowed. */
  | 'permission-denied'
  /** The CA has no usable signing material yet. */
  | 'unavailable'
  /**
   * Admission control refused the call (src/server/admission.ts): too many in progress, or the
   * caller is over its rate limit. Worth retrying later; the message says when.
   */
  | 'resource-exhausted'
  /** Anything else: a bug or an environment failure. */
  | 'internal';

export class CastellanError extends Error {
  override readonly name = 'CastellanError';
  readonly kind: ErrorKind;
  /** The file, secret key or field the error is about, when there is one. */
  readonly subject: string | undefined;
  /** The message without its subject (`message` is `subject: detail` when there is one). */
  readonly detail: string;

  constructor(
    kind: ErrorKind,
    message: string,
    options: { subject?: string; cause?: unknown } = {},
  ) {
    super(options.subject ? `${options.subject}: ${message}` : message, { cause: options.cause });
    this.kind = kind;
    this.subject = options.subject;
    this.detail = message;
  }
}

export function isCastellanError(e: unknown, kind?: ErrorKind): e is CastellanError {
  return e instanceof CastellanError && (kind === undefined || e.kind === kind);
}

/** Wraps anything thrown into a CastellanError, keeping ours as they are. */
export function asCastellanError(e: unknown, fallback: ErrorKind = 'internal'): CastellanError {
  if (e instanceof CastellanError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new CastellanError(fallback, message, { cause: e });
}
