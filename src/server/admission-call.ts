// The CreateCertificate handler's side of admission control (./admission.ts): what a gRPC call
// is queued by, and how a queued call leaves when its client cancels.
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import type { Clock } from '../clock.js';
import {
  isUrgentRenewal,
  type Admission,
  type LeaveSignal,
  type QueuePriority,
  type RateKey,
  type Shed,
} from './admission.js';

/** One admitted call: charge its caller's bucket once known, release its slot when done. */
export interface CallTicket {
  charge(key: RateKey): void;
  release(): void;
}

const UNLIMITED: CallTicket = { charge: () => {}, release: () => {} };

/**
 * Waits for a slot for `call` (before any crypto: token verification costs CPU too). Rejects
 * with a Shed when the queue is full, or with CastellanError('unavailable') when the client
 * cancels while waiting. Without admission control, a ticket that limits nothing.
 */
export async function admitCall(
  admission: Admission | undefined,
  call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'once' | 'off' | 'cancelled'>,
  clock: Clock,
): Promise<CallTicket> {
  if (!admission) return UNLIMITED;
  const ticket = (slot: { release(): void }): CallTicket => ({
    charge: (key) => admission.charge(key),
    release: () => slot.release(),
  });
  // A free slot: no priority to read (the peer certificate) and no cancellation to follow.
  const free = admission.tryAcquire();
  if (free) return ticket(free);
  const left = new CallLeft();
  const onCancel = (): void => left.abort();
  call.once('cancelled', onCancel);
  if (call.cancelled) left.abort();
  try {
    return ticket(await admission.acquire(queuePriority(call, clock.now()), left));
  } finally {
    call.off('cancelled', onCancel);
  }
}

/**
 * acquire()'s signal for one waiting call: the three members of AbortSignal it uses, without an
 * AbortController's EventTarget (at P-256 c=64 half the calls wait for a slot, and that state was
 * ≈ 2% of the event loop's time and among what it promoted to the old generation). The call
 * points at it, never the reverse: the queue holds the signal, and the signal holds nothing of the
 * call (a signal that did read the call made the event loop promote ≈ 4× more, docs/performance.md).
 */
class CallLeft implements LeaveSignal {
  aborted = false;
  private listener: (() => void) | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    this.listener = listener;
  }

  removeEventListener(): void {
    this.listener = undefined;
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const listener = this.listener;
    this.listener = undefined;
    listener?.();
  }
}

/**
 * Urgent when the caller presents a client certificate (a renewal) with less than a quarter of
 * its lifetime left. Read from the TLS layer without parsing: grpc-js hands out the peer
 * certificate only when the handshake verified it against the CA's roots (socket.authorized,
 * server-interceptors.js getAuthContext), so its validity dates are ours to trust, and no
 * signature is checked here — that waits for a slot, in the client-certificate authenticator.
 */
export function queuePriority(
  call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext'>,
  nowMs: number,
): QueuePriority {
  const peer = call.getAuthContext().sslPeerCertificate;
  if (!peer) return {};
  const notBefore = Date.parse(peer.valid_from);
  const notAfter = Date.parse(peer.valid_to);
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) return {};
  return isUrgentRenewal(notBefore, notAfter, nowMs) ? { urgentUntilMs: notAfter } : {};
}

/**
 * The retry hint of a shed call, gRFC A6's `grpc-retry-pushback-ms` trailer: clients with a
 * retry policy in their service config (grpc-go, grpc-java, grpc-js) wait that long before
 * their next attempt. pilot-agent and ztunnel ignore it and back off on their own (./admission.ts).
 */
export function retryPushback(shed: Shed): Metadata {
  const trailers = new Metadata();
  trailers.set('grpc-retry-pushback-ms', String(shed.retryAfterMs));
  return trailers;
}
