import { decodeJwt } from 'jose';
import type { Clock } from '../clock.js';
import { TokenCache, type TokenCacheStats } from './token-cache.js';
import type { TokenReviewResult, TokenReviewer } from './token-review-authenticator.js';

export interface CachingTokenReviewerOptions {
  /** Most entries kept; the least recently used goes first. Default 10,000. */
  readonly maxEntries?: number | undefined;
  /** No entry is used longer than this after its review. Default 60 s. */
  readonly maxAgeMs?: number | undefined;
  readonly clock?: Clock | undefined;
}

/**
 * A TokenReviewer that remembers successful reviews, so a burst of sidecars presenting the same
 * tokens does not throttle the API server (Istio issue #27945). The rules are TokenCache's:
 *
 * - keyed by SHA-256 of token, audiences (as a set) and cluster: the token itself is never kept;
 * - an entry expires at the earlier of the token's `exp` (read without verification — only to
 *   bound the lifetime; the API server did the verifying) and `maxAgeMs` after the review, so a
 *   revoked token (deleted pod or service account) is refused again within `maxAgeMs`;
 * - only authenticated results are cached. Refusals and errors are not: caching them would
 *   make a transient API failure or a token the server has not yet seen stick for a while,
 *   and a client with a bad token gets nothing from retrying beyond its own UNAUTHENTICATED;
 * - concurrent identical reviews share one request (single flight), cached or not.
 */
export class CachingTokenReviewer implements TokenReviewer {
  private readonly cache: TokenCache<TokenReviewResult>;

  constructor(
    private readonly inner: TokenReviewer,
    options: CachingTokenReviewerOptions = {},
  ) {
    this.cache = new TokenCache('token review cache', options);
  }

  /** Hits, reviews sent (misses), reviews joined (shared), entries held. */
  stats(): TokenCacheStats {
    return this.cache.stats();
  }

  review(
    token: string,
    audiences: readonly string[],
    clusterId?: string,
  ): Promise<TokenReviewResult> {
    // Sorted audiences, because the review depends on the set.
    const key = TokenCache.key(token, [...audiences].sort(), clusterId ?? null);
    return this.cache.lookup(key, () => this.inner.review(token, audiences, clusterId), {
      keep: (result) => result.authenticated === true && !result.error,
      tokenExpiryMs: () => tokenExpiryMs(token),
    });
  }
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
