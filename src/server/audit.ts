import type { Logger } from '../log.js';
import type { AuthenticatorName } from '../authn/authenticator.js';

/**
 * Ambient mode: a node proxy that asked for another workload's identity. With `spiffeId` (the
 * identity issued, or undefined when refused), the audit line names both sides.
 */
export interface AuditImpersonation {
  /** The identity asked for, as sent (client-controlled: capped in the line). */
  readonly requested: string;
  /** The node proxy's own identity (its service account). */
  readonly caller: string;
  /** The node proxy's pod, `namespace/name`, from its bound token. */
  readonly pod?: string | undefined;
  /** The node both pods run on; only once the node authorizer found it. */
  readonly node?: string | undefined;
  /** The `clusterid` the request named, when it named one. */
  readonly cluster?: string | undefined;
}

/** One CreateCertificate call as the audit trail records it. Never a token, never a key. */
export interface AuditRecord {
  readonly outcome: 'issued' | 'refused';
  /** The gRPC status name sent back (OK, INVALID_ARGUMENT, UNAUTHENTICATED, ...). */
  readonly code: string;
  /** Why it was refused, precise (this is where the real authentication failure reason goes). */
  readonly reason?: string | undefined;
  /** Certificate serial, lowercase hex; only when issued. */
  readonly serial?: string | undefined;
  readonly spiffeId?: string | undefined;
  readonly notAfter?: Date | undefined;
  readonly authenticator?: AuthenticatorName | undefined;
  /** What the credential named: a token's `sub`, a TokenReview username or a client certificate's URI. */
  readonly subject?: string | undefined;
  /** Set when the request asked to impersonate (ambient mode). */
  readonly impersonation?: AuditImpersonation | undefined;
  readonly peer: string;
  readonly requestedTtlSeconds: number;
  readonly durationMs: number;
}

/**
 * The audit trail: exactly one structured line per CreateCertificate call, issued or refused,
 * on its own child logger (`"audit":"csr"`) so it can be filtered from operational logs.
 */
export class AuditLog {
  private readonly log: Logger;

  constructor(logger: Logger) {
    this.log = logger.child({ audit: 'csr' });
  }

  record(r: AuditRecord): void {
    const line = {
      outcome: r.outcome,
      code: r.code,
      reason: r.reason,
      serial: r.serial,
      spiffeId: r.spiffeId,
      notAfter: r.notAfter?.toISOString(),
      authenticator: r.authenticator,
      subject: r.subject,
      impersonation: r.impersonation && {
        ...r.impersonation,
        requested: capped(r.impersonation.requested),
      },
      peer: r.peer,
      requestedTtlSeconds: r.requestedTtlSeconds,
      durationMs: Math.round(r.durationMs * 1000) / 1000,
    };
    if (r.outcome === 'issued') this.log.info(line, 'certificate issued');
    else this.log.warn(line, 'certificate request refused');
  }
}

/** A client-chosen string in an audit line: at most 256 characters. */
function capped(s: string): string {
  return s.length > 256 ? `${s.slice(0, 256)}…` : s;
}
