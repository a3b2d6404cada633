import type { Logger } from '../log.js';
import type { RateLimit } from './admission.js';
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
  /**
   * `cancelled`: the caller left (cancel, deadline, closed connection) before we signed.
   * `shed`: refused by admission control (src/server/admission.ts), lines rate-limited.
   */
  readonly outcome: 'issued' | 'refused' | 'cancelled' | 'shed';
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
 * The audit trail: exactly one structured line per CreateCertificate call, issued, refused or
 * cancelled,
 * on its own child logger (`"audit":"csr"`) so it can be filtered from operational logs.
 */
export class AuditLog {
  private readonly log: Logger;
  private readonly shedLines: RateLimit;
  /** The shed-line bucket: tokens left and when it was last filled (undefined: full). */
  private shedTokens: number;
  private shedUpdatedMs: number | undefined;
  /** Shed lines dropped since the last one written; the next one written says how many. */
  private suppressed = 0;

  constructor(logger: Logger, options: { readonly shedLines?: RateLimit } = {}) {
    this.log = logger.child({ audit: 'csr' });
    this.shedLines = options.shedLines ?? SHED_LINES;
    this.shedTokens = this.shedLines.burst;
  }

  record(r: AuditRecord): void {
    const line = this.line(r);
    if (r.outcome === 'issued') this.log.info(line, 'certificate issued');
    else if (r.outcome === 'cancelled') this.log.info(line, 'certificate request cancelled');
    else this.log.warn(line, 'certificate request refused');
  }

  /**
   * A line of a call that cost us no signature and that a client can repeat at will — refused
   * by admission control, or given up (cancelled, or left the queue) before it was
   * authenticated: one line per call, like every other, but at most `shedLines` of them (a
   * token bucket on the log itself), since an overload or a client opening and cancelling calls
   * in a loop is exactly when lines would flood the log. Returns false when the line was
   * suppressed; the next line written carries `suppressed`, the count dropped since the
   * previous one.
   */
  recordLimited(r: AuditRecord, nowMs: number): boolean {
    const elapsed = this.shedUpdatedMs === undefined ? 0 : Math.max(0, nowMs - this.shedUpdatedMs);
    this.shedUpdatedMs = nowMs;
    this.shedTokens = Math.min(
      this.shedLines.burst,
      this.shedTokens + (elapsed / 1000) * this.shedLines.perSecond,
    );
    if (this.shedTokens < 1) {
      this.suppressed++;
      return false;
    }
    this.shedTokens -= 1;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    const line = { ...this.line(r), suppressed: suppressed > 0 ? suppressed : undefined };
    if (r.outcome === 'shed') this.log.warn(line, 'certificate request shed');
    else if (r.outcome === 'cancelled') this.log.info(line, 'certificate request cancelled');
    else this.log.warn(line, 'certificate request refused');
    return true;
  }

  private line(r: AuditRecord): Record<string, unknown> {
    return {
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
  }
}

/**
 * Shed lines: 20 a second, bursts of 100. An overload sheds thousands of calls a second (the
 * reliability suite sheds 1,500 in one burst); 20 lines a second, each with the count suppressed
 * before it, tell who is shed and how much without the log becoming the next bottleneck.
 */
const SHED_LINES: RateLimit = { perSecond: 20, burst: 100 };

/** A client-chosen string in an audit line: at most 256 characters. */
function capped(s: string): string {
  return s.length > 256 ? `${s.slice(0, 256)}…` : s;
}
