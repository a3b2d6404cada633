// The Clock behind every timer in src/: the real one (systemClock, checked on Node's mock timers
// and, for keeping a process alive, in child processes), sleep(), PeriodicTask, and the
// ManualClock the tests step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PeriodicTask, sleep, systemClock, type Clock, type TimerOptions } from '../src/clock.js';
import { ManualClock } from './support/manual-clock.js';
import { projectRoot } from './support/paths.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

/** A promise and the functions that settle it, for work a test finishes when it decides. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve: () => void = () => {};
  let reject: (e: Error) => void = () => {};
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// ---- systemClock ----------------------------------------------------------------------------

test('systemClock: now() is the real time', () => {
  const before = Date.now();
  const now = systemClock.now();
  assert.ok(now >= before && now <= Date.now());
});

test('systemClock: after() fires once when due, every() repeats, cancel() stops both', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const fired: string[] = [];
  systemClock.after(100, () => fired.push('after'));
  const cancelled = systemClock.after(100, () => fired.push('cancelled'));
  const ticking = systemClock.every(40, () => fired.push('tick'));
  cancelled.cancel();
  t.mock.timers.tick(99);
  assert.deepEqual(fired, ['tick', 'tick']);
  t.mock.timers.tick(1);
  assert.deepEqual(fired, ['tick', 'tick', 'after']);
  t.mock.timers.tick(300);
  assert.equal(fired.filter((f) => f === 'after').length, 1, 'after() fires once');
  assert.equal(fired.filter((f) => f === 'tick').length, 10);
  ticking.cancel();
  ticking.cancel(); // idempotent
  t.mock.timers.tick(1000);
  assert.equal(fired.filter((f) => f === 'tick').length, 10, 'no tick after cancel()');
  assert.ok(!fired.includes('cancelled'));
});

test('systemClock: delays above 2^31-1 ms are chained, not fired at once', (t) => {
  // Node's own timers (and its mock timers, which copy them) turn such a delay into 1 ms.
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const long = MAX_TIMER_MS + 1000;
  let once = 0;
  let every = 0;
  systemClock.after(long, () => once++);
  const repeating = systemClock.every(long, () => every++);
  const cancelled = systemClock.after(long, () => assert.fail('cancelled while chained'));
  t.mock.timers.tick(MAX_TIMER_MS);
  cancelled.cancel();
  assert.deepEqual([once, every], [0, 0], 'nothing before the delay');
  t.mock.timers.tick(1000);
  assert.deepEqual([once, every], [1, 1]);
  // In steps: the mock runs a timer set by a callback no sooner than the next tick() call.
  t.mock.timers.tick(MAX_TIMER_MS);
  t.mock.timers.tick(1000);
  assert.deepEqual([once, every], [1, 2], 'the long period repeats');
  repeating.cancel();
  t.mock.timers.tick(2 * long);
  assert.deepEqual([once, every], [1, 2]);
});

/** Runs a script in a child Node process and returns what it printed, bounded by 20 s. */
function runChild(script: string): { stdout: string; status: number | null } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { stdout: r.stdout.trim(), status: r.status };
}

test('systemClock: a timer keeps the process alive only with keepAlive', () => {
  const clockUrl = pathToFileURL(join(projectRoot, 'dist/src/clock.js')).href;
  const script = (options: string): string =>
    `import { systemClock } from ${JSON.stringify(clockUrl)};\n` +
    `systemClock.after(200, () => console.log('fired'), ${options});\n` +
    `const t = systemClock.every(50, () => { console.log('ticked'); t.cancel(); }, ${options});`;
  // Without keepAlive the process has nothing else to do and exits before either is due.
  assert.deepEqual(runChild(script('{}')), { stdout: '', status: 0 });
  assert.deepEqual(runChild(script('{ keepAlive: true }')), {
    stdout: 'ticked\nfired',
    status: 0,
  });
});

// ---- sleep() --------------------------------------------------------------------------------

test('sleep() resolves after its time on the clock, at once when aborted, and never rejects', async () => {
  const clock = new ManualClock();
  let woke = false;
  const slept = sleep(clock, 1000).then(() => (woke = true));
  await clock.advance(999);
  assert.equal(woke, false);
  await clock.advance(1);
  await slept;
  assert.equal(woke, true);

  const stop = new AbortController();
  const cut = sleep(clock, 60_000, stop.signal);
  assert.equal(clock.pending, 1);
  stop.abort();
  await cut;
  assert.equal(clock.pending, 0, 'the timer is cancelled');
  await sleep(clock, 60_000, stop.signal); // already aborted: no wait at all
  assert.equal(clock.pending, 0);
});

test('sleep() passes its timer options to the clock', async () => {
  const seen: (TimerOptions | undefined)[] = [];
  const spy: Clock = {
    now: () => 0,
    after: (_ms, fn, options) => {
      seen.push(options);
      fn();
      return { cancel: () => {} };
    },
    every: () => assert.fail('not used'),
  };
  await sleep(spy, 5, undefined, { keepAlive: true });
  await sleep(spy, 5);
  assert.deepEqual(seen, [{ keepAlive: true }, undefined]);
});

// ---- PeriodicTask ---------------------------------------------------------------------------

function periodic(clock: ManualClock, run: () => Promise<void> | void) {
  const errors: unknown[] = [];
  const task = new PeriodicTask({
    clock,
    intervalMs: 1000,
    run,
    onError: (e) => errors.push(e),
  });
  return { task, errors };
}

