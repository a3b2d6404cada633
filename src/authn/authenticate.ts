import { CastellanError, isCastellanError } from '../errors.js';
import type { AuthRequest, AuthenticatorName, Authenticator, Caller } from './authenticator.js';
import { withoutToken } from './bearer.js';

/** Why an authenticator passed (returned null): it found no credential of its kind. */
const NO_CREDENTIAL: Record<AuthenticatorName, string> = {
  'client-certificate': 'no peer certificate',
  jwt: 'no bearer token',
  'token-review': 'no bearer token',
};

/**
 * Runs the authenticators in order (issue 3: client certificate, JWT, TokenReview); the first
 * Caller wins. A refusal does not stop the walk: a token from another issuer fails the offline
 * JWT check and may still pass TokenReview. When none succeeds, throws
 * CastellanError('unauthenticated') whose message joins every reason, e.g.
 * `client-certificate: no peer certificate; jwt: token expired at …; token-review: …` — for the
 * log; the client gets one opaque message.
 */
export async function authenticateCaller(
  authenticators: readonly Authenticator[],
  request: AuthRequest,
): Promise<Caller> {
  const reasons: string[] = [];
  for (const authenticator of authenticators) {
    try {
      const caller = await authenticator.authenticate(request);
      if (caller) return caller;
      reasons.push(`${authenticator.name}: ${NO_CREDENTIAL[authenticator.name]}`);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      // A CastellanError of another kind, or a plain Error, is a bug or an outage in that
      // authenticator; it still only means "not authenticated by this one".
      const prefix = isCastellanError(e, 'unauthenticated') ? '' : 'internal error: ';
      reasons.push(`${authenticator.name}: ${prefix}${message}`);
    }
  }
  let message = reasons.length > 0 ? reasons.join('; ') : 'no authenticator configured';
  // Defence in depth: whatever an authenticator wrote, the credential does not leave here.
  for (const value of request.metadata['authorization'] ?? []) {
    for (const part of value.split(/\s+/)) message = withoutToken(message, part);
  }
  throw new CastellanError('unauthenticated', message);
}
