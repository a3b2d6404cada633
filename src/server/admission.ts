// Admission control for CreateCertificate (issue 15): Istio's CA was OOM-killed by a burst of
// 1,000 simultaneous requests (istio/istio#35046); istio-csr stalled a cluster when 30
// deployments restarted at once (cert-manager/istio-csr#217). Here a bounded number of calls is
// in progress, a bounded number waits, and everything beyond is answered at once with
// RESOURCE_EXHAUSTED, which both of Istio's clients retry with backoff:
// - pilot-agent: pkg/security/retry.go, CARetryOptions (the interceptor its citadel CA client
//   dials with): up to 5 retries on Canceled, DeadlineExceeded, ResourceExhausted, Aborted,
//   Internal and Unavailable, exponential backoff from 100 ms with 10% jitter
//   (go-grpc-middleware's retry interceptor, which reads no server hint);
// - ztunnel: src/identity/manager.rs, Worker::run: any error of fetch_certificate (whatever the
//   status) is retried with a per-identity exponential backoff (1 s, ×2, ±20%, at most 150 s).
// Pure: no timers; time comes from the injected Clock.
import { FifoRing, type RingItem } from './fifo-ring.js';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';

/** A token bucket's budget: `perSecond` tokens refill continuously, up to `burst`. */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

export interface AdmissionOptions {
  /** Calls in progress (authentication to signature) at most. */
  readonly maxInflight: number;
  /** Calls waiting for a slot at most; beyond, refused at once ('queue-full'). */
  readonly maxQueued: number;
  /** Each identity's budget (its SPIFFE ID); undefined = no per-identity limit. */
  readonly identityRate: RateLimit | undefined;
  /**
   * A node proxy's budget (ambient mode: ztunnel asking for the pods of its node), per node:
   * `identityRate` times this factor, rate and burst alike.
   */
  readonly nodeRateFactor: number;
}

/**
 * The share of one of `workers` processes (serve --workers): the in-flight and queue bounds are
 * the service's, split evenly (each process has its own event loop and memory, and the OS
 * spreads connections among them); the token buckets stay whole in each process, because every
 * connection lives in one process and a workload (a sidecar, a ztunnel) calls over one
 * connection — an identity whose pods are spread over several processes gets up to `workers`
 * times its budget, which is the price of sharing no state between processes on every call.
 */
export function admissionPerWorker(options: AdmissionOptions, workers: number): AdmissionOptions {
  const share = (n: number, min: number): number => Math.max(min, Math.ceil(n / workers));
  return {
    ...options,
    maxInflight: share(options.maxInflight, 1),
    maxQueued: share(options.maxQueued, 0),
  };
}

/**
 * A rate as --rate-limit takes it: in the first of s, m, h where it is a whole number (`20/s`,
 * `100/m`, `90/h`), never `0.0166…/s`; else per second, to six digits.
 */
export function formatRate(perSecond: number): string {
  for (const [unit, factor] of [
    ['s', 1],
    ['m', 60],
    ['h', 3600],
  ] as const) {
    const n = perSecond * factor;
    if (n >= 1 && Math.abs(n - Math.round(n)) < 1e-6) return `${Math.round(n)}/${unit}`;
  }
  return `${Number(perSecond.toPrecision(6))}/s`;
}

/** Why a call was refused without being served; the `reason` label of the shed metric. */
export type ShedReason = 'queue_full' | 'identity_rate' | 'node_rate';

/** A refusal by admission control: RESOURCE_EXHAUSTED with a retry hint (src/server/status-map.ts). */
export class Shed extends CastellanError {
  constructor(
    readonly reason: ShedReason,
    /** When a retry may succeed, in ms from now (≥ 1): the `grpc-retry-pushback-ms` trailer. */
    readonly retryAfterMs: number,
    what: string,
  ) {
    super('resource-exhausted', `${what}: retry in ${retryAfterMs} ms`);
  }
}

/** A caller's bucket: its SPIFFE ID, or (ambient mode) a node proxy on its node. */
export type RateKey =
  | { readonly kind: 'identity'; readonly spiffeId: string }
  | { readonly kind: 'node'; readonly caller: string; readonly node: string };

/**
 * What acquire() follows to learn that a waiting caller left: an AbortSignal, or anything with
 * the three members acquire() uses (the handler adapts the gRPC call's 'cancelled' event,
 * src/server/admission-call.ts, rather than allocating an AbortController per waiting call).
 */
