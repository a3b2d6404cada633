// Every flag of `castellan serve`, declared once. Commander only collects strings here: the
// values are checked, and defaults applied, in one place (completeServeOptions, ./options.ts).
import { Option, type Command } from 'commander';
import type { LevelWithSilent } from 'pino';
import { DEFAULT_CRL_CONFIGMAP, DEFAULT_LEASE_NAME } from '../../kube/defaults.js';
import { CA_KEY_TYPES, type CaKeyType } from '../../pki/key-type.js';
import { collect } from '../options.js';
import { GRPC_TRANSPORTS, type GrpcTransport } from '../../server/grpc-transport.js';

/** istiod's variable for the trusted node accounts: comma-separated `namespace/serviceaccount`. */
export const TRUSTED_NODE_ACCOUNTS_ENV = 'CA_TRUSTED_NODE_ACCOUNTS';
/** istiod's variables for the plugged-in CA's CRL (pilot/pkg/features). */
export const ENABLE_CA_CRL_ENV = 'PILOT_ENABLE_CA_CRL';
export const CRL_CONFIGMAP_ENV = 'PILOT_CRL_CONFIGMAP';

/**
 * istiod's environment variables that serve honours, each with the flag that means the same and
 * wins over it (docs/serve.md has this table; a test holds the two together). Where istiod reads
 * them: pilot/pkg/bootstrap/istio_ca.go (ROOT_CA_DIR, the TTLs, the CITADEL_SELF_SIGNED_* trio),
 * pkg/security/security.go (TOKEN_AUDIENCES), pilot/pkg/features/pilot.go (CLUSTER_ID),
 * pilot/pkg/features/experimental.go (PILOT_CA_CERT_CONFIGMAP), pilot/pkg/features/security.go
 * (CA_TRUSTED_NODE_ACCOUNTS).
 */
export const ISTIOD_ENV = {
  TOKEN_AUDIENCES: '--token-audience',
  CA_TRUSTED_NODE_ACCOUNTS: '--trusted-node-account',
  CLUSTER_ID: '--cluster-id',
  ROOT_CA_DIR: '--cacerts-dir',
  PILOT_CA_CERT_CONFIGMAP: '--root-cert-configmap',
  CITADEL_SELF_SIGNED_CA_CERT_TTL: '--self-signed-root-ttl',
  CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL: '--root-rotation-check-interval',
  CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: '--root-rotation-grace-percent',
  DEFAULT_WORKLOAD_CERT_TTL: '--default-ttl',
  MAX_WORKLOAD_CERT_TTL: '--max-ttl',
} as const;
export type IstiodEnvName = keyof typeof ISTIOD_ENV;

/** What an absent flag (and environment variable) means. */

export const SERVE_DEFAULTS = {
  dataDir: './.castellan',
  cacertsPollInterval: '2s',
  trustDomain: 'cluster.local',
  grpcAddr: '127.0.0.1:15012',
  monitoringAddr: '127.0.0.1:15014',
  tokenAudience: ['istio-ca'],
  defaultTtl: '24h',
  maxTtl: '2160h',
  logLevel: 'info' as LevelWithSilent,
  namespace: 'istio-system',
  // ECDSA: generating it takes milliseconds, so a first start reaches /ready quickly.
  caKeyType: 'ec-p256' as CaKeyType,
  csrThreads: 'auto',
  // src/server/connection-guard.ts DEFAULT_CONNECTION_LIMITS: istiod's keepalive.
  handshakeTimeout: '10s',
  idleTimeout: '5m',
  keepaliveInterval: '30s',
  keepaliveTimeout: '10s',
  grpcTransport: 'castellan' as GrpcTransport,
  maxInflightCsr: 'auto',
  maxQueuedCsr: 'auto',
  rateLimit: '20/s',
  rateLimitBurst: 100,
  nodeRateLimitFactor: 8,
  clusterId: 'Kubernetes',
  // istiod's defaults (security/pkg/cmd/constants.go; pilot/pkg/features/experimental.go).
  selfSignedRootTtl: '87600h',
  rootRotationCheckInterval: '1h',
  rootRotationGracePercent: 20,
  rootCertConfigMap: 'istio-ca-root-cert',
} as const;

export const LOG_LEVELS: readonly LevelWithSilent[] = [
  'trace',
  'debug',
  'info',
  'warn',
  'error',
  'fatal',
  'silent',
];

