import { CastellanError, isCastellanError } from '../errors.js';
import { makeSpiffeId } from '../pki/spiffe.js';

/** The namespace and name a Kubernetes service account username names. */
export interface ServiceAccountRef {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/**
 * makeSpiffeId checks namespace and service account names the way SPIFFE IDs need them; the
 * trust domain plays no part in a token's subject, so any valid one serves for the check.
 */
const ANY_TRUST_DOMAIN = 'cluster.local';

/**
 * Parses `system:serviceaccount:<namespace>:<name>` — the JWT `sub` of service account tokens
 * and the TokenReview username — as Istio does: exactly four colon-separated parts, then each
 * name validated so it can become a SPIFFE ID. Anything else is CastellanError('unauthenticated').
 * `what` names the field in the message (e.g. `sub`, `username`).
 */
export function parseServiceAccountSubject(subject: string, what: string): ServiceAccountRef {
  const parts = subject.split(':');
  if (parts.length !== 4) {
    throw new CastellanError(
      'unauthenticated',
      `${what} "${subject}" is not system:serviceaccount:<namespace>:<name> (${parts.length} parts, 4 expected)`,
    );
  }
  if (parts[0] !== 'system' || parts[1] !== 'serviceaccount') {
    throw new CastellanError(
      'unauthenticated',
      `${what} "${subject}" is not a service account (expected the prefix system:serviceaccount:)`,
    );
  }
  try {
    const id = makeSpiffeId(ANY_TRUST_DOMAIN, parts[2] as string, parts[3] as string);
    return { namespace: id.namespace, serviceAccount: id.serviceAccount };
  } catch (e) {
    if (isCastellanError(e)) {
      throw new CastellanError('unauthenticated', `${what} "${subject}": ${e.message}`);
    }
    throw e;
  }
}
