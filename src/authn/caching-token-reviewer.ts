import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { CastellanError } from '../errors.js';
import { systemClock, type Clock } from '../clock.js';
import type { TokenReviewResult, TokenReviewer } from './token-review.js';

export const DEFAULT_REVIEW_CACHE_ENTRIES = 10_000;
export const DEFAULT_REVIEW_CACHE_MAX_AGE_MS = 60_000;

export interface CachingTokenReviewerOptions {
  /** Most entries kept; the least recently used goes first. Default 10,000. */
  readonly maxEntries?: number | undefined;
  /** No entry is used longer than this after its review. Default 60 s. */
  readonly maxAgeMs?: number | undefined;
  readonly clock?: Clock | undefined;
}

/** Counters for metrics; they only grow. */
export interface TokenReviewCacheStats {
  /** Answered from the cache. */
  readonly hits: number;
  /** Reviews sent to the inner reviewer (the API server). */
  readonly misses: number;
  /** Answered by joining an identical review already in flight. */
  readonly shared: number;
  /** Entries currently held. */
  readonly size: number;
}

interface Entry {
  readonly result: TokenReviewResult;
  readonly expiresAt: number;
}

/**
 * A TokenReviewer that remembers successful reviews, so a burst of sidecars presenting the same
 * tokens does not throttle the API server (Istio issue #27945).
 *
 * - Keyed by SHA-256 of token, audiences and cluster: the token itself is never kept.
 * - An entry expires at the earlier of the token's `exp` (read without verification — only to
 *   bound the lifetime; the API server did the verifying) and `maxAgeMs` after the review, so a
 *   revoked token (deleted pod or service account) is refused again within `maxAgeMs`.
 * - Only authenticated results are cached. Refusals and errors are not: caching them would
 *   make a transient API failure or a token the server has not yet seen stick for a while,
 *   and a client with a bad token gets nothing from retrying beyond its own UNAUTHENTICATED.
 * - Concurrent identical reviews share one request (single flight), cached or not.
 */
export class CachingTokenReviewer implements TokenReviewer {
  private readonly inner: TokenReviewer;
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;
  private readonly clock: Clock;
  /** Map iteration order is insertion order: re-inserting on a hit makes it an LRU. */
  private readonly entries = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<TokenReviewResult>>();
  private counts = { hits: 0, misses: 0, shared: 0 };

  constructor(inner: TokenReviewer, options: CachingTokenReviewerOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_REVIEW_CACHE_ENTRIES;
    const maxAgeMs = options.maxAgeMs ?? DEFAULT_REVIEW_CACHE_MAX_AGE_MS;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new CastellanError(
        'invalid-argument',
        `token review cache size ${maxEntries} must be a positive integer`,
      );
    }
    if (!(maxAgeMs > 0) || !Number.isFinite(maxAgeMs)) {
      throw new CastellanError(
        'invalid-argument',
        `token review cache max age ${maxAgeMs} ms must be positive`,
      );
    }
    this.inner = inner;
    this.maxEntries = maxEntries;
    this.maxAgeMs = maxAgeMs;
    this.clock = options.clock ?? systemClock;
  }

  stats(): TokenReviewCacheStats {
    return { ...this.counts, size: this.entries.size };
  }

  review(
    token: string,
    audiences: readonly string[],
    clusterId?: string,
  ): Promise<TokenReviewResult> {
    const key = cacheKey(token, audiences, clusterId);
    const now = this.clock.now();
    const entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
      if (entry.expiresAt > now) {
        this.entries.set(key, entry);
        this.counts.hits++;
        return Promise.resolve(entry.result);
      }
    }
    const pending = this.inFlight.get(key);
    if (pending) {
      this.counts.shared++;
      return pending;
    }
    this.counts.misses++;
    const review = this.inner
      .review(token, audiences, clusterId)
      .then((result) => {
        this.remember(key, token, result);
        return result;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, review);
    return review;
  }

  private remember(key: string, token: string, result: TokenReviewResult): void {
    if (result.authenticated !== true || result.error) return;
    const now = this.clock.now();
    let expiresAt = now + this.maxAgeMs;
    const exp = tokenExpiryMs(token);
    if (exp !== undefined) expiresAt = Math.min(expiresAt, exp);
    if (expiresAt <= now) return;
    this.entries.delete(key);
    this.entries.set(key, { result, expiresAt });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }
}

function cacheKey(
  token: string,
  audiences: readonly string[],
  clusterId: string | undefined,
): string {
  // JSON keeps the parts unambiguous; sorted audiences, because the review depends on the set.
  const material = JSON.stringify([token, [...audiences].sort(), clusterId ?? null]);
  return createHash('sha256').update(material).digest('base64url');
}

/** The token's `exp` in ms, when it is a JWT that has one; undefined otherwise. */
function tokenExpiryMs(token: string): number | undefined {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
