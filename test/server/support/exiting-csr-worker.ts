// A CsrCheckPool thread that fails on purpose: it exits when a batch holds the PEM "exit" (a
// check's, or an order's) or the token "exit", and refuses anything else with a recognisable
// message (as a CSR defect; a token as a bad signature). CA registrations get no answer, as in
// the real thread. The PEM "limits" is refused with the thread's resourceLimits as the message.
import { parentPort, resourceLimits } from 'node:worker_threads';
import type { ThreadRequest } from '../../../src/server/csr-check-threads.js';

const pemOf = (r: ThreadRequest): string | undefined =>
  r.op === 'issue' ? r.order.pem : r.op === undefined ? r.pem : undefined;

parentPort!.on('message', (batch: readonly ThreadRequest[]) => {
  if (batch.some((r) => pemOf(r) === 'exit' || (r.op === 'jwt' && r.check.token === 'exit'))) {
    process.exit(3);
  }
  parentPort!.postMessage(
    batch.flatMap((r): unknown[] =>
      r.op === 'ca'
        ? []
        : r.op === 'jwt'
          ? [
              {
                id: r.id,
                ok: true,
                jwt: {
                  ok: false,
                  tokenError: true,
                  code: 'FAST_JWT_INVALID_SIGNATURE',
                  message: 'test thread',
                },
              },
            ]
          : [
              {
                id: r.id,
                ok: false,
                kind: 'malformed',
                message: pemOf(r) === 'limits' ? JSON.stringify(resourceLimits) : 'test thread',
              },
            ],
    ),
  );
});
parentPort!.postMessage('ready');
