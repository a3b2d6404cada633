// Runs `castellan <args>` in the test's own process: the CLI's exported main(), with what it
// writes to stdout and stderr captured. A spawned CLI costs ~0.7 s of CPU loading modules
// before it parses a flag (measured: `node dist/src/cli/main.js ca crl --next-update soon`,
// 0.7 s user, against 0.06 s for `node -e 0`); here that is paid once per test file. Use it for
// the many cases of one command's flag and input checks, and keep a spawned case per command
// (runCli, spawnSync) to prove the process wiring: exit code and stderr of the real command.
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { main } from '../../src/cli/main.js';

export interface InProcessResult {
  /** What the process would exit with: main()'s result. */
  code: number;
  stdout: string;
  stderr: string;
}

interface Captured {
  stdout: string;
  stderr: string;
}

// Only writes made by main() and what it awaits are captured: the test runner writes its own
// reports to process.stdout at any time, from outside this context, and they must pass through.
// A command's pino logger writes to fd 2 itself and is not captured: use this for what commands
// print (results, errors), not for their logs.
const capture = new AsyncLocalStorage<Captured>();
let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  for (const name of ['stdout', 'stderr'] as const) {
    const stream = process[name];
    const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    stream.write = (chunk: unknown, ...rest: unknown[]): boolean => {
      const into = capture.getStore();
      if (!into) return write(chunk, ...rest);
      into[name] += typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString();
      const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      if (done) process.nextTick(done);
      return true;
    };
  }
}

let running = false;

/**
 * `castellan <args>` through main(), one call at a time (process.exitCode, which main() reads,
 * is the process's own): its exit code and output, as the spawned command would give them.
 */
export async function castellanInProcess(args: readonly string[]): Promise<InProcessResult> {
  assert.ok(!running, 'castellanInProcess: one call at a time');
  install();
  running = true;
  const exitCodeBefore = process.exitCode;
  process.exitCode = undefined;
  const into: Captured = { stdout: '', stderr: '' };
  try {
    const code = await capture.run(into, () => main([...args]));
    return { code, ...into };
  } finally {
    process.exitCode = exitCodeBefore;
    running = false;
  }
}
