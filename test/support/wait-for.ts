import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * Waits until `check` holds, re-checking as soon as the event loop has turned: the one way a
 * test waits on something it observes (a file written, a process's line, a metric). Never a
 * fixed sleep: it returns the moment the condition holds, and fails with `what` after
 * `timeoutMs` of real time (a bound, not an expected duration).
 */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const end = performance.now() + timeoutMs;
  let pause = 1;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > end) assert.fail(`${what}: not within ${timeoutMs} ms`);
    // Back off from 1 ms to 50 ms: quick for in-process events, light for child processes.
    await delay(pause);
    pause = Math.min(pause * 2, 50);
  }
}