test('PeriodicTask: runs every interval; with runNow also at once; start() twice is one task', async () => {
  const clock = new ManualClock();
  let runs = 0;
  const { task } = periodic(clock, () => {
    runs++;
  });
  task.start();
  task.start();
  assert.equal(runs, 0, 'without runNow the first run is one interval away');
  await clock.advance(3000);
  assert.equal(runs, 3);
  await task.stop();

  const eager = periodic(clock, () => {
    runs++;
  });
  runs = 0;
  eager.task.start({ runNow: true });
  assert.equal(runs, 1, 'runNow runs at once');
  await clock.advance(1000);
  assert.equal(runs, 2);
  await eager.task.stop();
});

test('PeriodicTask: a run never overlaps the previous one; ticks during a slow run are skipped', async () => {
  const clock = new ManualClock();
  const runs: ReturnType<typeof deferred>[] = [];
  const { task } = periodic(clock, () => {
    const d = deferred();
    runs.push(d);
    return d.promise;
  });
  task.start();
  await clock.advance(1000);
  assert.equal(runs.length, 1);
  await clock.advance(3000);
  assert.equal(runs.length, 1, 'three ticks while the first run is under way: no second run');
  const triggered = task.trigger();
  assert.equal(runs.length, 1, 'trigger() joins the run under way');
  runs[0]!.resolve();
  await triggered;
  await clock.advance(1000);
  assert.equal(runs.length, 2, 'the next tick after the slow run ends');
  runs[1]!.resolve();
  await task.stop();
});

test('PeriodicTask: a run that throws or rejects goes to onError and the task goes on', async () => {
  const clock = new ManualClock();
  let runs = 0;
  const { task, errors } = periodic(clock, () => {
    runs++;
    // Thrown before any await (a synchronous failure), then a rejection, then success.
    if (runs === 1) throw new Error('thrown');
    if (runs === 2) return Promise.reject(new Error('rejected'));
    return undefined;
  });
  task.start({ runNow: true });
  await clock.advance(3000);
  assert.equal(runs, 4);
  assert.deepEqual(
    errors.map((e) => (e as Error).message),
    ['thrown', 'rejected'],
  );
  await task.stop();
});

test('PeriodicTask: stop() waits for the run under way; no run after it', async () => {
  const clock = new ManualClock();
  const gate = deferred();
  let runs = 0;
  let finished = false;
  const { task } = periodic(clock, async () => {
    runs++;
    await gate.promise;
    finished = true;
  });
  task.start({ runNow: true });
  let stopped = false;
  const stopping = task.stop().then(() => (stopped = true));
  await clock.advance(0);
  assert.equal(stopped, false, 'still waiting for the run');
  gate.resolve();
  await stopping;
  assert.equal(finished, true, 'the run ended before stop() resolved');
  assert.equal(clock.pending, 0, 'no timer left');
  await clock.advance(5000);
  await task.trigger();
  task.start();
  await clock.advance(5000);
  assert.equal(runs, 1, 'a stopped task never runs again');
});

// ---- ManualClock ----------------------------------------------------------------------------

test('ManualClock: advance() fires due timers in order of due time, each at its own time', async () => {
  const clock = new ManualClock(1000);
  const fired: [string, number][] = [];
  const at = (name: string) => () => void fired.push([name, clock.now()]);
  clock.after(30, at('c'));
  clock.after(10, at('a'));
  clock.after(20, at('b1'));
  clock.after(20, at('b2'));
  clock.after(31, at('late'));
  await clock.advance(30);
  assert.deepEqual(fired, [
    ['a', 1010],
    ['b1', 1020],
    ['b2', 1020],
    ['c', 1030],
  ]);
  assert.equal(clock.now(), 1030);
  assert.equal(clock.pending, 1);
  assert.equal(clock.nextDue(), 1031);
  clock.set(5000);
  assert.equal(fired.length, 4, 'set() moves time without firing');
});

test('ManualClock: periodic timers repeat; cancel() removes a timer', async () => {
  const clock = new ManualClock(0);
  const ticks: number[] = [];
  const every = clock.every(10, () => void ticks.push(clock.now()));
  const once = clock.after(15, () => assert.fail('cancelled'));
  assert.equal(clock.pending, 2);
  once.cancel();
  assert.equal(clock.pending, 1);
  await clock.advance(35);
  assert.deepEqual(ticks, [10, 20, 30]);
  every.cancel();
  await clock.advance(100);
  assert.deepEqual(ticks, [10, 20, 30]);
  assert.equal(clock.pending, 0);
  assert.equal(clock.nextDue(), undefined);
});

test('ManualClock: a timer scheduled by a callback during advance() fires if due by its end', async () => {
  const clock = new ManualClock(0);
  const fired: [string, number][] = [];
  clock.after(10, () => {
    clock.after(5, () => void fired.push(['within', clock.now()]));
    clock.after(15, () => void fired.push(['beyond', clock.now()]));
  });
  // A callback that starts async work: its promise chain settles before the next timer fires.
  clock.after(12, () => {
    void Promise.resolve()
      .then(() => undefined)
      .then(() => void fired.push(['async', clock.now()]));
  });
  await clock.advance(20);
  assert.deepEqual(fired, [
    ['async', 12],
    ['within', 15],
  ]);
  assert.equal(clock.nextDue(), 25);
  await clock.advance(5);
  assert.deepEqual(fired.at(-1), ['beyond', 25]);
});
