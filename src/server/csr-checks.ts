import { Gauge, Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import {
  CsrCheckPool,
  inlineCsrChecker,
  resolveCsrThreads,
  type CsrChecker,
  type CsrThreadsSetting,
} from './csr-check-pool.js';

/** Where CSRs are checked (threads or the event loop), with the metric of what is up. */
export interface CsrChecks {
  readonly checker: CsrChecker;
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
  return { checker: pool ?? inlineCsrChecker, registry };
}
