// `castellan serve`: the composition root's entry. The one place serve reads its process — the
// environment, real time, stdout, signals — once, and hands them down as parameters.
import type { Command } from 'commander';
import { systemClock } from '../../clock.js';
import { createLogDestination, createLogger, type Logger } from '../../log.js';
import { NATIVE_P256, type NativeP256Binding } from '../../pki/fast/native-p256.js';
import { addServeFlags, type ServeFlags } from './flags.js';
import { limitHeapGrowth } from './heap-growth.js';
import { stopPretenuring } from './pretenuring.js';
import { completeServeOptions } from './options.js';
import { OUTPUT_FAILED, stopSignal } from './signals.js';

export function registerServeCommand(program: Command): void {
  const command = program
    .command('serve')
    .description(
      "run the CA: Istio's CreateCertificate gRPC API over TLS, plus /ready and /metrics",
    );
  addServeFlags(command).action(async (flags: ServeFlags) => {
    const env = process.env;
    // Every flag is checked before anything starts.
    const options = completeServeOptions(flags, env);
    const heapGrowth = limitHeapGrowth(process.execArgv);
    const pretenuring = stopPretenuring(process.execArgv);
    const logDestination = createLogDestination();
    const host = {
      clock: systemClock,
      env,
      stdout: process.stdout,
      logger: createLogger({ level: options.logLevel, destination: logDestination }),
      stopRequested: stopSignal([process.stdout, logDestination]),
    };
    host.logger.debug({ heapGrowth, pretenuring }, 'V8 heap settings');
    reportCsrCheck(NATIVE_P256, host.logger);
    // A server runs until it is asked to stop. While it waits (for the API server, for a CA)
    // nothing else need hold the event loop: the Kubernetes client's retries run on timers that
    // do not, and `serve --kube` with an unreachable API server exited 0 in silence.
    const keepAlive = setInterval(() => {}, 2 ** 30);
    try {
      // Loaded only now: every other command (and `serve --help`, and a flag error) starts
      // without the whole serving stack (≈ 0.4 s of module loading on this box).
      const { resolveWorkerCount, runClusterPrimary } = await import('./cluster.js');
      const workers = resolveWorkerCount(options.workers);
      if (workers > 1) await runClusterPrimary(options, workers, host);
      else await (await import('./app.js')).runServe(options, host);
    } finally {
      clearInterval(keepAlive);
    }
    // Stopped because stdout or stderr failed: not a clean stop (supervisors restart on it).
    if ((await host.stopRequested).startsWith(OUTPUT_FAILED)) process.exitCode = 1;
  });
}

/**
 * Says at start which P-256 CSR check serves: correct either way, but without the native one a
 * P-256 CSR costs ≈ 60 µs more CPU on Node 20, so its absence is a warning with the reason.
 */
export function reportCsrCheck(binding: NativeP256Binding, logger: Logger): void {
  if (binding.reason !== undefined) {
    logger.warn(
      { reason: binding.reason },
      'P-256 CSRs are checked with node:crypto: the native check is not loaded',
    );
  } else logger.debug('P-256 CSRs are checked natively (native/p256_verify.c)');
}
