/**
 * Resolves with the name of the first SIGTERM or SIGINT: when serve (a single process, the
 * cluster primary, or a worker) is asked to stop. Registered by the root before anything starts,
 * so a signal during start-up stops serve gracefully too.
 */
export function stopSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
}
