// Types only: the CLI checks these flags without loading @kubernetes/client-node (≈0.5 s of
// start-up), which Kubernetes mode alone pulls in.
import type { NodeAccount } from '../authn/impersonation.js';

/** Kubernetes mode (`serve --kube`, or automatically in a pod). */
export interface KubeOptions {
  /** Undefined: the pod's service account (in-cluster config). */
  readonly kubeconfigPath: string | undefined;
  /** The namespace Castellan runs in: its Secrets, Lease and Events. */
  readonly namespace: string;
  /** Also verify tokens offline with the API server's issuer keys. */
  readonly jwtOffline: boolean;
  readonly leaseName: string;
  readonly leaseDurationMs: number;
  /**
   * Longest a TokenReview answer (or an offline-verified JWT) is reused, never past the token's
   * exp; 0 = no cache: every request is reviewed, as istiod does.
   */
  readonly tokenReviewCacheMaxAgeMs: number;
  /** Remote clusters for TokenReview: cluster id → kubeconfig file. */
  readonly remoteKubeconfigs: ReadonlyMap<string, string>;
  /** How often the leader checks whether the self-signed root needs re-issuing; 0 = never. */
  readonly rootRotationCheckMs: number;
  /** Re-issue the self-signed root when at most this percentage of its lifetime remains. */
  readonly rootRotationGracePercent: number;
  /** The ConfigMap the trust bundle is published as in every namespace (istio-ca-root-cert). */
  readonly rootCertConfigMap: string;
  /**
   * The ConfigMap the leader publishes the CA's CRL as in every namespace (istiod's
   * PILOT_CRL_CONFIGMAP, default istio-ca-crl), key ca-crl.pem.
   */
  readonly crlConfigMapName: string;
  /** This cluster's id in the clusterid gRPC metadata. */
  readonly clusterId: string;
  /**
   * Ambient mode: service accounts allowed to ask for the identities of pods on their node
   * (ztunnel). Empty: impersonation is refused and no pod index is kept.
   */
  readonly trustedNodeAccounts: readonly NodeAccount[];
}
