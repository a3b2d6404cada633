// A worker thread of CsrCheckPool (csr-check-threads.ts), the crypto thread: checks CSRs with the
// hot-path parser, and issues whole leaves (CSR check, TBS, signature, PEM) for CAs whose key
// the pool posted here. @peculiar/x509 (the parser's fallback for rare shapes) needs
// reflect-metadata loaded first, as in every entry point.
import 'reflect-metadata';
import { parentPort } from 'node:worker_threads';
import { CastellanError, isCastellanError } from '../errors.js';
import {
  checkCsr,
  issueLeafOrder,
  LeafOrderFailure,
  threadCa,
  type ThreadCa,
} from './csr-check.js';
import { runOffloadedJwt, type Verifier } from '../authn/fast-jwt-check.js';
import type { ThreadReply, ThreadRequest } from './csr-check-threads.js';

const port = parentPort;
if (!port) throw new Error('csr-check-thread runs as a worker thread of CsrCheckPool');

/** The CAs this thread signs for, by the pool's id; the pool says which to keep. */
const cas = new Map<number, ThreadCa>();
/** fast-jwt verifiers by key, algorithm and checks (runOffloadedJwt keeps at most 64). */
const jwtVerifiers = new Map<string, Verifier>();

function failure(id: number, e: unknown, stage?: 'csr' | 'sign'): ThreadReply {
  return isCastellanError(e)
    ? { id, ok: false, kind: e.kind, message: e.message, subject: e.subject, stage }
    : { id, ok: false, kind: 'internal', message: String(e), stage };
}

/** Checks one CSR; never throws. */
function check(id: number, pem: string): ThreadReply {
  try {
    return { id, ok: true, csr: checkCsr(pem) };
  } catch (e) {
    return failure(id, e);
  }
}

/** Issues one leaf; never rejects. */
async function issue(
  id: number,
  caId: number,
  order: Parameters<typeof issueLeafOrder>[1],
): Promise<ThreadReply> {
  const ca = cas.get(caId);
  if (!ca) {
    return failure(id, new CastellanError('internal', `CA ${caId} is not registered here`), 'sign');
  }
  try {
    return { id, ok: true, issued: await issueLeafOrder(ca, order) } as const;
  } catch (e) {
    return e instanceof LeafOrderFailure ? failure(id, e.error, e.stage) : failure(id, e, 'sign');
  }
}

/** Replies of this turn, posted together (one message, one wake-up of the event loop). */
let outbox: ThreadReply[] = [];
const flush = (): void => {
  const batch = outbox;
  outbox = [];
  port.postMessage(batch);
};
const send = (reply: ThreadReply): void => {
  if (outbox.length === 0) setImmediate(flush);
  outbox.push(reply);
};

/**
 * Requests come in batches; registrations come first in theirs, in order. Replies go out per
 * turn of this thread's loop: ECDSA leaves are signed synchronously, so a batch of them is
 * answered in one message; an RSA leaf, signed on libuv's pool, goes out in the turn its
 * signature comes back, not held for the slowest of its batch (which cost RSA CAs throughput at
 * 64 calls in flight).
 */
port.on('message', (batch: readonly ThreadRequest[]) => {
  for (const request of batch) {
    if (request.op === 'ca') {
      try {
        cas.set(request.ca, threadCa(request.certDer, request.key));
      } catch {
        // Left unregistered: its orders are refused (`internal`), as a signing failure.
      }
      for (const id of cas.keys()) if (!request.keep.includes(id)) cas.delete(id);
    } else if (request.op === 'jwt') {
      send({ id: request.id, ok: true, jwt: runOffloadedJwt(request.check, jwtVerifiers) });
    } else if (request.op === 'issue') {
      void issue(request.id, request.ca, request.order).then(send);
    } else {
      send(check(request.id, request.pem));
    }
  }
});
port.postMessage('ready');
