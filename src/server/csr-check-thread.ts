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

/**
 * Replies are posted in chunks of this many, and whatever is left at the end of the thread's
 * turn. Posting as soon as a few are ready is what lets the two threads overlap: the event loop
 * answers the first calls of a batch (and reads the next ones) while this thread signs the rest.
 * Holding a whole batch's replies to its end (one message per turn, as before 2026-12-07) left
 * each thread waiting for the other: at P-256 c=64 the event loop was 51% idle and this thread
 * 30% idle, with the CA at 0.59–0.69× cfssl. Eight keeps the messages few (one per ≈ 2 ms of
 * P-256 work) while the event loop never waits long for work to answer.
 */
const REPLY_CHUNK = 8;

let outbox: ThreadReply[] = [];
const flush = (): void => {
  if (outbox.length === 0) return;
  const batch = outbox;
  outbox = [];
  port.postMessage(batch);
};
const send = (reply: ThreadReply): void => {
  if (outbox.length === 0) setImmediate(flush);
  outbox.push(reply);
  if (outbox.length >= REPLY_CHUNK) flush();
};

/** Requests received and not yet started, in order. */
const queue: ThreadRequest[] = [];
let draining = false;

/**
 * Works through the queue in order, one request at a time: registrations, token checks and CSR
 * checks synchronously; an ECDSA leaf is awaited before the next request starts (its steps only
 * wait on promises that are already settled, so the leaf is done — and its reply can go out —
 * before the next begins; started together, every leaf of a batch finished at its end). An RSA
 * leaf is only started: its signature runs on libuv's pool, one per core (an RSA-4096 signature
 * takes milliseconds, and waiting for each would cap the CA at one core), and its reply goes out
 * in the turn the signature comes back.
 */
async function drain(): Promise<void> {
  draining = true;
  for (let request = queue.shift(); request !== undefined; request = queue.shift()) {
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
      const issued = issue(request.id, request.ca, request.order).then(send);
      if (cas.get(request.ca)?.algorithm.family === 'ecdsa') await issued;
    } else {
      send(check(request.id, request.pem));
    }
  }
  draining = false;
}

/** Requests come in batches (one per turn of the event loop); registrations come first. */
port.on('message', (batch: readonly ThreadRequest[]) => {
  for (const request of batch) queue.push(request);
  if (!draining) void drain();
});
port.postMessage('ready');
