/** Anything that reports a failed write with an 'error' event: process.stdout, the log destination. */
export interface ProcessOutput {
  on(event: 'error', listener: (e: NodeJS.ErrnoException) => void): unknown;
}

/**
 * Resolves with the reason serve (a single process, the cluster primary, or a worker) is asked
 * to stop: the first SIGTERM or SIGINT, or one of `outputs` failing ("output failed: EPIPE").
 * Registered by the root before anything starts, so a signal during start-up stops serve
 * gracefully too.
 *
 * Why an output stops serve: a CA whose audit lines can no longer be written must not go on
 * signing unrecorded (Go servers such as istiod die of SIGPIPE on a closed stdout or stderr). And
 * left to Node, a closed pipe hung the process for good: the write to stdout threw EPIPE as an
 * uncaught exception, and on the way out sonic-boom's synchronous flush of the log lines still
 * buffered retries every failed write forever (it sleeps and retries any error, not only EAGAIN),
 * so serve neither served nor exited, and SIGTERM could not stop it (seen with
 * `castellan serve 2>&1 | head -3`). Listening here makes the failure a graceful stop: in-flight
 * calls finish, pino turns the failed destination into a no-op, and the process exits with 1.
 */
export function stopSignal(outputs: readonly ProcessOutput[] = []): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
    for (const output of outputs) {
      output.on('error', (e) => resolve(`${OUTPUT_FAILED}: ${e.code ?? e.message}`));
    }
  });
}

/** The start of stopSignal's reason when an output failed (the process then exits with 1). */
export const OUTPUT_FAILED = 'output failed';

/**
 * A start that was still waiting (for the API server, say) when a stop came: not a failure. What
 * had started is released, and the process exits as after any graceful stop.
 */
export class StoppedWhileStarting extends Error {
  override readonly name = 'StoppedWhileStarting';
  constructor(what: string) {
    super(`stopped while ${what} was starting`);
  }
}
