// A CsrCheckPool thread that fails on purpose: it exits when a batch holds the PEM "exit" (a
// check's, or an order's), and refuses anything else with a recognisable message (as a CSR
// defect). CA registrations get no answer, as in the real thread.
import { parentPort } from 'node:worker_threads';
import type { ThreadRequest } from '../../../src/server/csr-check-threads.js';

const pemOf = (r: ThreadRequest): string | undefined =>
  r.op === 'issue' ? r.order.pem : r.op === 'ca' ? undefined : r.pem;

parentPort!.on('message', (batch: readonly ThreadRequest[]) => {
  if (batch.some((r) => pemOf(r) === 'exit')) process.exit(3);
  parentPort!.postMessage(
    batch.flatMap((r) =>
      r.op === 'ca' ? [] : [{ id: r.id, ok: false, kind: 'malformed', message: 'test thread' }],
    ),
  );
});
parentPort!.postMessage('ready');
