import type { ErrorKind } from '../errors.js';

/**
 * When to renew and when to retry: pure functions of the certificate's validity, the error,
 * the attempt number and a random source, so tests pin every branch without sleeping.
 */
export interface RenewalPolicy {
  /**
   * Renew when this fraction of the lifetime is left (Istio's SECRET_GRACE_PERIOD_RATIO):
   * 0.5 renews at half-life; 0.1 six minutes before a one-hour certificate expires.
   */
  readonly graceRatio: number;
  /** Random spread of graceRatio, ± (Istio: SECRET_GRACE_PERIOD_RATIO_JITTER, 0.01). */
  readonly graceRatioJitter: number;
  /** First retry delay after a retriable failure (UNAVAILABLE, INTERNAL); doubles each time. */
  readonly retryInitialMs: number;
  /** Ceiling of the retry delay. */
  readonly retryMaxMs: number;
  /**
   * Delay after a failure retrying cannot fix by itself (UNAUTHENTICATED, INVALID_ARGUMENT):
   * long enough not to hammer the CA or flood the log, short enough to pick up a fixed token.
   */
  readonly nonRetriableBackoffMs: number;
}

export const DEFAULT_RENEWAL_POLICY: RenewalPolicy = {
  graceRatio: 0.5,
  graceRatioJitter: 0.01,
  retryInitialMs: 1_000,
  retryMaxMs: 60_000,
  nonRetriableBackoffMs: 5 * 60_000,
};

/** A random source in [0, 1), injected (Math.random in production). */
export type Random = () => number;

export interface Validity {
  readonly notBefore: number;
  readonly notAfter: number;
}

/** Errors a later attempt may well not see: the CA restarting, overloaded, or not ready. */
export function isRetriable(kind: ErrorKind): boolean {
  return kind === 'unavailable' || kind === 'internal';
}

/**
 * The instant (ms since epoch) to renew a certificate: when graceRatio ± jitter of its
 * lifetime is left, as Istio's agent computes it. Clamped to the validity window.
 */
export function renewalTime(validity: Validity, policy: RenewalPolicy, random: Random): number {
  const lifetime = validity.notAfter - validity.notBefore;
  const spread = (random() * 2 - 1) * policy.graceRatioJitter;
  const ratio = Math.min(1, Math.max(0, policy.graceRatio + spread));
  return Math.max(validity.notBefore, validity.notAfter - ratio * lifetime);
}

/**
 * The delay before the next attempt after `failures` consecutive failures (1 = the first),
 * the last of kind `kind`. Retriable: exponential with "equal jitter" (between half and all
 * of the doubled delay, so a fleet that lost its CA together does not come back together).
 * While a certificate is still valid, the delay never exceeds half of what is left of it,
 * so the agent keeps trying before expiry even with long ceilings. Non-retriable: the long
 * fixed backoff, ±10 %.
 */
export function retryDelay(
  kind: ErrorKind,
  failures: number,
  policy: RenewalPolicy,
  random: Random,
  now: number,
  current?: Validity,
): number {
  if (!isRetriable(kind)) {
    return policy.nonRetriableBackoffMs * (0.9 + 0.2 * random());
  }
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  const ceiling = Math.min(policy.retryMaxMs, policy.retryInitialMs * 2 ** exponent);
  let delay = ceiling / 2 + (random() * ceiling) / 2;
  if (current && current.notAfter > now) {
    delay = Math.min(delay, Math.max(policy.retryInitialMs, (current.notAfter - now) / 2));
  }
  return delay;
}
