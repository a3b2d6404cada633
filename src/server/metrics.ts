import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CaSnapshot } from '../ca/key-cert-bundle.js';
import type { Clock } from '../clock.js';
import type { ShedReason } from './admission.js';

/**
 * Istio's label values for `citadel_server_csr_sign_err_count{error}` (security/pkg/pki/error),
 * so dashboards written for istiod keep working.
 */
export type SignErrorLabel = 'CA_NOT_READY' | 'CSR_ERROR' | 'TTL_ERROR' | 'CERT_GEN_ERROR';

/**
 * The CA service's Prometheus metrics, with Istio's names. Each instance has its own Registry,
 * so several servers in one process (tests) never share counters.
 */
export class CaMetrics {
  readonly registry = new Registry();
  readonly csrCount: Counter;
  readonly authnErrorCount: Counter;
  readonly csrParsingErrorCount: Counter;
  readonly signErrorCount: Counter<'error'>;
  readonly successCount: Counter;
  /** Calls the client cancelled before we signed: nothing was issued (not in istiod). */
  readonly cancelledCount: Counter;
  readonly issuanceSeconds: Histogram<'outcome'>;
  /** Calls refused by admission control, by the limit that refused them. */
  readonly shedCount: Counter<'reason'>;
  /** Calls whose client cancelled while they waited for a slot. */
  readonly queueAbandonedCount: Counter;
  /** Audit lines of shed calls dropped by the audit log's own rate limit. */
  readonly auditLinesSuppressedCount: Counter;
  /** Admission control's state, read when scraped; no sample without admission control. */
  private admission: FollowedAdmission | undefined;
  /** The first root of the trust bundle, as istiod reports it. */
  private rootNotAfterMs: number | undefined;
  /** The root that expires first, whichever its place in the trust bundle. */
  private earliestRootNotAfterMs: number | undefined;
  private chainNotAfterMs: number | undefined;
  /** The loaded CA's CRL (ca-crl.pem), when it has one: its earliest nextUpdate and size. */
  private crl: { nextUpdateMs: number | undefined; revoked: number } | undefined;

