// A `castellan serve --workers N` worker process (node:cluster runs this file, not the CLI):
// it serves with the configuration the primary resolved, handed over in the environment.
// Must come first: @peculiar/x509 2.x relies on decorator metadata at load time.
import 'reflect-metadata';
import cluster from 'node:cluster';
import { isCastellanError } from '../errors.js';
import { runServe } from './commands/serve.js';
import { waitForPrimary, workerConfigFromEnv } from './serve-cluster.js';

const config = workerConfigFromEnv(process.env);
waitForPrimary()
  .then(() => runServe(config))
  .then(
    () => {
      process.exitCode = 0;
      // The IPC channel to the primary would keep this process alive: let go of it.
      cluster.worker?.disconnect();
    },
    (e: unknown) => {
      process.stderr.write(
        `castellan: ${isCastellanError(e) ? e.message : e instanceof Error ? e.stack : String(e)}\n`,
      );
      process.exitCode = 1;
      cluster.worker?.disconnect();
    },
  );
