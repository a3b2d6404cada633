import { status } from '@grpc/grpc-js';
import { asCastellanError } from '../errors.js';

/**
 * What one surface tells the client when the reason is not for the client: authentication
 * failures (the reason would help a caller probe which check it failed), refusals, outages and
 * our own faults. The precise reason goes to the logs only. Each surface keeps its own words,
 * so that what its clients see does not change when another surface's wording does.
 */
export interface OpaqueTexts {
  readonly unauthenticated: string;
  /** An authenticated caller that may not have the identity it asked for (ambient mode). */
  readonly impersonationRefused: string;
  readonly permissionDenied: string;
  readonly unavailable: string;
  readonly internal: string;
}

/**
 * What the CA service (CreateCertificate) tells the client when authentication fails, whatever
 * the reason: Istio's words (security/pkg/server/ca/server.go, CreateCertificate).
 */
export const UNAUTHENTICATED_MESSAGE = 'request authenticate failure';

/**
 * What the client is told when an authenticated caller may not have the identity it asked for
 * (ambient mode's impersonation): istiod's words (security/pkg/server/ca/server.go), as opaque.
 */
export const IMPERSONATION_REFUSED_MESSAGE = 'request impersonation authentication failure';

/** What the CA service tells the client about a failure that is ours, not theirs. */
export const INTERNAL_MESSAGE = 'internal error while signing the certificate';

/** `istio.v1.auth.IstioCertificateService/CreateCertificate`. */
export const CA_SERVICE_TEXTS: OpaqueTexts = {
  unauthenticated: UNAUTHENTICATED_MESSAGE,
  impersonationRefused: IMPERSONATION_REFUSED_MESSAGE,
  permissionDenied: 'permission denied',
  unavailable: 'the CA is not ready to sign certificates',
  internal: INTERNAL_MESSAGE,
};

/**
 * Policy bundles, the gRPC Watch and `GET /v1/bundles` alike: the error kind's own name for the
 * refusals, as both paths have always answered.
 */
export const BUNDLE_TEXTS: OpaqueTexts = {
  unauthenticated: 'unauthenticated',
  impersonationRefused: 'unauthenticated',
  permissionDenied: 'permission-denied',
  unavailable: 'unavailable',
  internal: 'internal error',
};

export interface GrpcFailure {
  readonly code: status;
  /** Safe to send to the client. */
  readonly details: string;
}

export interface HttpFailure {
  readonly statusCode: number;
  /** Safe to send to the client: text/plain, one line. */
  readonly body: string;
}

/** Who a failure is for: the four answers every surface gives, by error kind. */
type FailureClass =
  /** The caller's own fault: a message written for the caller, naming the field. */
  | 'invalid'
  | 'unauthenticated'
  | 'impersonation-refused'
  | 'permission-denied'
  | 'unavailable'
  /** Overload or a rate limit: our own words (when to retry), safe for the caller. */
  | 'resource-exhausted'
  /** Ours, not the caller's: opaque on the wire, precise in the logs. */
  | 'internal';

/**
 * The one mapping from a Castellan error kind to what the client is told, for every surface. A
 * new ErrorKind does not compile until it is placed here.
 */
function failureClass(error: unknown): { readonly cls: FailureClass; readonly message: string } {
  const e = asCastellanError(error);
  switch (e.kind) {
    case 'malformed':
    case 'unsupported':
    case 'weak-key':
    case 'bad-signature':
    case 'invalid-argument':
    case 'too-large':
      return { cls: 'invalid', message: e.message };
    case 'unauthenticated':
    case 'impersonation-refused':
    case 'permission-denied':
    case 'unavailable':
    case 'resource-exhausted':
      return { cls: e.kind, message: e.message };
    // Our CA material, not the caller's request: a broken or expired CA is our fault.
    case 'encrypted-key':
    case 'key-mismatch':
    case 'not-a-ca':
    case 'expired':
    case 'not-yet-valid':
    case 'chain-invalid':
    case 'incomplete-ca':
    case 'internal':
      return { cls: 'internal', message: e.message };
    default:
      return unplaced(e.kind, { cls: 'internal', message: e.message });
  }
}

/** Each class on each transport: the gRPC code and the HTTP status. */
const CODES: Readonly<Record<FailureClass, { readonly grpc: status; readonly http: number }>> = {
  invalid: { grpc: status.INVALID_ARGUMENT, http: 400 },
  unauthenticated: { grpc: status.UNAUTHENTICATED, http: 401 },
  'impersonation-refused': { grpc: status.UNAUTHENTICATED, http: 401 },
  'permission-denied': { grpc: status.PERMISSION_DENIED, http: 403 },
  unavailable: { grpc: status.UNAVAILABLE, http: 503 },
  'resource-exhausted': { grpc: status.RESOURCE_EXHAUSTED, http: 429 },
  internal: { grpc: status.INTERNAL, http: 500 },
};

/** What the client may read: the caller's own fault in its words, else the surface's text. */
function safeText(cls: FailureClass, message: string, texts: OpaqueTexts): string {
  switch (cls) {
    case 'invalid':
      return message;
    case 'unauthenticated':
      return texts.unauthenticated;
    case 'impersonation-refused':
      return texts.impersonationRefused;
    case 'permission-denied':
      return texts.permissionDenied;
    case 'unavailable':
      return texts.unavailable;
    case 'resource-exhausted':
      return message;
    case 'internal':
      return texts.internal;
  }
}

/**
 * A Castellan error as a gRPC status. Never UNKNOWN, and never an internal message on the wire:
 * anything that is not the caller's fault gets the surface's opaque text.
 */
export function toGrpcFailure(error: unknown, texts: OpaqueTexts): GrpcFailure {
  const { cls, message } = failureClass(error);
  return { code: CODES[cls].grpc, details: safeText(cls, message, texts) };
}

/** The same answer over HTTP, kind for kind: text/plain, one line. */
export function toHttpFailure(error: unknown, texts: OpaqueTexts): HttpFailure {
  const { cls, message } = failureClass(error);
  return { statusCode: CODES[cls].http, body: `${safeText(cls, message, texts)}\n` };
}

/**
 * Compile time: `kind` is `never` only when every ErrorKind has a case above. At run time (a
 * kind forged past the type system) the answer is the internal one, never a thrown mapper.
 */
function unplaced<T>(_kind: never, internal: T): T {
  return internal;
}
