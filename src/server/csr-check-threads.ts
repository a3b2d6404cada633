import { Gauge, Registry } from 'prom-client';
import { availableParallelism } from 'node:os';
import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { CaSnapshot } from '../ca/key-cert-bundle.js';
import type { Clock } from '../clock.js';
import type { JwtOffload, OffloadedJwt, OffloadedJwtResult } from '../authn/fast-jwt-check.js';
import { CastellanError, type ErrorKind } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { inProcessKeyOf } from '../pki/signer.js';
import type { CheckedCsr } from '../pki/csr.js';
import { checkCsr, LeafOrderFailure, type IssuedOnThread, type LeafOrder } from './csr-check.js';
import { IntKeyMap } from './int-key-map.js';

export type { IssuedOnThread, LeafOrder };
export { LeafOrderFailure };

/** Checks a CSR (src/pki/csr.ts rules): the checked CSR, or a CastellanError of the rule's kind. */
export interface CsrChecker {
  check(pem: string): CheckedCsr | Promise<CheckedCsr>;
  /**
   * The whole leaf in one hop to a crypto thread (CSR check, TBS, signature, PEM): undefined when
   * that cannot be done here (no thread up yet, or the CA's key is not in this process), and
   * then the caller checks and signs as two steps. Rejects with LeafOrderFailure.
   */
  issue?(snapshot: CaSnapshot, order: LeafOrder): Promise<IssuedOnThread> | undefined;
  close(): Promise<void>;
}

/** Main thread → worker, in batches (one message per event-loop turn): a CSR to check. */
export interface CsrCheckRequest {
  readonly op?: undefined;
  readonly id: number;
  readonly pem: string;
}

/** A leaf to issue with a registered CA. */
interface LeafOrderRequest {
  readonly op: 'issue';
  readonly id: number;
  readonly ca: number;
  readonly order: LeafOrder;
}

/**
 * A CA the thread signs for, sent before its first order: the signing certificate (for the
 * leaf template) and the private key (a KeyObject is cloned to the thread once, here). `keep`:
 * the CAs the thread keeps, this one included; it drops the others.
 */
interface CaRegistration {
  readonly op: 'ca';
  readonly ca: number;
  readonly certDer: Uint8Array;
  readonly key: KeyObject;
  readonly keep: readonly number[];
}

/** A token's signature and claims to check (src/authn/jwt-verify.ts: JwtOffload). */
interface JwtRequest {
  readonly op: 'jwt';
  readonly id: number;
  readonly check: OffloadedJwt;
}

export type ThreadRequest = CsrCheckRequest | LeafOrderRequest | CaRegistration | JwtRequest;

/** Worker → main thread, in chunks (csr-check-thread.ts REPLY_CHUNK): the checked CSR or leaf, or the refusal. */
export type ThreadReply =
  | { readonly id: number; readonly ok: true; readonly csr: CheckedCsr }
  | { readonly id: number; readonly ok: true; readonly issued: IssuedOnThread }
  | { readonly id: number; readonly ok: true; readonly jwt: OffloadedJwtResult }
  | {
      readonly id: number;
      readonly ok: false;
      readonly kind: ErrorKind;
      readonly message: string;
      readonly subject?: string | undefined;
      /** Orders only: whether the CSR or the signing failed. */
      readonly stage?: 'csr' | 'sign' | undefined;
    };

/** Checks on the calling thread. */
export const inlineCsrChecker: CsrChecker = {
  check: checkCsr,
  close: async () => {},
};

/** `--csr-threads`: a count, or `auto`. */
export type CsrThreadsSetting = number | 'auto';

/**
 * `auto`: one checking thread when there is a second core, none on one core (the thread would
 * only take turns with the event loop, at the cost of the messages).
 */
export function resolveCsrThreads(
  setting: CsrThreadsSetting,
  cores: number = availableParallelism(),
): number {
  if (setting !== 'auto') return setting;
  return cores >= 2 ? 1 : 0;
}

/**
 * The crypto thread's V8 young generation, capped: by default V8 lets it grow to tens of MB, and
 * a thread that allocates per request (PEMs, DER, keys) keeps it large. Measured at P-256 c=64
 * (2026-12-07 00:01–00:04 UTC and the runs before, same build, interleaved): resident memory
 * 186–232 MB (median ≈ 210) uncapped, 171–183 MB capped at 4 MB, throughput and CPU per
 * certificate within the noise (ratio to cfssl 0.77–0.96 against 0.64–0.91).
 */
export const CRYPTO_THREAD_LIMITS = { maxYoungGenerationSizeMb: 4 } as const;

/** Deaths beyond this many within CRASH_WINDOW_MS stop the respawning: checks go inline. */
const CRASHES_BEFORE_GIVING_UP = 3;
const CRASH_WINDOW_MS = 10_000;

