// The Kubernetes-mode flags of `serve`: defined and checked here, without loading
// @kubernetes/client-node (≈0.5 s of start-up), which only src/cli/kube-wiring.ts pulls in,
// and only when Kubernetes mode is on.
import { Option, type Command } from 'commander';
import { parseTrustedNodeAccounts, type NodeAccount } from '../authn/impersonation.js';
import { parseDuration } from '../duration.js';
import { CastellanError } from '../errors.js';
import { DEFAULT_LEASE_NAME, DEFAULT_ROOT_ROTATION_CHECK_MS } from '../kube/defaults.js';
import { collect } from './options.js';

/** The Kubernetes-mode flags as commander hands them over. */
export interface RawKubeOptions {
  kube?: boolean;
  kubeconfig?: string;
  jwtOffline?: boolean;
  leaseName?: string;
  leaseDuration?: string;
  tokenReviewCacheTtl?: string;
  remoteKubeconfig?: string[];
  rootRotationCheckInterval?: string;
  clusterId?: string;
  trustedNodeAccount?: string[];
}

/** istiod's variable for the same list: comma-separated `namespace/serviceaccount`. */
export const TRUSTED_NODE_ACCOUNTS_ENV = 'CA_TRUSTED_NODE_ACCOUNTS';

export interface KubeModeConfig {
  readonly enabled: boolean;
  readonly kubeconfigPath: string | undefined;
  readonly jwtOffline: boolean;
  readonly leaseName: string;
  readonly leaseDurationMs: number;
  readonly tokenReviewCacheMaxAgeMs: number;
  /** cluster id → kubeconfig file. */
  readonly remoteKubeconfigs: ReadonlyMap<string, string>;
  readonly rootRotationCheckMs: number;
  readonly clusterId: string;
  /**
   * Ambient mode: service accounts allowed to ask for the identities of pods on their node
   * (ztunnel). Empty: impersonation is refused and no pod index is kept.
   */
  readonly trustedNodeAccounts: readonly NodeAccount[];
}

/** Adds the Kubernetes-mode flags to `serve`. */
export function addKubeOptions(command: Command): Command {
  return command
    .option(
      '--kube',
      'Kubernetes mode: CA from Secrets, TokenReview, leader election (automatic in a pod)',
    )
    .option('--kubeconfig <path>', 'kubeconfig to reach the API server from outside the cluster')
    .option(
      '--jwt-offline',
      "also verify tokens offline with the API server's issuer keys (keeps issuing while it is down)",
    )
    .option(
      '--lease-name <name>',
      `coordination.k8s.io Lease used for leader election (default ${DEFAULT_LEASE_NAME})`,
    )
    .option('--lease-duration <d>', 'leader lease duration (default 15s)')
    .option(
      '--token-review-cache-ttl <d>',
      'longest a TokenReview answer is reused (default 60s; never past the token exp)',
    )
    .option(
      '--remote-kubeconfig <clusterid=path>',
      'a remote cluster for TokenReview, chosen by the clusterid gRPC metadata (repeatable)',
      collect,
    )
    .option(
      '--root-rotation-check-interval <d>',
      'how often the leader checks the self-signed root (default 1h)',
    )
    .addOption(
      new Option(
        '--cluster-id <id>',
        "this cluster's id in clusterid metadata (default Kubernetes)",
      ),
    )
    .option(
      '--trusted-node-account <ns/sa>',
      `ambient mode: a node proxy's service account (e.g. istio-system/ztunnel) allowed to ask for certificates of pods on its node, repeatable (env ${TRUSTED_NODE_ACCOUNTS_ENV}, comma-separated)`,
      collect,
    );
}

function bad(flag: string, why: string): CastellanError {
  return new CastellanError('invalid-argument', `${flag}: ${why}`);
}

/** parseDuration's error already names the flag and quotes the value. */
function duration(flag: string, text: string | undefined, fallback: number): number {
  return text === undefined ? fallback : parseDuration(text, flag);
}

/**
 * Checks the Kubernetes flags before anything starts. Kubernetes mode is on with --kube, and
 * automatically in a pod (KUBERNETES_SERVICE_HOST set) unless CASTELLAN_KUBE=false.
 */
export function parseKubeOptions(raw: RawKubeOptions, env: NodeJS.ProcessEnv): KubeModeConfig {
  const inPod = Boolean(env['KUBERNETES_SERVICE_HOST']) && env['CASTELLAN_KUBE'] !== 'false';
  const enabled = raw.kube === true || inPod || raw.kubeconfig !== undefined;
  const remotes = new Map<string, string>();
  for (const spec of raw.remoteKubeconfig ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(spec);
    if (!m) throw bad('--remote-kubeconfig', `"${spec}" is not clusterid=path`);
    if (remotes.has(m[1] as string))
      throw bad('--remote-kubeconfig', `cluster "${m[1]}" given twice`);
    remotes.set(m[1] as string, m[2] as string);
  }
  const leaseName = raw.leaseName ?? DEFAULT_LEASE_NAME;
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(leaseName)) {
    throw bad('--lease-name', `"${leaseName}" is not a valid object name`);
  }
  if (!enabled && (raw.jwtOffline || remotes.size > 0)) {
    throw bad(raw.jwtOffline ? '--jwt-offline' : '--remote-kubeconfig', 'needs --kube');
  }
  // The flag wins over the environment, as everywhere in serve.
  const envAccounts = env[TRUSTED_NODE_ACCOUNTS_ENV];
  const trustedNodeAccounts =
    raw.trustedNodeAccount !== undefined
      ? parseTrustedNodeAccounts(raw.trustedNodeAccount, '--trusted-node-account')
      : envAccounts !== undefined && envAccounts.trim() !== ''
        ? parseTrustedNodeAccounts(envAccounts.split(','), TRUSTED_NODE_ACCOUNTS_ENV)
        : [];
  if (!enabled && trustedNodeAccounts.length > 0) {
    // Local mode has no pods to check a node against: impersonation there is always refused.
    throw bad(
      raw.trustedNodeAccount !== undefined ? '--trusted-node-account' : TRUSTED_NODE_ACCOUNTS_ENV,
      'needs --kube',
    );
  }
  return {
    enabled,
    kubeconfigPath: raw.kubeconfig,
    jwtOffline: raw.jwtOffline === true,
    leaseName,
    leaseDurationMs: duration('--lease-duration', raw.leaseDuration, 15_000),
    tokenReviewCacheMaxAgeMs: duration('--token-review-cache-ttl', raw.tokenReviewCacheTtl, 60_000),
    remoteKubeconfigs: remotes,
    rootRotationCheckMs: duration(
      '--root-rotation-check-interval',
      raw.rootRotationCheckInterval,
      DEFAULT_ROOT_ROTATION_CHECK_MS,
    ),
    clusterId: raw.clusterId ?? 'Kubernetes',
    trustedNodeAccounts,
  };
}
