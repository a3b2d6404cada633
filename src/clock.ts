/**
 * Time is a parameter. Everything that depends on "now" or waits (validity windows, rotation,
 * token expiry, caches, pollers, retries, shutdown grace) takes a Clock, so tests step time
 * instead of sleeping. This file and the composition root are the only places that touch the
 * process's real timers (`setTimeout`, `setInterval`, `Date.now`); eslint holds that.
 *
 * Model: SPIRE's clock (`pkg/common/clock`) — now, timers and tickers behind one interface,
 * with a mock that fires due timers when the test advances it (test/support/manual-clock.ts).
 */

/** A scheduled callback; `cancel()` is idempotent and safe after the callback ran. */
export interface Timer {
  cancel(): void;
}

export interface TimerOptions {
  /**
   * Keep the process alive while this timer is pending. Default false: Castellan's timers are
   * housekeeping (renewals, polls, grace periods) that must never hold a process open on their
   * own; the listening sockets or the agent's loop do that.
   */
  readonly keepAlive?: boolean;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Calls `fn` once, `ms` from now. */
  after(ms: number, fn: () => void, options?: TimerOptions): Timer;
  /** Calls `fn` every `ms` from now on, first after `ms`. */
  every(ms: number, fn: () => void, options?: TimerOptions): Timer;
}

/** Node clamps longer delays to 1 ms (TimeoutOverflowWarning): longer waits are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The process's real time. */
export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn, options) {
    let handle: NodeJS.Timeout;
    let cancelled = false;
    const arm = (left: number): void => {
      const step = Math.min(Math.max(0, left), MAX_TIMER_MS);
      handle = setTimeout(() => {
        if (cancelled) return;
        if (left > step) arm(left - step);
        else fn();
      }, step);
      if (!options?.keepAlive) handle.unref();
    };
    arm(ms);
    return {
      cancel: () => {
        cancelled = true;
        clearTimeout(handle);
      },
    };
  },
  every(ms, fn, options) {
    const period = Math.max(1, ms);
    if (period > MAX_TIMER_MS) {
      // setInterval would clamp the period to 1 ms: chain one-shot timers instead.
      let timer: Timer;
      let cancelled = false;
      const arm = (): void => {
        timer = systemClock.after(
          period,
          () => {
            if (cancelled) return;
            arm();
            fn();
          },
          options,
        );
      };
      arm();
      return {
        cancel: () => {
          cancelled = true;
          timer.cancel();
        },
      };
    }
    const handle = setInterval(fn, period);
    if (!options?.keepAlive) handle.unref();
    return { cancel: () => clearInterval(handle) };
  },
};

/**
 * Resolves after `ms` on `clock`, or at once when `signal` aborts (never rejects): the one
 * way to wait inside a loop (backoff, agent renewals).
 */
export function sleep(
  clock: Clock,
  ms: number,
  signal?: AbortSignal,
  options?: TimerOptions,
): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      resolve();
    };
    const timer = clock.after(
      ms,
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      options,
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface PeriodicTaskOptions {
  readonly clock: Clock;
  readonly intervalMs: number;
  /** The work; a run never overlaps the previous one (a slow run skips ticks, never queues). */
  readonly run: () => Promise<void> | void;
  /** A run that threw or rejected; the task goes on at the next tick. */
  readonly onError: (error: unknown) => void;
}

/**
 * Work done again and again on a clock: pollers (a watched CA folder, a policy folder),
 * periodic checks (root rotation, readiness reports). One implementation instead of
 * hand-written timer loops, so every poller stops the same way and tests step it with a
 * ManualClock.
 */
export class PeriodicTask {
  private timer: Timer | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: PeriodicTaskOptions) {}

  /** Starts ticking; with `runNow`, the first run starts at once instead of after one interval. */
  start({ runNow = false }: { runNow?: boolean } = {}): void {
    if (this.timer || this.stopped) return;
    this.timer = this.options.clock.every(this.options.intervalMs, () => void this.trigger());
    if (runNow) void this.trigger();
  }

  /**
   * Runs the work now unless a run is under way; resolves when that run (or the one under
   * way) has finished. Never rejects: failures go to `onError`.
   */
  trigger(): Promise<void> {
    if (this.running) return this.running;
    if (this.stopped) return Promise.resolve();
    // Cleared in `finally`, which always runs after this assignment: a `run` that throws before
    // its first await must not leave a settled promise behind that blocks every later run.
    const run = this.runOnce().finally(() => {
      this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async runOnce(): Promise<void> {
    try {
      await this.options.run();
    } catch (e) {
      this.options.onError(e);
    }
  }

  /** No tick after this; resolves when a run under way has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.running;
  }
}
