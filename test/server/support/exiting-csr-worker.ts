// A CsrCheckPool thread that fails on purpose: it exits when asked to check the PEM "exit", and
// refuses anything else with a recognisable message.
import { parentPort } from 'node:worker_threads';
import type { CsrCheckRequest } from '../../../src/server/csr-check-threads.js';

parentPort!.on('message', (batch: readonly CsrCheckRequest[]) => {
  if (batch.some((r) => r.pem === 'exit')) process.exit(3);
  parentPort!.postMessage(
    batch.map((r) => ({ id: r.id, ok: false, kind: 'malformed', message: 'test thread' })),
  );
});
parentPort!.postMessage('ready');
