// A worker thread of CsrCheckPool (csr-check-threads.ts): checks CSRs with the hot-path parser and
// answers with what issuance needs. @peculiar/x509 (the parser's fallback for rare shapes)
// needs reflect-metadata loaded first, as in every entry point.
import 'reflect-metadata';
import { parentPort } from 'node:worker_threads';
import { isCastellanError } from '../errors.js';
import { checkCsr } from './csr-check.js';
import type { CsrCheckReply, CsrCheckRequest } from './csr-check-threads.js';

const port = parentPort;
if (!port) throw new Error('csr-check-thread runs as a worker thread of CsrCheckPool');

/** Checks one CSR; never throws. */
function check(request: CsrCheckRequest): CsrCheckReply {
  let reply: CsrCheckReply;
  try {
    reply = { id: request.id, ok: true, csr: checkCsr(request.pem) };
  } catch (e) {
    reply = isCastellanError(e)
      ? { id: request.id, ok: false, kind: e.kind, message: e.message, subject: e.subject }
      : { id: request.id, ok: false, kind: 'internal', message: String(e) };
  }
  return reply;
}

port.on('message', (batch: readonly CsrCheckRequest[]) => {
  port.postMessage(batch.map(check));
});
port.postMessage('ready');
