// A `castellan serve --workers N` worker process: node:cluster runs this file, not the CLI. The
// root of a worker, as ./command.ts is of the CLI: it reads the process once and hands it down;
// the options come from the primary, over IPC (./cluster.ts).
// Must come first: @peculiar/x509 2.x relies on decorator metadata at load time.
import 'reflect-metadata';
import cluster from 'node:cluster';
import { systemClock } from '../../clock.js';
import { isCastellanError } from '../../errors.js';
import { createLogDestination, createLogger } from '../../log.js';
import { runClusterWorker } from './cluster.js';
import { limitHeapGrowth } from './heap-growth.js';
import { stopPretenuring } from './pretenuring.js';
import { OUTPUT_FAILED, stopSignal } from './signals.js';

const worker = cluster.worker;
// The primary's node arguments are this process's too (node:cluster's default execArgv).
limitHeapGrowth(process.execArgv);
stopPretenuring(process.execArgv);
const logDestination = createLogDestination();
const stopRequested = stopSignal([process.stdout, logDestination]);
runClusterWorker({
  clock: systemClock,
  env: process.env,
  stopRequested,
  channel: {
    send: (message) => {
      if (process.connected) process.send?.(message);
    },
    onMessage: (listener) => {
      process.on('message', listener);
      return () => process.off('message', listener);
    },
  },
  // Every line (audit included) names the worker, so lines can be told apart.
  logger: (level) =>
    createLogger({ level, destination: logDestination }).child({
      worker: worker?.id,
      pid: process.pid,
    }),
}).then(
  async () => {
    // Stopped because stdout or stderr failed: not a clean stop.
    process.exitCode = (await stopRequested).startsWith(OUTPUT_FAILED) ? 1 : 0;
    // The IPC channel to the primary would keep this process alive: let go of it.
    // (Should the primary die outright, node:cluster exits the worker when the channel closes:
    // no worker lingers unsupervised.)
    worker?.disconnect();
  },
  (e: unknown) => {
    process.stderr.write(
      `castellan: ${isCastellanError(e) ? e.message : e instanceof Error ? e.stack : String(e)}\n`,
    );
    process.exitCode = 1;
    worker?.disconnect();
  },
);
