// Defaults of Kubernetes mode that the CLI needs before (and without) loading the client.
/** The coordination.k8s.io Lease replicas compete for. */
export const DEFAULT_LEASE_NAME = 'castellan-leader';
/** How often the leader checks whether the self-signed root needs re-issuing. */
export const DEFAULT_ROOT_ROTATION_CHECK_MS = 3_600_000;
/** istiod's default name of the CRL ConfigMap (pilot/pkg/features: PILOT_CRL_CONFIGMAP). */
export const DEFAULT_CRL_CONFIGMAP = 'istio-ca-crl';
