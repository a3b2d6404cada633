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
  readonly permissionDenied: string;
  readonly unavailable: string;
  readonly internal: string;
}

/**
 * What the CA service (CreateCertificate) tells the client when authentication fails, whatever
 * the reason: Istio's words (security/pkg/server/ca/server.go, CreateCertificate).
 */
export const UNAUTHENTICATED_MESSAGE = 'request authenticate failure';

/** What the CA service tells the client about a failure that is ours, not theirs. */
export const INTERNAL_MESSAGE = 'internal error while signing the certificate';

/** `istio.v1.auth.IstioCertificateService/CreateCertificate`. */
export const CA_SERVICE_TEXTS: OpaqueTexts = {
  unauthenticated: UNAUTHENTICATED_MESSAGE,
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

/**
 * The one mapping from a Castellan error kind to a gRPC status. Never UNKNOWN, and never an
 * internal message on the wire: the caller's own faults (a message written for the caller,
 * naming the field) are INVALID_ARGUMENT with that message; anything that is not the caller's
 * fault gets the surface's opaque text. A new ErrorKind does not compile until it is placed.
 */
export function toGrpcFailure(error: unknown, texts: OpaqueTexts): GrpcFailure {
  const e = asCastellanError(error);
  switch (e.kind) {
    case 'malformed':
    case 'unsupported':
    case 'weak-key':
    case 'bad-signature':
    case 'invalid-argument':
    case 'too-large':
      return { code: status.INVALID_ARGUMENT, details: e.message };
    case 'unauthenticated':
      return { code: status.UNAUTHENTICATED, details: texts.unauthenticated };
    case 'permission-denied':
      return { code: status.PERMISSION_DENIED, details: texts.permissionDenied };
    case 'unavailable':
      return { code: status.UNAVAILABLE, details: texts.unavailable };
    // Our CA material, not the caller's request: a broken or expired CA is our fault.
    case 'encrypted-key':
    case 'key-mismatch':
    case 'not-a-ca':
    case 'expired':
    case 'not-yet-valid':
    case 'chain-invalid':
    case 'incomplete-ca':
    case 'internal':
      return { code: status.INTERNAL, details: texts.internal };
    default:
      return unplaced(e.kind, { code: status.INTERNAL, details: texts.internal });
  }
}

/** The same mapping for HTTP answers, kind for kind (see toGrpcFailure). */
export function toHttpFailure(error: unknown, texts: OpaqueTexts): HttpFailure {
  const e = asCastellanError(error);
  switch (e.kind) {
    case 'malformed':
    case 'unsupported':
    case 'weak-key':
    case 'bad-signature':
    case 'invalid-argument':
    case 'too-large':
      return { statusCode: 400, body: `${e.message}\n` };
    case 'unauthenticated':
      return { statusCode: 401, body: `${texts.unauthenticated}\n` };
    case 'permission-denied':
      return { statusCode: 403, body: `${texts.permissionDenied}\n` };
    case 'unavailable':
      return { statusCode: 503, body: `${texts.unavailable}\n` };
    case 'encrypted-key':
    case 'key-mismatch':
    case 'not-a-ca':
    case 'expired':
    case 'not-yet-valid':
    case 'chain-invalid':
    case 'incomplete-ca':
    case 'internal':
      return { statusCode: 500, body: `${texts.internal}\n` };
    default:
      return unplaced(e.kind, { statusCode: 500, body: `${texts.internal}\n` });
  }
}

/**
 * Compile time: `kind` is `never` only when every ErrorKind has a case above. At run time (a
 * kind forged past the type system) the answer is the internal one, never a thrown mapper.
 */
function unplaced<T>(_kind: never, internal: T): T {
  return internal;
}
