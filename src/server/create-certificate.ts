import { performance } from 'node:perf_hooks';
import { status, type Metadata, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  undecodableReason,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
} from '../api/istioca.js';
import type { CaSnapshot, CaState } from '../ca/key-cert-bundle.js';
import type { AuthRequest, Caller } from '../authn/authenticator.js';
import {
  impersonationUnavailable,
  requestedImpersonation,
  type Impersonation,
} from '../authn/impersonation.js';
import { CLUSTER_ID_METADATA } from '../authn/token-review-authenticator.js';
import type { Clock } from '../clock.js';
import { CastellanError, asCastellanError } from '../errors.js';
import { formatSpiffeId, makeSpiffeId } from '../pki/spiffe.js';
import { QueueAbandoned, Shed, type Admission } from './admission.js';
import { admitCall, retryPushback, type CallTicket } from './admission-call.js';
import type { AuditImpersonation, AuditLog } from './audit.js';
import { grpcAuthRequest } from './auth-request.js';
import { CA_SERVICE_TEXTS, toGrpcFailure, type GrpcFailure } from './status-map.js';
import type { CaMetrics, SignErrorLabel } from './metrics.js';

/** Istio refuses nothing this large; we refuse CSRs above it before parsing a byte. */
export const MAX_CSR_BYTES = 64 * 1024;

/** A leaf the CA signed, as the handler needs it. */
export interface IssuedLeaf {
  /** The response's cert_chain: the leaf, then the snapshot's chain and root(s); PEMs ending "\n". */
  readonly certChainPem: readonly string[];
  /** Lowercase hex. */
  readonly serialHex: string;
  readonly notAfter: Date;
}

/**
 * The two steps of issuance the handler calls, kept apart so that a CSR defect (the caller's
 * fault: INVALID_ARGUMENT, CSR_ERROR) is told from a signing failure (ours: CERT_GEN_ERROR).
 * `C` is whatever the CSR parser returns; only its public key and self-signature count.
 */
export interface LeafIssuer<C> {
  /** Parses and verifies the CSR (proof of possession); fails with a CastellanError kind. */
  parseCsr(pem: string): C | Promise<C>;
  /** Signs a workload leaf for these SANs, NotAfter clamped to the signing certificate. */
  sign(snapshot: CaSnapshot, csr: C, sans: readonly string[], ttlMs: number): Promise<IssuedLeaf>;
  /**
   * Both steps at once (one hop to the crypto thread, src/server/issuers.ts); undefined when this
   * issuer cannot take this one, and then the handler calls parseCsr and sign. A CSR defect
   * rejects with CsrRejected; anything else is a signing failure.
   */
  issue?(
    snapshot: CaSnapshot,
    csrPem: string,
    sans: readonly string[],
    ttlMs: number,
  ): Promise<IssuedLeaf> | undefined;
}

/** LeafIssuer.issue's refusal of the CSR: what parseCsr would have thrown. */
export class CsrRejected extends Error {
  constructor(readonly error: CastellanError) {
    super(error.message);
  }
}

export interface TtlPolicy {
  /** Used when the request asks for ≤ 0 seconds. */
  readonly defaultTtlMs: number;
  /** Requests above this are refused (INVALID_ARGUMENT), as Istio does. */
  readonly maxTtlMs: number;
}

export interface CaServiceDeps<C> {
  /**
   * The trust domain of the SPIFFE IDs issued; a function is asked on every request, so a mesh
   * config change reaches the next one (src/cli/serve/mesh-holder.ts).
   */
  readonly trustDomain: string | (() => string);
  readonly caState: CaState;
  /** Resolves to the caller or rejects with CastellanError('unauthenticated', reason). */
  readonly authenticate: (request: AuthRequest) => Promise<Caller>;
  readonly issuer: LeafIssuer<C>;
  /**
   * Ambient mode: grants a node proxy the identity named in the request's metadata
   * (src/authn/impersonation.ts). Absent: every request for impersonation is refused.
   */
  readonly impersonation?: Impersonation | undefined;
  readonly ttl: TtlPolicy;
  readonly clock: Clock;
  readonly metrics: CaMetrics;
  readonly audit: AuditLog;
  /** Admission control (./admission.ts); absent: no limit. */
  readonly admission?: Admission | undefined;
}

