import { spawn } from 'node:child_process';
import type { Clock } from '../clock.js';

export interface ExecResult {
  /** Exit code, or undefined when the command was killed (signal or timeout). */
  readonly code: number | undefined;
  readonly signal: NodeJS.Signals | undefined;
  readonly timedOut: boolean;
}

export interface ExecHookOptions {
  readonly clock: Clock;
  /** The environment the command inherits (the agent's own), plus CASTELLAN_CERT_DIR. */
  readonly env: NodeJS.ProcessEnv;
  /** A command still running after this long is killed. Default 60 s. */
  readonly timeoutMs?: number | undefined;
}

/**
 * Runs the `--exec` command after new files are in place (e.g. `nginx -s reload`), through
 * /bin/sh like a shell line, with CASTELLAN_CERT_DIR set to the output directory. Its output
 * goes to ours. A command that hangs is killed after `timeoutMs`: the agent must get back to
 * renewing.
 */
export function runExecHook(
  command: string,
  certDir: string,
  options: ExecHookOptions,
): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...options.env, CASTELLAN_CERT_DIR: certDir },
    });
    let timedOut = false;
    // The running child keeps the process alive by itself; the timer need not.
    const timer = options.clock.after(options.timeoutMs ?? 60_000, () => {
      timedOut = true;
      child.kill('SIGKILL');
    });
    child.on('error', () => {
      timer.cancel();
      resolve({ code: 127, signal: undefined, timedOut: false });
    });
    child.on('exit', (code, signal) => {
      timer.cancel();
      resolve({ code: code ?? undefined, signal: signal ?? undefined, timedOut });
    });
  });
}