  constructor(private readonly clock: Clock) {
    const registers = [this.registry];
    this.csrCount = new Counter({
      name: 'citadel_server_csr_count',
      help: 'The number of CSRs received by the CA server.',
      registers,
    });
    this.authnErrorCount = new Counter({
      name: 'citadel_server_authentication_failure_count',
      help: 'The number of authentication failures.',
      registers,
    });
    this.csrParsingErrorCount = new Counter({
      name: 'citadel_server_csr_parsing_err_count',
      help: 'The number of errors occurred when parsing the CSR.',
      registers,
    });
    this.signErrorCount = new Counter({
      name: 'citadel_server_csr_sign_err_count',
      help: 'The number of errors occurred when signing the CSR.',
      labelNames: ['error'],
      registers,
    });
    this.successCount = new Counter({
      name: 'citadel_server_success_cert_issuance_count',
      help: 'The number of certificates issuances that have succeeded.',
      registers,
    });
    this.cancelledCount = new Counter({
      name: 'castellan_csr_cancelled_total',
      help: 'The number of CSRs whose call the client cancelled (or whose deadline passed) before the certificate was signed; nothing was issued.',
      registers,
    });
    this.issuanceSeconds = new Histogram({
      name: 'castellan_csr_duration_seconds',
      help: 'Time to answer CreateCertificate, from the request to the response, by outcome.',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.shedCount = new Counter({
      name: 'castellan_csr_shed_total',
      help: 'CreateCertificate calls refused at once with RESOURCE_EXHAUSTED by admission control, by reason: queue_full (too many in progress and waiting), identity_rate (the identity is over --rate-limit), node_rate (a node proxy is over its node budget).',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of SHED_REASONS) this.shedCount.inc({ reason }, 0);
    this.queueAbandonedCount = new Counter({
      name: 'castellan_csr_queue_abandoned_total',
      help: 'CreateCertificate calls whose client cancelled while they waited for a slot.',
      registers,
    });
    this.auditLinesSuppressedCount = new Counter({
      name: 'castellan_audit_lines_suppressed_total',
      help: 'Audit lines of shed calls not written because of the audit log rate limit.',
      registers,
    });
    gauge(
      registers,
      'castellan_csr_inflight',
      'CreateCertificate calls in progress (holding a slot of --max-inflight-csr).',
      () => this.admission?.inflight,
    );
    gauge(
      registers,
      'castellan_csr_queued',
      'CreateCertificate calls waiting for a slot (at most --max-queued-csr).',
      () => this.admission?.queued,
    );
    // The bounds in force, so that saturation is a ratio an alert can read
    // (castellan_csr_inflight / castellan_csr_inflight_limit); with --workers each process
    // holds its share, rounded up, and the primary sums them: the service's real bound.
    gauge(
      registers,
      'castellan_csr_inflight_limit',
      'CreateCertificate calls that may be in progress at once (--max-inflight-csr, as split among --workers).',
      () => this.admission?.options.maxInflight,
    );
    gauge(
      registers,
      'castellan_csr_queue_limit',
      'CreateCertificate calls that may wait for a slot (--max-queued-csr, as split among --workers).',
      () => this.admission?.options.maxQueued,
    );
    // Timestamps are set when the CA changes; the *_seconds variants are "time left", so they
    // are computed when scraped (Istio exports both).
    const left = (at: number | undefined): number | undefined =>
      at === undefined ? undefined : (at - this.clock.now()) / 1000;
    // As istiod computes them (security/pkg/server/ca/server.go, RecordCertsExpiry, through
    // KeyCertBundle.ExtractRootCertExpiryTimestamp): the NotAfter of the FIRST certificate of
    // root-cert.pem, whole seconds. During a root change the bundle holds old and new roots and
    // the first is not necessarily the one that expires first: that one has its own gauge.
    gauge(
      registers,
      'citadel_server_root_cert_expiry_timestamp',
      'The unix timestamp, in seconds, when the root cert will expire (the first root of the trust bundle, as istiod reports it).',
      () => (this.rootNotAfterMs === undefined ? undefined : this.rootNotAfterMs / 1000),
    );
    gauge(
      registers,
      'citadel_server_root_cert_expiry_seconds',
      'The time remaining, in seconds, before the root cert will expire (the first root of the trust bundle). A negative value indicates the cert is expired.',
      () => left(this.rootNotAfterMs),
    );
    gauge(
      registers,
      'castellan_ca_root_cert_earliest_expiry_timestamp',
      'The unix timestamp, in seconds, when the first of the trusted roots (all of the trust bundle) will expire.',
      () =>
        this.earliestRootNotAfterMs === undefined ? undefined : this.earliestRootNotAfterMs / 1000,
    );
    gauge(
      registers,
      'citadel_server_cert_chain_expiry_timestamp',
      'The unix timestamp, in seconds, when the CA certificate chain will expire.',
      () => (this.chainNotAfterMs === undefined ? undefined : this.chainNotAfterMs / 1000),
    );
    gauge(
      registers,
      'citadel_server_cert_chain_expiry_seconds',
      'The time remaining, in seconds, before the CA certificate chain expires.',
      () => left(this.chainNotAfterMs),
    );
    // The CRL of a plugged-in CA (ca-crl.pem). No sample while the CA has none. An expired CRL
    // is the failure istiod users hit most: alert on `castellan_ca_crl_next_update_timestamp
    // - time() < 86400`, or on castellan_ca_crl_expired.
    gauge(
      registers,
      'castellan_ca_crl_next_update_timestamp',
      'The unix timestamp, in seconds, of the earliest nextUpdate of the CA CRLs (ca-crl.pem).',
      () => (this.crl?.nextUpdateMs === undefined ? undefined : this.crl.nextUpdateMs / 1000),
    );
    gauge(
      registers,
      'castellan_ca_crl_revoked_certificates',
      'The number of revoked certificates listed by the CA CRLs (ca-crl.pem).',
      () => this.crl?.revoked,
    );
    gauge(
      registers,
      'castellan_ca_crl_expired',
      '1 when the nextUpdate of a CA CRL (ca-crl.pem) has passed (it is still published), else 0.',
      () =>
        this.crl === undefined
          ? undefined
          : this.crl.nextUpdateMs !== undefined && this.crl.nextUpdateMs < this.clock.now()
            ? 1
            : 0,
    );
  }

  /** Reports this admission control's in-flight and queued counts when scraped. */
  followAdmission(admission: FollowedAdmission): void {
    this.admission = admission;
  }

  /**
   * Follows the CA: the first root and the earliest one, the earliest certificate of the signing chain, and the
   * CRL loaded with it (none: its gauges have no sample).
   */
  observeCa(snapshot: CaSnapshot): void {
    const { roots, certChain } = snapshot.bundle;
    this.rootNotAfterMs = roots[0]?.notAfter.getTime();
    this.earliestRootNotAfterMs = earliest(roots.map((c) => c.notAfter.getTime()));
    this.chainNotAfterMs = earliest(certChain.map((c) => c.notAfter.getTime()));
    const crl = snapshot.bundle.crl;
    this.crl = crl && { nextUpdateMs: crl.nextUpdate?.getTime(), revoked: crl.revokedCount };
  }
}

/** What the admission gauges read (an Admission, ./admission.ts). */
export interface FollowedAdmission {
  readonly inflight: number;
  readonly queued: number;
  readonly options: { readonly maxInflight: number; readonly maxQueued: number };
}

const SHED_REASONS: readonly ShedReason[] = ['queue_full', 'identity_rate', 'node_rate'];

function earliest(values: number[]): number | undefined {
  return values.length === 0 ? undefined : Math.min(...values);
}

/**
 * A gauge whose value is read when scraped, with no sample at all while the value is unknown.
 * prom-client gives an unlabelled gauge a 0 sample even after reset(), which for a timestamp
 * reads as "expired in 1970" and fires expiry alerts on a CA that has no CRL.
 */
class ScrapedGauge extends Gauge {
  constructor(
    registers: Registry[],
    name: string,
    help: string,
    private readonly read: () => number | undefined,
  ) {
    super({ name, help, registers });
  }

  override async get(): ReturnType<Gauge['get']> {
    const v = this.read();
    if (v === undefined) return { ...(await super.get()), values: [] };
    this.set(v);
    return super.get();
  }
}

function gauge(
  registers: Registry[],
  name: string,
  help: string,
  value: () => number | undefined,
): void {
  new ScrapedGauge(registers, name, help, value);
}