/** A refusal on its way out: the error, plus the Istio metric label when it is a signing error. */
class Refusal extends Error {
  constructor(
    readonly error: CastellanError,
    readonly signErrorLabel?: SignErrorLabel,
  ) {
    super(error.message);
  }
}

/**
 * The caller cancelled (or its deadline passed, or its connection closed) before we signed:
 * nothing is issued for a caller that left, and the audit line says so.
 */
class CallCancelled extends Error {
  constructor(readonly stage: string) {
    super(`the call was cancelled by the client ${stage}`);
  }
}

/** The gRPC status a refused call ends with, on its way from handle() to the callback. */
class CallRefused extends Error {
  constructor(readonly failure: GrpcFailure & { readonly metadata?: Metadata }) {
    super(failure.details);
  }
}

/** Resolves the TTL as Istio does: ≤ 0 → default; above the maximum → refused. */
export function resolveTtlMs(requestedSeconds: number, policy: TtlPolicy): number {
  if (!Number.isFinite(requestedSeconds) || requestedSeconds <= 0) return policy.defaultTtlMs;
  const ms = requestedSeconds * 1000;
  if (ms > policy.maxTtlMs) {
    throw new CastellanError(
      'invalid-argument',
      `requested TTL ${requestedSeconds}s is greater than the max allowed TTL ${policy.maxTtlMs / 1000}s`,
      { subject: 'validity_duration' },
    );
  }
  return ms;
}

/**
 * The CreateCertificate handler of `istio.v1.auth.IstioCertificateService`. The identity in the
 * certificate is always the authenticated caller's SPIFFE ID; the CSR contributes only its
 * public key. Every call ends in exactly one audit line, issued or refused, and never throws:
 * every failure becomes a gRPC status through `toGrpcFailure`.
 */
export function createCertificateHandler<C>(deps: CaServiceDeps<C>) {
  if (deps.admission) deps.metrics.followAdmission(deps.admission);
  return (
    call: ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
    callback: sendUnaryData<IstioCertificateResponse>,
  ): void => {
    void handle(deps, call).then(
      (response) => callback(null, response),
      (e: unknown) =>
        callback(e instanceof CallRefused ? e.failure : toGrpcFailure(e, CA_SERVICE_TEXTS)),
    );
  };
}

