// fast-jwt's check of a token (signature, issuer, audience, required claims, claim types), made
// one way for the event loop (JwtVerifier, jwt-verify.ts) and for the crypto thread
// (src/server/csr-check-thread.ts), so both refuse alike. Only fast-jwt is imported: the thread
// loads this module and not jose.
import { createVerifier, TokenError } from 'fast-jwt';
import type { JWTPayload } from 'jose';

/** fast-jwt's synchronous verifier: the payload, or a TokenError. */
export type Verifier = (token: string) => JWTPayload;

/** One fast-jwt check (signature and claims but times) to run elsewhere: plain data. */
export interface OffloadedJwt {
  readonly token: string;
  /** The verification key, SPKI PEM. */
  readonly keyPem: string;
  readonly alg: string;
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly requiredClaims: readonly string[];
}

/** Its outcome: the payload, or fast-jwt's refusal (a TokenError's code and message). */
export type OffloadedJwtResult =
  | { readonly ok: true; readonly payload: JWTPayload }
  | {
      readonly ok: false;
      readonly tokenError: boolean;
      readonly code?: string | undefined;
      readonly message: string;
    };

/**
 * Where the signature check of a token can run besides the event loop (the crypto thread,
 * src/server/csr-check-threads.ts). `verifyJwt` answers undefined when it cannot take the check
 * now (no thread up); the verifier then checks inline.
 */
export interface JwtOffload {
  verifyJwt(check: OffloadedJwt): Promise<OffloadedJwtResult> | undefined;
}

/**
 * fast-jwt's verifier for one key and algorithm, with the checks JwtVerifier relies on: made
 * the same way inline and on the crypto thread, so both refuse alike.
 */
export function makeFastJwtVerifier(check: Omit<OffloadedJwt, 'token'>): Verifier {
  return createVerifier({
    key: check.keyPem,
    algorithms: [check.alg as never],
    allowedIss: check.issuer,
    allowedAud: [...check.audiences],
    requiredClaims: [...check.requiredClaims],
    // Times are checked in checkTimes, on the injected clock.
    ignoreExpiration: true,
    ignoreNotBefore: true,
    cache: false,
  }) as Verifier;
}

/**
 * Runs an offloaded check (on the crypto thread), keeping the verifiers it made (making one
 * parses the key, ≈ 120 µs): at most `max` of them, the oldest dropped first.
 */
export function runOffloadedJwt(
  check: OffloadedJwt,
  verifiers: Map<string, Verifier>,
  max = 64,
): OffloadedJwtResult {
  const { token, ...rest } = check;
  const key = JSON.stringify(rest);
  let verifier = verifiers.get(key);
  try {
    if (!verifier) {
      verifier = makeFastJwtVerifier(rest);
      if (verifiers.size >= max) verifiers.delete(verifiers.keys().next().value as string);
      verifiers.set(key, verifier);
    }
    return { ok: true, payload: verifier(token) };
  } catch (e) {
    if (e instanceof TokenError) {
      return { ok: false, tokenError: true, code: e.code, message: e.message };
    }
    return { ok: false, tokenError: false, message: e instanceof Error ? e.message : String(e) };
  }
}