export type LeaveSignal = Pick<AbortSignal, 'aborted'> & {
  addEventListener(type: 'abort', listener: () => void, options: { once: true }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
};

/** A slot of the in-flight limit; `release()` is idempotent. */
export interface Slot {
  release(): void;
}

/**
 * What a call waiting for a slot is ordered by: urgent renewals first, the one whose
 * certificate expires first ahead; everything else first come, first served.
 */
export interface QueuePriority {
  /** The caller's current certificate's NotAfter (ms) when it is an urgent renewal. */
  readonly urgentUntilMs?: number | undefined;
}

/**
 * A renewal is urgent once less than this share of its certificate's lifetime is left. Istio's
 * agents renew at half of it (SECRET_GRACE_PERIOD_RATIO=0.5, pkg/security/security.go): a
 * certificate past three quarters of its life has been failing to renew for a quarter of it.
 */
export const URGENT_RENEWAL_FRACTION = 0.25;

/** Whether a certificate valid from `notBeforeMs` to `notAfterMs` makes its renewal urgent at `nowMs`. */
export function isUrgentRenewal(notBeforeMs: number, notAfterMs: number, nowMs: number): boolean {
  const lifetime = notAfterMs - notBeforeMs;
  if (!(lifetime > 0)) return false;
  return notAfterMs - nowMs <= lifetime * URGENT_RENEWAL_FRACTION;
}

/** Bounds of the queue-full retry hint. */
const MIN_RETRY_MS = 50;
const MAX_RETRY_MS = 30_000;
/** Until a call has been timed, the service time assumed for the queue-full hint. */
const INITIAL_SERVICE_MS = 10;
/** Weight of the newest call in the service-time average. */
const SERVICE_EWMA_WEIGHT = 0.1;

interface Waiter extends RingItem {
  readonly urgentUntilMs: number | undefined;
  readonly grant: (slot: Slot) => void;
  readonly cancel: () => void;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/**
 * The in-flight limit, its bounded priority queue, and per-key token buckets. Memory is bounded:
 * at most `maxQueued` waiters, and buckets that have refilled are dropped (a full bucket is the
 * same as none).
 */
export class Admission {
  private inflightCount = 0;
  /** Urgent renewals, sorted by NotAfter then arrival. */
  private readonly urgent: Waiter[] = [];
  /** Everyone else, in arrival order (O(1) removal of a call that left; ./fifo-ring.ts). */
  private readonly normal = new FifoRing<Waiter>();
  private readonly buckets = new Map<string, Bucket>();
  private sweepAt = 1024;
  private serviceMs = INITIAL_SERVICE_MS;

  constructor(
    readonly options: AdmissionOptions,
    private readonly clock: Clock,
  ) {
    checkOptions(options);
  }

  get inflight(): number {
    return this.inflightCount;
  }

  get queued(): number {
    return this.urgent.length + this.normal.size;
  }

  /**
   * A slot of the in-flight limit: at once when one is free (and nobody waits), else after
   * the calls ahead in the queue. Rejects with a Shed ('queue_full') when the queue is full, and
   * with a CastellanError('unavailable') when `signal` aborts while waiting (the client left;
   * its place is given up).
   */
  acquire(priority: QueuePriority = {}, signal?: LeaveSignal): Promise<Slot> {
    if (signal?.aborted) return Promise.reject(abandoned());
    const free = this.tryAcquire();
    if (free) return Promise.resolve(free);
    if (this.queued >= this.options.maxQueued) {
      return Promise.reject(
        new Shed(
          'queue_full',
          this.queueFullRetryMs(),
          `${this.inflightCount} requests in progress and ${this.queued} waiting`,
        ),
      );
    }
    return new Promise<Slot>((resolve, reject) => {
      const onAbort = (): void => {
        if (this.remove(waiter)) reject(abandoned());
      };
      const waiter: Waiter = {
        ringIndex: -1,
        urgentUntilMs: priority.urgentUntilMs,
        grant: (slot) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(slot);
        },
        cancel: onAbort,
      };
      this.enqueue(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * A slot at once when one is free and nobody waits (acquire's fast path, without a priority,
   * a cancellation signal or a promise: the common case costs nothing); else undefined.
   */
  tryAcquire(): Slot | undefined {
    if (this.inflightCount < this.options.maxInflight && this.queued === 0) return this.grantSlot();
    return undefined;
  }

  /**
   * Takes one token from the caller's bucket; throws a Shed ('identity_rate' or 'node_rate')
   * when it is empty. Without an identity rate, never throws.
   */
  charge(key: RateKey): void {
    const rate = this.options.identityRate;
    if (!rate) return;
    const [name, budget, reason] =
      key.kind === 'identity'
        ? ([`i ${key.spiffeId}`, rate, 'identity_rate'] as const)
        : ([
            `n ${key.caller} ${key.node}`,
            {
              perSecond: rate.perSecond * this.options.nodeRateFactor,
              burst: rate.burst * this.options.nodeRateFactor,
            },
            'node_rate',
          ] as const);
    const now = this.clock.now();
    const bucket = this.buckets.get(name) ?? { tokens: budget.burst, updatedMs: now };
    refill(bucket, budget, now);
    if (bucket.tokens < 1) {
      this.buckets.set(name, bucket);
      // Less a nanosecond: floating point makes 1 ms into 1.0000000000000009.
      const waitMs = ((1 - bucket.tokens) / budget.perSecond) * 1000;
      const retryAfterMs = Math.max(1, Math.ceil(waitMs - 1e-6));
      const who =
        key.kind === 'identity'
          ? `identity ${key.spiffeId}`
          : `node proxy ${key.caller} on node ${key.node}`;
      throw new Shed(
        reason,
        retryAfterMs,
        `${who} is over its rate limit (${formatRate(budget.perSecond)}, burst ${budget.burst})`,
      );
    }
    bucket.tokens -= 1;
    this.buckets.set(name, bucket);
    if (this.buckets.size >= this.sweepAt) this.sweep(now);
  }

  /** How many buckets are kept (for tests: memory stays bounded). */
  get bucketCount(): number {
    return this.buckets.size;
  }

  private grantSlot(): Slot {
    this.inflightCount++;
    const started = this.clock.now();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.inflightCount--;
        const took = Math.max(0, this.clock.now() - started);
        this.serviceMs += SERVICE_EWMA_WEIGHT * (took - this.serviceMs);
        this.next();
      },
    };
  }

  /** Hands free slots to the waiters first in line. */
  private next(): void {
    while (this.inflightCount < this.options.maxInflight) {
      const waiter = this.urgent.shift() ?? this.normal.shift();
      if (!waiter) return;
      waiter.grant(this.grantSlot());
    }
  }

  private enqueue(w: Waiter): void {
    if (w.urgentUntilMs === undefined) {
      this.normal.push(w);
      return;
    }
    const at = w.urgentUntilMs;
    // Binary search: the first waiter that expires later (equal NotAfter: arrival order).
    let lo = 0;
    let hi = this.urgent.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (((this.urgent[mid] as Waiter).urgentUntilMs ?? Infinity) <= at) lo = mid + 1;
      else hi = mid;
    }
    this.urgent.splice(lo, 0, w);
  }

  /** Takes a waiter out of the queue; false when it was no longer there (already granted). */
  private remove(w: Waiter): boolean {
    if (w.urgentUntilMs === undefined) return this.normal.remove(w);
    const i = this.urgent.indexOf(w);
    if (i < 0) return false;
    this.urgent.splice(i, 1);
    return true;
  }

  /** The time the calls ahead would take: every queued call and those in flight, `maxInflight` at a time. */
  private queueFullRetryMs(): number {
    const ahead = this.inflightCount + this.queued;
    const ms = Math.ceil((ahead / this.options.maxInflight) * this.serviceMs);
    return Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, ms));
  }

  /** Drops buckets that have refilled; the next sweep when twice as many remain. */
  private sweep(now: number): void {
    const rate = this.options.identityRate;
    if (!rate) return;
    const node = {
      perSecond: rate.perSecond * this.options.nodeRateFactor,
      burst: rate.burst * this.options.nodeRateFactor,
    };
    for (const [name, bucket] of this.buckets) {
      const budget = name.startsWith('n ') ? node : rate;
      refill(bucket, budget, now);
      if (bucket.tokens >= budget.burst) this.buckets.delete(name);
    }
    this.sweepAt = Math.max(1024, this.buckets.size * 2);
  }
}