async function handle<C>(
  deps: CaServiceDeps<C>,
  call: ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
): Promise<IstioCertificateResponse> {
  const started = performance.now();
  const { metrics, audit } = deps;
  metrics.csrCount.inc();
  const peer = call.getPeer();
  const undecodable = undecodableReason(call.request);
  const csrPem = typeof call.request.csr === 'string' ? call.request.csr : '';
  // A number, 0 when absent: proto-loader's `longs: Number` and `defaults` (src/api/protos.ts).
  const requestedTtlSeconds = undecodable === undefined ? call.request.validityDuration : 0;
  // Cheap (a flag grpc-js sets on RST_STREAM, deadline or connection close): asked before the
  // authentication and again before signing, the two steps that cost.
  const throwIfCancelled = (stage: string): void => {
    if (call.cancelled) throw new CallCancelled(stage);
  };
  let caller: Caller | undefined;
  let spiffeId: string | undefined;
  let impersonation: AuditImpersonation | undefined;
  let ticket: CallTicket | undefined;

  try {
    if (undecodable !== undefined) {
      // The bytes were not an IstioCertificateRequest (src/api/istioca.ts): the caller's fault.
      throw new Refusal(
        new CastellanError('malformed', `the request could not be decoded: ${undecodable}`, {
          subject: 'request',
        }),
      );
    }
    if (Buffer.byteLength(csrPem, 'utf8') > MAX_CSR_BYTES) {
      throw new Refusal(
        new CastellanError('too-large', `the CSR is larger than ${MAX_CSR_BYTES} bytes`, {
          subject: 'csr',
        }),
        'CSR_ERROR',
      );
    }

    // Admission control: a slot before any crypto; the caller's budget once it is known.
    ticket = await admitCall(deps.admission, call, deps.clock);
    throwIfCancelled('before authentication');
    try {
      caller = await deps.authenticate(
        grpcAuthRequest(call, caChainDer(deps.caState.current()), { forwardMetadata: true }),
      );
    } catch (e) {
      metrics.authnErrorCount.inc();
      // Whatever went wrong (bad token, expired, unknown issuer, a bug): the client sees one
      // opaque UNAUTHENTICATED; the reason goes to the audit line.
      const err = asCastellanError(e);
      throw new Refusal(
        err.kind === 'unauthenticated' ? err : new CastellanError('unauthenticated', err.message),
      );
    }
    const trustDomain =
      typeof deps.trustDomain === 'function' ? deps.trustDomain() : deps.trustDomain;
    const callerId = formatSpiffeId(
      makeSpiffeId(trustDomain, caller.namespace, caller.serviceAccount),
    );
    spiffeId = callerId;

    // Ambient mode, one step of its own: a node proxy names the workload it asks for. Granted,
    // the certificate carries exactly that identity; refused, the call fails as an
    // authentication failure (istiod's server.go) — never with the caller's own identity.
    try {
      const requested = requestedImpersonation(call.request.metadata);
      if (requested !== undefined) {
        const clusterId = singleClusterId(call);
        impersonation = {
          requested,
          caller: callerId,
          pod: caller.podName !== undefined ? `${caller.namespace}/${caller.podName}` : undefined,
          cluster: clusterId,
        };
        spiffeId = undefined;
        const grant = await (deps.impersonation ?? NO_IMPERSONATION).authorize(
          caller,
          requested,
          clusterId,
        );
        impersonation = { ...impersonation, node: grant.node };
        spiffeId = grant.spiffeId;
      }
    } catch (e) {
      metrics.authnErrorCount.inc();
      spiffeId = undefined; // Nothing is issued: not the caller's identity either.
      const err = asCastellanError(e);
      throw new Refusal(
        err.kind === 'impersonation-refused'
          ? err
          : new CastellanError('impersonation-refused', err.message),
      );
    }

    ticket.charge(
      impersonation?.node !== undefined
        ? { kind: 'node', caller: callerId, node: impersonation.node }
        : { kind: 'identity', spiffeId: callerId },
    );

    const snapshot = deps.caState.current();
    if (!snapshot) {
      throw new Refusal(new CastellanError('unavailable', 'no CA is loaded yet'), 'CA_NOT_READY');
    }

    let ttlMs: number;
    try {
      ttlMs = resolveTtlMs(requestedTtlSeconds, deps.ttl);
    } catch (e) {
      throw new Refusal(asCastellanError(e), 'TTL_ERROR');
    }

    const leaf = await issueLeaf(deps, snapshot, csrPem, spiffeId, ttlMs, () =>
      throwIfCancelled('before signing'),
    );

    metrics.successCount.inc();
    const seconds = (performance.now() - started) / 1000;
    metrics.issuanceSeconds.observe({ outcome: 'issued' }, seconds);
    audit.record({
      outcome: 'issued',
      code: 'OK',
      serial: leaf.serialHex,
      spiffeId,
      notAfter: leaf.notAfter,
      authenticator: caller.authenticator,
      subject: caller.subject,
      impersonation,
      peer,
      requestedTtlSeconds,
      durationMs: seconds * 1000,
    });
    return { certChain: [...leaf.certChainPem] };
  } catch (e) {
    /**
     * The call's one audit line. `limited`: a call that cost no signature and that a client can
     * repeat at will (shed, or given up before authentication) — its lines share the audit
     * log's rate limit.
     */
    const audited = (
      outcome: 'cancelled' | 'refused' | 'shed',
      code: string,
      reason: string,
      limited: boolean,
    ): void => {
      const seconds = (performance.now() - started) / 1000;
      metrics.issuanceSeconds.observe(
        { outcome: outcome === 'cancelled' ? outcome : 'refused' },
        seconds,
      );
      const record = {
        outcome,
        code,
        reason,
        spiffeId,
        authenticator: caller?.authenticator,
        subject: caller?.subject,
        impersonation,
        peer,
        requestedTtlSeconds,
        durationMs: seconds * 1000,
      };
      if (!limited) audit.record(record);
      else if (!audit.recordLimited(record, deps.clock.now())) {
        metrics.auditLinesSuppressedCount.inc();
      }
    };
    if (e instanceof CallCancelled) {
      metrics.cancelledCount.inc();
      audited('cancelled', 'CANCELLED', e.message, !caller);
      // grpc-js sends nothing on a cancelled stream; the status is for its bookkeeping.
      throw new CallRefused({ code: status.CANCELLED, details: e.message });
    }
    const refusal = e instanceof Refusal ? e : new Refusal(asCastellanError(e), 'CERT_GEN_ERROR');
    if (refusal.signErrorLabel) metrics.signErrorCount.inc({ error: refusal.signErrorLabel });
    const failure = toGrpcFailure(refusal.error, CA_SERVICE_TEXTS);
    const shed = refusal.error instanceof Shed ? refusal.error : undefined;
    const abandoned = refusal.error instanceof QueueAbandoned;
    if (shed) metrics.shedCount.inc({ reason: shed.reason });
    else if (abandoned) metrics.queueAbandonedCount.inc();
    audited(
      shed ? 'shed' : 'refused',
      status[failure.code],
      `${refusal.error.kind}: ${refusal.error.message}`,
      shed !== undefined || abandoned,
    );
    throw new CallRefused(shed ? { ...failure, metadata: retryPushback(shed) } : failure);
  } finally {
    ticket?.release();
  }
}

