// Defaults of Kubernetes mode that the CLI needs before (and without) loading the client: serve
// in local mode must not load @kubernetes/client-node (≈ 25 MB of heap, and start-up time).
import { NOT_BEFORE_BACKDATE_MS } from '../ca/issue-workload.js';
/** The coordination.k8s.io Lease replicas compete for. */
export const DEFAULT_LEASE_NAME = 'castellan-leader';
/** How often the leader checks whether the self-signed root needs re-issuing. */
export const DEFAULT_ROOT_ROTATION_CHECK_MS = 3_600_000;
/** istiod's default name of the CRL ConfigMap (pilot/pkg/features: PILOT_CRL_CONFIGMAP). */
export const DEFAULT_CRL_CONFIGMAP = 'istio-ca-crl';

/**
 * The longest self-signed root TTL that would be due for re-issue as soon as it is made. A new
 * root is backdated (NOT_BEFORE_BACKDATE_MS, for clock skew; istiod's is not:
 * security/pkg/pki/util/generate_cert.go, genCertTemplateFromOptions, `notBefore :=
 * time.Now()`), so its lifetime is the TTL plus the backdate, and with TTL ≤ grace/(100 − grace)
 * × backdate (plus the seconds' rounding, below) the time left at birth is already within the
 * grace period. Such a root was re-issued at every check and the trust bundle grew by one root
 * each time, so serve refuses TTLs up to this.
 */
export function longestRootTtlDueAtOnceMs(gracePercent: number): number {
  // Certificate times are whole seconds, cut down: the time left at birth may be up to 1 s
  // short of the TTL, and the lifetime up to 1 s longer than TTL + backdate (found in review:
  // at 20%, a 31 s root made late in a second was due at once). So the bound solves
  // TTL − 1 s ≤ g × (TTL + backdate + 1 s).
  const g = gracePercent / 100;
  return (g * (NOT_BEFORE_BACKDATE_MS + 1000) + 1000) / (1 - g);
}