function refill(bucket: Bucket, budget: RateLimit, now: number): void {
  // A clock that steps back refills nothing (and takes nothing away).
  const elapsed = Math.max(0, now - bucket.updatedMs);
  bucket.tokens = Math.min(budget.burst, bucket.tokens + (elapsed / 1000) * budget.perSecond);
  bucket.updatedMs = now;
}

/** A queued call whose client cancelled: it gave up its place (nobody reads the answer). */
export class QueueAbandoned extends CastellanError {
  constructor() {
    super('unavailable', 'the client cancelled the call while it was queued');
  }
}

function abandoned(): CastellanError {
  return new QueueAbandoned();
}

function checkOptions(o: AdmissionOptions): void {
  const whole = (name: string, v: number, min: number): void => {
    if (!Number.isInteger(v) || v < min) {
      throw new CastellanError('invalid-argument', `${name} must be a whole number ≥ ${min}`, {
        subject: name,
      });
    }
  };
  whole('maxInflight', o.maxInflight, 1);
  whole('maxQueued', o.maxQueued, 0);
  if (!(o.nodeRateFactor >= 1) || !Number.isFinite(o.nodeRateFactor)) {
    throw new CastellanError('invalid-argument', 'must be a number ≥ 1', {
      subject: 'nodeRateFactor',
    });
  }
  if (o.identityRate) {
    const { perSecond, burst } = o.identityRate;
    if (!(perSecond > 0) || !Number.isFinite(perSecond)) {
      throw new CastellanError('invalid-argument', 'must be a positive number', {
        subject: 'identityRate.perSecond',
      });
    }
    if (!(burst >= 1) || !Number.isFinite(burst)) {
      throw new CastellanError('invalid-argument', 'must be at least 1', {
        subject: 'identityRate.burst',
      });
    }
  }
}