/**
 * The CSR check and the signature: in one step when the issuer can (LeafIssuer.issue), else in
 * two. Either way a CSR defect is the caller's (CSR_ERROR, csr_parsing_err_count; `internal`:
 * CERT_GEN_ERROR) and a signing failure ours (CERT_GEN_ERROR; `unavailable`: CA_NOT_READY).
 */
async function issueLeaf<C>(
  deps: CaServiceDeps<C>,
  snapshot: CaSnapshot,
  csrPem: string,
  spiffeId: string,
  ttlMs: number,
  /** Throws when the call should not be signed any more (its client left): asked last. */
  beforeSigning: () => void,
): Promise<IssuedLeaf> {
  const csrRefusal = (e: unknown): Refusal => {
    deps.metrics.csrParsingErrorCount.inc();
    const err = asCastellanError(e, 'malformed');
    return new Refusal(err, err.kind === 'internal' ? 'CERT_GEN_ERROR' : 'CSR_ERROR');
  };
  const signRefusal = (e: unknown): Refusal => {
    const err = asCastellanError(e);
    return new Refusal(err, err.kind === 'unavailable' ? 'CA_NOT_READY' : 'CERT_GEN_ERROR');
  };
  // One hop checks and signs together on the crypto thread: the last moment to ask is before it.
  if (deps.issuer.issue) beforeSigning();
  const oneHop = deps.issuer.issue?.(snapshot, csrPem, [spiffeId], ttlMs);
  if (oneHop) {
    try {
      return await oneHop;
    } catch (e) {
      throw e instanceof CsrRejected ? csrRefusal(e.error) : signRefusal(e);
    }
  }
  let csr: C;
  try {
    csr = await deps.issuer.parseCsr(csrPem);
  } catch (e) {
    throw csrRefusal(e);
  }
  beforeSigning();
  try {
    return await deps.issuer.sign(snapshot, csr, [spiffeId], ttlMs);
  } catch (e) {
    throw signRefusal(e);
  }
}

/** Without a node authorizer (local mode, or no trusted node accounts): always refused. */
const NO_IMPERSONATION = impersonationUnavailable(
  'impersonation is not enabled: no trusted node accounts (Kubernetes mode with --trusted-node-account or CA_TRUSTED_NODE_ACCOUNTS)',
);

/**
 * The cluster a multi-cluster caller names (`clusterid` metadata, as Istio's
 * kubeauth.ExtractClusterID reads it); undefined when absent. More than one is refused.
 */
function singleClusterId(
  call: ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
): string | undefined {
  const values = call.metadata.get(CLUSTER_ID_METADATA).filter((v) => typeof v === 'string');
  if (values.length > 1) {
    throw new CastellanError(
      'impersonation-refused',
      `${values.length} clusterid values; at most one is accepted`,
    );
  }
  return values[0] === '' ? undefined : values[0];
}

/**
 * The CA's own chain (the signing certificate and its intermediates), DER: what stands in for
 * the intermediates of a peer certificate, since grpc-js hands out the peer's leaf alone.
 */
export function caChainDer(snapshot: CaSnapshot | undefined): Uint8Array[] {
  return (snapshot?.bundle.certChain ?? []).map((c) => new Uint8Array(c.rawData));
}
