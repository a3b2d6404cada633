// A CsrCheckPool thread that fails on purpose: it exits when asked to check the PEM "exit", and
// refuses anything else with a recognisable message.
import { parentPort } from 'node:worker_threads';
import type { CsrCheckRequest } from '../../../src/server/csr-check-pool.js';

parentPort!.on('message', (request: CsrCheckRequest) => {
  if (request.pem === 'exit') process.exit(3);
  parentPort!.postMessage({ id: request.id, ok: false, kind: 'malformed', message: 'test thread' });
});
parentPort!.postMessage('ready');
