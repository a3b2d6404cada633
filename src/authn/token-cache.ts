import { hash } from 'node:crypto';
import { systemClock, type Clock } from '../clock.js';
import { CastellanError } from '../errors.js';

export const DEFAULT_TOKEN_CACHE_ENTRIES = 10_000;
export const DEFAULT_TOKEN_CACHE_MAX_AGE_MS = 60_000;

export interface TokenCacheOptions {
  /** Most entries kept (rounded up to even); the least recently used go first. Default 10,000. */
  readonly maxEntries?: number | undefined;
  /** No entry is used longer than this after it was stored. Default 60 s. */
  readonly maxAgeMs?: number | undefined;
  readonly clock?: Clock | undefined;
}

/** Counters for metrics and tests; they only grow (but `size`). */
export interface TokenCacheStats {
  /** Answered from the cache. */
  readonly hits: number;
  /** Answers loaded (verified, reviewed) because none was cached. */
  readonly misses: number;
  /** Answered by joining an identical load already in flight. */
  readonly shared: number;
  /** Entries currently held. */
  readonly size: number;
}

/** How a loaded answer may be kept. */
export interface Keep<V> {
  /** Whether to keep it at all (e.g. only authenticated answers). Default: always. */
  readonly keep?: ((value: V) => boolean) | undefined;
  /** The token's `exp`, ms since the epoch, when known: no entry is used at or after it. */
  readonly tokenExpiryMs: (value: V) => number | undefined;
}

interface Entry<V> {
  readonly value: V;
  readonly expiresAt: number;
}

/**
 * Answers about a token (a TokenReview's, a verified JWT's caller), remembered so that a burst
 * presenting the same token — sidecars restarting together (Istio issue #27945), or one ztunnel
 * asking for every pod of its node — verifies it once:
 *
 * - keyed by SHA-256 of the token and what else the answer depends on: the token itself is never
 *   kept, and a token seen once costs one hash and one map insert;
 * - an entry is used until the earlier of the token's `exp` and `maxAgeMs` after it was stored,
 *   so a revoked token (deleted pod or service account, removed signing key) is refused again
 *   within `maxAgeMs`, and an expired one is never answered from here;
 * - bounded to `maxEntries` (rounded up to even), in two generations of half that (quick-lru's
 *   scheme): a hit in the older one moves the entry to the newer one; when the newer one is full,
 *   the older one is dropped whole. What goes first is the least recently used half, at O(1) per
 *   call: evicting one entry at a time from a JavaScript Map scans its deleted slots from the
 *   front each time, which measured 8 µs per insert once the map was full (docs/performance.md);
 * - identical lookups in flight share one load (single flight), failed or not; only loads that
 *   succeed (and that `keep` accepts) are remembered.
 */
export class TokenCache<V> {
  private readonly maxAgeMs: number;
  private readonly clock: Clock;
  /** Entries used or stored most recently; at most `generationSize`. */
  private recent = new Map<string, Entry<V>>();
  /** The generation before; dropped whole when `recent` fills up. */
  private older = new Map<string, Entry<V>>();
  private readonly generationSize: number;
  private readonly inFlight = new Map<string, Promise<V>>();
  private counts = { hits: 0, misses: 0, shared: 0 };

  /** `what` names the cache in the errors for bad options, e.g. `token review cache`. */
  constructor(what: string, options: TokenCacheOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_TOKEN_CACHE_ENTRIES;
    const maxAgeMs = options.maxAgeMs ?? DEFAULT_TOKEN_CACHE_MAX_AGE_MS;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new CastellanError(
        'invalid-argument',
        `${what} size ${maxEntries} must be a positive integer`,
      );
    }
    if (!(maxAgeMs > 0) || !Number.isFinite(maxAgeMs)) {
      throw new CastellanError(
        'invalid-argument',
        `${what} max age ${maxAgeMs} ms must be positive`,
      );
    }
    this.generationSize = Math.ceil(maxEntries / 2);
    this.maxAgeMs = maxAgeMs;
    this.clock = options.clock ?? systemClock;
  }

  /**
   * The key of a token and what the answer depends on (JSON keeps the parts unambiguous): the
   * SHA-256 digest as a 32-character binary string, never printed. Node's one-shot hash() with
   * that encoding takes 1.4 µs for a 600-byte token where createHash().digest('base64url') takes
   * 3.2 µs (measured here, Node 20.20): it is paid by every token, seen again or not.
   */
  static key(token: string, ...context: unknown[]): string {
    const material = context.length > 0 ? JSON.stringify([token, ...context]) : token;
    return hash('sha256', material, 'binary');
  }

  stats(): TokenCacheStats {
    return { ...this.counts, size: this.recent.size + this.older.size };
  }

  /**
   * The answer for `key`: remembered, or joined while in flight, or loaded by `load` (and then
   * remembered as `how` says). A hit resolves without a turn of the event loop's work.
   */
  lookup(key: string, load: () => Promise<V>, how: Keep<V>): Promise<V> {
    let entry = this.recent.get(key);
    if (!entry) {
      entry = this.older.get(key);
      if (entry) {
        this.older.delete(key);
        if (entry.expiresAt > this.clock.now()) this.store(key, entry);
      }
    }
    if (entry) {
      if (entry.expiresAt > this.clock.now()) {
        this.counts.hits++;
        return Promise.resolve(entry.value);
      }
      this.recent.delete(key);
    }
    const pending = this.inFlight.get(key);
    if (pending) {
      this.counts.shared++;
      return pending;
    }
    this.counts.misses++;
    // One reaction for both outcomes (not then + finally): this is paid by every new token.
    const loading = load().then(
      (value) => {
        this.inFlight.delete(key);
        this.remember(key, value, how);
        return value;
      },
      (e: unknown) => {
        this.inFlight.delete(key);
        throw e;
      },
    );
    this.inFlight.set(key, loading);
    return loading;
  }

  private remember(key: string, value: V, how: Keep<V>): void {
    if (how.keep && !how.keep(value)) return;
    const now = this.clock.now();
    let expiresAt = now + this.maxAgeMs;
    const exp = how.tokenExpiryMs(value);
    if (exp !== undefined) expiresAt = Math.min(expiresAt, exp);
    if (expiresAt <= now) return;
    this.older.delete(key);
    this.store(key, { value, expiresAt });
  }

  /** Into the recent generation; a full one becomes the older, and the older is dropped. */
  private store(key: string, entry: Entry<V>): void {
    if (!this.recent.has(key) && this.recent.size >= this.generationSize) {
      this.older = this.recent;
      this.recent = new Map();
    }
    this.recent.set(key, entry);
  }
}
