import { status } from '@grpc/grpc-js';
import { asCastellanError, type ErrorKind } from '../errors.js';

/**
 * What the client is told when authentication fails, whatever the reason: the same words as
 * Istio's CA, and nothing that would help a caller probe which check it failed. The precise
 * reason goes to the audit log only.
 */
export const UNAUTHENTICATED_MESSAGE = 'request authenticate failure';

/**
 * What the client is told when an authenticated caller may not have the identity it asked for
 * (ambient mode's impersonation): istiod's words (security/pkg/server/ca/server.go), as opaque.
 */
export const IMPERSONATION_REFUSED_MESSAGE = 'request impersonation authentication failure';

/** What the client is told about a failure that is ours, not theirs. */
export const INTERNAL_MESSAGE = 'internal error while signing the certificate';

export interface GrpcFailure {
  readonly code: status;
  /** Safe to send to the client. */
  readonly details: string;
}

/** The caller's fault, with a message written for the caller: it names the field, not our internals. */
const INVALID_ARGUMENT_KINDS: ReadonlySet<ErrorKind> = new Set<ErrorKind>([
  'malformed',
  'unsupported',
  'weak-key',
  'bad-signature',
  'invalid-argument',
  'too-large',
]);

/**
 * The one mapping from a Castellan error kind to a gRPC status. Never UNKNOWN, and never an
 * internal message on the wire: anything that is not the caller's fault becomes INTERNAL with
 * a generic text.
 */
export function toGrpcFailure(error: unknown): GrpcFailure {
  const e = asCastellanError(error);
  if (INVALID_ARGUMENT_KINDS.has(e.kind)) {
    return { code: status.INVALID_ARGUMENT, details: e.message };
  }
  switch (e.kind) {
    case 'unauthenticated':
      return { code: status.UNAUTHENTICATED, details: UNAUTHENTICATED_MESSAGE };
    case 'impersonation-refused':
      return { code: status.UNAUTHENTICATED, details: IMPERSONATION_REFUSED_MESSAGE };
    case 'permission-denied':
      return { code: status.PERMISSION_DENIED, details: 'permission denied' };
    case 'unavailable':
      return { code: status.UNAVAILABLE, details: 'the CA is not ready to sign certificates' };
    default:
      return { code: status.INTERNAL, details: INTERNAL_MESSAGE };
  }
}
