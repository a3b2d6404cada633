import type { Logger } from '../log.js';
import type { AuthenticatorName } from '../authn/authenticator.js';

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
      peer: r.peer,
      requestedTtlSeconds: r.requestedTtlSeconds,
      durationMs: Math.round(r.durationMs * 1000) / 1000,
    };
    if (r.outcome === 'issued') this.log.info(line, 'certificate issued');
    else this.log.warn(line, 'certificate request refused');
  }
}
