import type { Clock, Timer, TimerOptions } from '../../src/clock.js';

interface Scheduled {
  readonly id: number;
  at: number;
  readonly fn: () => void;
  /** Repeat period, for `every`. */
  readonly periodMs: number | undefined;
  cancelled: boolean;
}

/**
 * A clock that only moves when the test says so (SPIRE's mock clock): `advance()` moves time
 * and fires every timer that falls due, in order of due time, letting the promises each
 * callback started settle before the next one fires. Tests never sleep on real time.
 */
export class ManualClock implements Clock {
  private readonly timers: Scheduled[] = [];
  private nextId = 0;

  constructor(private ms: number = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.ms;
  }

  after(ms: number, fn: () => void, _options?: TimerOptions): Timer {
    return this.schedule(ms, fn, undefined);
  }

  every(ms: number, fn: () => void, _options?: TimerOptions): Timer {
    return this.schedule(ms, fn, Math.max(1, ms));
  }

  /** Moves time to `ms` without firing anything (a clock jump, e.g. a suspended machine). */
  set(ms: number): void {
    this.ms = ms;
  }

  /** Moves time forward by `ms`, firing each timer that falls due at its own due time. */
  async advance(ms: number): Promise<void> {
    const end = this.ms + ms;
    for (;;) {
      await settle();
      const due = this.timers
        .filter((t) => !t.cancelled && t.at <= end)
        .sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.ms = Math.max(this.ms, due.at);
      if (due.periodMs === undefined) this.remove(due);
      else due.at += due.periodMs;
      due.fn();
    }
    this.ms = end;
    await settle();
  }

  /** Timers not yet fired or cancelled: lets a test see that something is scheduled. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Due time of the next pending timer, or undefined. */
  nextDue(): number | undefined {
    const times = this.timers.filter((t) => !t.cancelled).map((t) => t.at);
    return times.length ? Math.min(...times) : undefined;
  }

  private schedule(ms: number, fn: () => void, periodMs: number | undefined): Timer {
    const t: Scheduled = {
      id: this.nextId++,
      at: this.ms + Math.max(0, ms),
      fn,
      periodMs,
      cancelled: false,
    };
    this.timers.push(t);
    return {
      cancel: () => {
        t.cancelled = true;
        this.remove(t);
      },
    };
  }

  private remove(t: Scheduled): void {
    const i = this.timers.indexOf(t);
    if (i >= 0) this.timers.splice(i, 1);
  }
}

/**
 * Lets pending promise callbacks and I/O callbacks already due run: a macrotask turn, taken a
 * few times so chains of awaits inside timer callbacks settle before the next timer fires.
 */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}