/** The flags as commander hands them over (strings, before checking). */
export interface ServeFlags {
  dataDir?: string;
  cacertsDir?: string;
  caKeyUri?: string;
  cacertsPollInterval?: string;
  trustDomain?: string;
  grpcAddr?: string;
  monitoringAddr?: string;
  jwtIssuer?: string;
  jwksFile?: string;
  tokenAudience?: string[];
  defaultTtl?: string;
  maxTtl?: string;
  logLevel?: string;
  servingDns?: string[];
  namespace?: string;
  caKeyType?: string;
  policyDir?: string;
  meshConfig?: string;
  bundleAddr?: string;
  workers?: string;
  csrThreads?: string;
  handshakeTimeout?: string;
  idleTimeout?: string;
  keepaliveInterval?: string;
  keepaliveTimeout?: string;
  grpcTransport?: string;
  maxInflightCsr?: string;
  maxQueuedCsr?: string;
  rateLimit?: string;
  rateLimitBurst?: string;
  nodeRateLimitFactor?: string;
  // Kubernetes mode.
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
  selfSignedRootTtl?: string;
  rootRotationGracePercent?: string;
  rootCertConfigmap?: string;
  caCrl?: string;
  crlConfigmap?: string;
}

/** Declares serve's flags on a command (no defaults here: completeServeOptions applies them). */
export function addServeFlags(command: Command): Command {
  return command
    .option('--data-dir <dir>', `state folder (default "${SERVE_DEFAULTS.dataDir}")`)
    .option(
      '--cacerts-dir <dir>',
      'plugged-in CA folder (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem); local mode (env ROOT_CA_DIR)',
    )
    .option(
      '--ca-key-uri <pkcs11-uri>',
      "the plugged-in CA's key in a PKCS#11 token, instead of ca-key.pem: pkcs11:token=…;object=…?module-path=…&pin-source=file:… (docs/hsm.md)",
    )
    .option(
      '--cacerts-poll-interval <duration>',
      `how often --cacerts-dir is re-read for a new CA (default ${SERVE_DEFAULTS.cacertsPollInterval})`,
    )
    .option(
      '--trust-domain <domain>',
      `SPIFFE trust domain when the mesh config names none (default "${SERVE_DEFAULTS.trustDomain}")`,
    )
    .option('--grpc-addr <host:port>', `gRPC TLS listener (default ${SERVE_DEFAULTS.grpcAddr})`)
    .option(
      '--monitoring-addr <host:port>',
      `/ready, /metrics, /healthz (default ${SERVE_DEFAULTS.monitoringAddr})`,
    )
    .option('--jwt-issuer <iss>', 'trust JWTs from this issuer (with --jwks-file)')
    .option('--jwks-file <file>', "the issuer's JSON Web Key Set (with --jwt-issuer)")
    .option(
      '--token-audience <aud>',
      'accepted token audience, repeatable (default istio-ca; env TOKEN_AUDIENCES, comma-separated)',
      collect,
    )
    .option(
      '--default-ttl <duration>',
      'certificate TTL when the request asks for none (default 24h; env DEFAULT_WORKLOAD_CERT_TTL)',
    )
    .option(
      '--max-ttl <duration>',
      'largest TTL a request may ask for (default 2160h = 90 days; env MAX_WORKLOAD_CERT_TTL)',
    )
    .addOption(new Option('--log-level <level>', 'log level (default info)').choices(LOG_LEVELS))
    .option(
      '--serving-dns <name>',
      'DNS name or IP of the serving certificate, repeatable (default castellan.<ns>.svc, istiod.<ns>.svc; plus localhost and 127.0.0.1 on a loopback --grpc-addr)',
      collect,
    )
    .option(
      '--namespace <ns>',
      `namespace the service runs in (default ${SERVE_DEFAULTS.namespace})`,
    )
    .addOption(
      new Option(
        '--ca-key-type <type>',
        'key type of a new self-signed root (default ec-p256)',
      ).choices(CA_KEY_TYPES),
    )
    .option(
      '--policy-dir <dir>',
      'folder of PeerAuthentication, AuthorizationPolicy, RequestAuthentication and Pod manifests, followed (local mode)',
    )
    .option(
      '--mesh-config <file>',
      'MeshConfig: trustDomain, trustDomainAliases, rootNamespace, extensionProviders, pathNormalization, discoverySelectors (default: in --kube mode, ConfigMap istio key mesh, followed)',
    )
    .option(
      '--bundle-addr <host:port>',
      'HTTPS listener for GET /v1/bundles/<ns>/<pod>; a request without a client certificate gets 401 (default off)',
    )
    .option(
      '--workers <n|auto>',
      'processes sharing the gRPC port; auto = one per core (default 1; only 1 in --kube mode)',
    )
    .option(
      '--csr-threads <n|auto>',
      'threads per process checking CSRs beside the event loop; 0 = on the event loop; auto = 1 with two or more cores, else 0',
      SERVE_DEFAULTS.csrThreads,
    )
    .option(
      '--handshake-timeout <duration>',
      'gRPC port: close a connection whose TLS handshake has not finished by then (Node alone waits 120s)',
      SERVE_DEFAULTS.handshakeTimeout,
    )
    .option(
      '--idle-timeout <duration>',
      'gRPC port: send GOAWAY and close a connection with no call in flight for this long',
      SERVE_DEFAULTS.idleTimeout,
    )
    .option(
      '--keepalive-interval <duration>',
      "gRPC port: ping every connection this often (istiod's keepaliveInterval)",
      SERVE_DEFAULTS.keepaliveInterval,
    )
    .option(
      '--keepalive-timeout <duration>',
      "gRPC port: close a connection whose ping is not answered by then (istiod's keepaliveTimeout)",
      SERVE_DEFAULTS.keepaliveTimeout,
    )
    .addOption(
      new Option(
        '--grpc-transport <name>',
        'gRPC port: castellan = our HTTP/2 and gRPC (default); grpc-js = @grpc/grpc-js on node:http2 (docs/performance.md)',
      ).choices(GRPC_TRANSPORTS),
    )
    .option(
      '--max-inflight-csr <n|auto>',
      'CreateCertificate calls in progress at most, for the whole service (split among --workers); auto = 16 per core (default: auto)',
    )
    .option(
      '--max-queued-csr <n|auto>',
      'calls waiting for a slot at most; beyond, RESOURCE_EXHAUSTED at once; auto = 16 × --max-inflight-csr (default: auto)',
    )
    .option(
      '--rate-limit <n/s|n/m|n/h|off>',
      `each identity's CreateCertificate budget, refilled continuously (default ${SERVE_DEFAULTS.rateLimit}; per worker)`,
    )
    .option(
      '--rate-limit-burst <n>',
      `calls an identity may make at once before --rate-limit applies (default ${SERVE_DEFAULTS.rateLimitBurst})`,
    )
    .option(
      '--node-rate-limit-factor <n>',
      `ambient mode: a node proxy's budget per node, as a multiple of --rate-limit and --rate-limit-burst (default ${SERVE_DEFAULTS.nodeRateLimitFactor})`,
    )
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
      'longest a TokenReview answer (and an offline-verified JWT) is reused (default 60s; never past the token exp; 0 = every request is reviewed)',
    )
    .option(
      '--remote-kubeconfig <clusterid=path>',
      'a remote cluster for TokenReview, chosen by the clusterid gRPC metadata (repeatable)',
      collect,
    )
    .option(
      '--root-rotation-check-interval <d>',
      'how often the leader checks the self-signed root (default 1h; 0 = never; env CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL)',
    )
    .option(
      '--root-rotation-grace-percent <n>',
      'the self-signed root is re-issued when less than this percentage of its lifetime remains (default 20; env CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE)',
    )
    .option(
      '--self-signed-root-ttl <d>',
      'lifetime of a new or re-issued self-signed root (default 87600h = 10 years; env CITADEL_SELF_SIGNED_CA_CERT_TTL)',
    )
    .option(
      '--root-cert-configmap <name>',
      'name of the ConfigMap the trust bundle is published as in every namespace (default istio-ca-root-cert; env PILOT_CA_CERT_CONFIGMAP)',
    )
    .addOption(
      new Option(
        '--cluster-id <id>',
        "this cluster's id in clusterid metadata (default Kubernetes; env CLUSTER_ID)",
      ),
    )
    .option(
      '--trusted-node-account <ns/sa>',
      `ambient mode: a node proxy's service account (e.g. istio-system/ztunnel) allowed to ask for certificates of pods on its node, repeatable (env ${TRUSTED_NODE_ACCOUNTS_ENV}, comma-separated)`,
      collect,
    )
    .option(
      '--ca-crl <true|false>',
      `read the plugged-in CA's ca-crl.pem, refuse renewals it revokes and publish it (default true; env ${ENABLE_CA_CRL_ENV})`,
    )
    .option(
      '--crl-configmap <name>',
      `ConfigMap the CRL is published as in every namespace, key ca-crl.pem (default ${DEFAULT_CRL_CONFIGMAP}; env ${CRL_CONFIGMAP_ENV})`,
    );
}