interface Pending {
  /** An order (its failures are LeafOrderFailures), a CSR check, or a token check. */
  readonly kind: 'order' | 'check' | 'jwt';
  resolve(value: CheckedCsr | IssuedOnThread | OffloadedJwtResult): void;
  reject(e: Error): void;
}

interface Slot {
  readonly worker: Worker;
  ready: boolean;
  /** Not a Map: see ./int-key-map.ts. */
  readonly pending: IntKeyMap<Pending>;
  /** Requests of this event-loop turn, posted together (one message, one wake-up). */
  outbox: ThreadRequest[];
  /** The CAs registered with this thread, most recent last (at most CAS_PER_THREAD). */
  cas: number[];
}

/**
 * CAs a thread holds at once: the current one, and the one before it for the requests that took
 * their snapshot before a swap.
 */
const CAS_PER_THREAD = 2;

/**
 * CSR checks and whole leaves on worker threads (the crypto thread). Under load the check is the event loop's largest single cost
 * (importing the CSR's public key and verifying its signature in node:crypto, which offers no
 * asynchronous form for either): moved to a thread of its own, it runs on the second core while
 * the event loop serves TLS, HTTP/2 and authentication. For a CA whose key is in this process,
 * `issue` goes further: one hop carries the CSR there and brings the leaf's PEM back, so the
 * event loop neither encodes the TBS nor dispatches the signature (src/server/csr-check.ts:
 * issueLeafOrder; measured in docs/performance.md).
 *
 * A thread answers once its modules are loaded; until then, and if threads keep dying (more than
 * CRASHES_BEFORE_GIVING_UP within CRASH_WINDOW_MS), checks run inline, so a start or a broken
 * thread never refuses a request. A thread that dies fails only the checks it held (`internal`)
 * and is replaced.
 */
export class CsrCheckPool implements CsrChecker, JwtOffload {
  private readonly slots: Slot[] = [];
  private readonly deaths: number[] = [];
  private nextId = 1;
  /** The pool's id of each CA snapshot it has posted to a thread. */
  private readonly caIds = new WeakMap<CaSnapshot, number>();
  private nextCaId = 1;
  private closed = false;
  private gaveUp = false;
  private readonly logger: Logger;

  private readonly clock: Clock;
  private readonly workerUrl: URL;

  constructor(
    readonly threads: number,
    options: {
      /** Counts thread deaths within CRASH_WINDOW_MS. */
      clock: Clock;
      logger?: Logger;
      /** The thread's script; tests put in one that fails on purpose. */
      workerUrl?: URL;
    },
  ) {
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock;
    this.workerUrl = options.workerUrl ?? new URL('./csr-check-thread.js', import.meta.url);
    for (let i = 0; i < threads; i++) this.spawn();
  }

