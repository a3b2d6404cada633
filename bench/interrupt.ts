// What an interrupted bench leaves behind: nothing. A Ctrl-C (SIGINT to the whole process group)
// or a SIGTERM to the bench alone (what `timeout` and CI systems send) used to leave CA keys in
// /tmp/castellan-bench-*, and after a SIGTERM a `castellan serve` or `cfssl serve` running on,
// reparented to init (found by a new user, 2026-12-07). Every temporary dir and child process is
// registered here while it lives; on either signal they are released, synchronously, and the
// bench exits as a process killed by that signal would (130, 143).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const releases = new Set<() => void>();
let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      for (const release of [...releases].reverse()) {
        try {
          release();
        } catch {
          // Releasing the rest matters more than why one failed.
        }
      }
      process.stderr.write(`bench: ${signal}: servers stopped, temporary files removed\n`);
      process.exit(code);
    });
  }
}

/** Runs `release` if the bench is interrupted, until the returned function is called. */
export function onInterrupt(release: () => void): () => void {
  install();
  releases.add(release);
  return () => releases.delete(release);
}

/** A new temporary dir, removed by `remove()` or when the bench is interrupted. */
export function temporaryDir(prefix: string): { readonly path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  const rm = (): void => rmSync(path, { recursive: true, force: true });
  const forget = onInterrupt(rm);
  return {
    path,
    remove() {
      forget();
      rm();
    },
  };
}

/** Sends `child` SIGTERM if the bench is interrupted while it runs. */
export function stopOnInterrupt(child: ChildProcess): void {
  const forget = onInterrupt(() => child.kill('SIGTERM'));
  child.once('exit', forget);
}