  /** Threads that have loaded and answer checks (for tests and metrics). */
  get readyThreads(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  check(pem: string): CheckedCsr | Promise<CheckedCsr> {
    const slot = this.pick();
    if (!slot) return inlineCsrChecker.check(pem);
    const id = this.nextId++;
    return new Promise<CheckedCsr>((resolve, reject) => {
      slot.pending.set(id, { kind: 'check', resolve: resolve as Pending['resolve'], reject });
      this.post(slot, { id, pem });
    });
  }

  /**
   * One hop for the whole leaf (CsrChecker.issue). The first order for a CA snapshot on a thread
   * carries the CA's certificate and key ahead of it, in the same message.
   */
  issue(snapshot: CaSnapshot, order: LeafOrder): Promise<IssuedOnThread> | undefined {
    const key = inProcessKeyOf(snapshot.bundle.signer);
    if (!key) return undefined;
    const slot = this.pick();
    if (!slot) return undefined;
    let ca = this.caIds.get(snapshot);
    if (ca === undefined) {
      ca = this.nextCaId++;
      this.caIds.set(snapshot, ca);
    }
    if (!slot.cas.includes(ca)) {
      slot.cas = [...slot.cas, ca].slice(-CAS_PER_THREAD);
      const certDer = new Uint8Array(snapshot.bundle.signingCert.rawData);
      this.post(slot, { op: 'ca', ca, certDer, key, keep: slot.cas });
    }
    const id = this.nextId++;
    return new Promise<IssuedOnThread>((resolve, reject) => {
      slot.pending.set(id, { kind: 'order', resolve: resolve as Pending['resolve'], reject });
      this.post(slot, { op: 'issue', id, ca, order });
    });
  }

  /**
   * A token's signature and claims checked on a thread (JwtOffload); undefined while none is up.
   * A thread that dies rejects the checks it held, and the verifier then checks them inline.
   */
  verifyJwt(check: OffloadedJwt): Promise<OffloadedJwtResult> | undefined {
    const slot = this.pick();
    if (!slot) return undefined;
    const id = this.nextId++;
    return new Promise<OffloadedJwtResult>((resolve, reject) => {
      slot.pending.set(id, { kind: 'jwt', resolve: resolve as Pending['resolve'], reject });
      this.post(slot, { op: 'jwt', id, check });
    });
  }

  private post(slot: Slot, request: ThreadRequest): void {
    if (slot.outbox.length === 0) setImmediate(() => this.flush(slot));
    slot.outbox.push(request);
  }

  /**
   * Posts the turn's requests as one message. Under load, the HTTP/2 frames of many calls are
   * read in one event-loop turn; one message per CSR cost the event loop 8% of its time in
   * postMessage (cloning, and waking the thread each time).
   */
  private flush(slot: Slot): void {
    const batch = slot.outbox;
    slot.outbox = [];
    if (batch.length > 0 && this.slots.includes(slot)) slot.worker.postMessage(batch);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  /** The ready thread with the fewest checks in flight. */
  private pick(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) {
      if (s.ready && (!best || s.pending.size < best.pending.size)) best = s;
    }
    return best;
  }

  private spawn(): void {
    const worker = new Worker(this.workerUrl, { resourceLimits: CRYPTO_THREAD_LIMITS });
    // Never what keeps the process alive: the server's listeners do that.
    worker.unref();
    const slot: Slot = { worker, ready: false, pending: new IntKeyMap(), outbox: [], cas: [] };
    this.slots.push(slot);
    worker.on('message', (message: readonly ThreadReply[] | 'ready') => {
      if (message === 'ready') {
        slot.ready = true;
        return;
      }
      for (const reply of message) {
        const pending = slot.pending.get(reply.id);
        if (!pending) continue;
        slot.pending.delete(reply.id);
        if (reply.ok) {
          pending.resolve('csr' in reply ? reply.csr : 'jwt' in reply ? reply.jwt : reply.issued);
        } else if (pending.kind === 'order') {
          pending.reject(new LeafOrderFailure(reply.stage ?? 'csr', rebuildError(reply)));
        } else pending.reject(rebuildError(reply));
      }
    });
    worker.on('error', (err) => {
      this.logger.error({ err }, 'CSR check thread failed');
    });
    worker.on('exit', (code) => this.onExit(slot, code));
  }

  private onExit(slot: Slot, code: number): void {
    this.slots.splice(this.slots.indexOf(slot), 1);
    for (const p of slot.pending.values()) {
      const stopped = new CastellanError(
        'internal',
        `the CSR check thread stopped (exit code ${code})`,
      );
      p.reject(p.kind === 'order' ? new LeafOrderFailure('sign', stopped) : stopped);
    }
    slot.pending.clear();
    if (this.closed || this.gaveUp) return;
    const now = this.clock.now();
    this.deaths.push(now);
    while (now - (this.deaths[0] ?? now) > CRASH_WINDOW_MS) this.deaths.shift();
    if (this.deaths.length > CRASHES_BEFORE_GIVING_UP) {
      this.gaveUp = true;
      this.logger.error(
        { deaths: this.deaths.length, windowMs: CRASH_WINDOW_MS },
        'CSR check threads keep stopping; checking CSRs on the event loop from now on',
      );
      return;
    }
    this.logger.warn({ code }, 'CSR check thread stopped; starting another');
    this.spawn();
  }
}

/** The worker's refusal as the CastellanError the inline check would have thrown. */
function rebuildError(reply: Extract<ThreadReply, { ok: false }>): CastellanError {
  const prefix = reply.subject !== undefined ? `${reply.subject}: ` : '';
  const message = reply.message.startsWith(prefix)
    ? reply.message.slice(prefix.length)
    : reply.message;
  return new CastellanError(
    reply.kind,
    message,
    reply.subject !== undefined ? { subject: reply.subject } : {},
  );
}

/** Where CSRs are checked (threads or the event loop), with the metric of what is up. */
export interface CsrChecks {
  readonly checker: CsrChecker;
  /** The threads, for token signature checks (JwtAuthenticator.offloadTo); none without threads. */
  readonly jwtOffload: JwtOffload | undefined;
  /** `castellan_csr_check_threads_ready`. */
  readonly registry: Registry;
}

/**
 * Starts the CSR check threads `--csr-threads` asks for (none: checks on the event loop). The
 * gauge counts threads that are up: 0 while they load, with `--csr-threads 0`, or after they
 * kept dying and checks went back to the event loop.
 */
export function startCsrChecks(
  setting: CsrThreadsSetting,
  options: { clock: Clock; logger: Logger },
): CsrChecks {
  const threads = resolveCsrThreads(setting);
  const pool =
    threads > 0
      ? new CsrCheckPool(threads, { clock: options.clock, logger: options.logger })
      : undefined;
  const registry = new Registry();
  new Gauge({
    name: 'castellan_csr_check_threads_ready',
    help: 'Threads checking CSRs beside the event loop that are up (0: checks run on the event loop).',
    registers: [registry],
    collect() {
      this.set(pool?.readyThreads ?? 0);
    },
  });
  return { checker: pool ?? inlineCsrChecker, jwtOffload: pool, registry };
}
