// `castellan serve`'s flags and environment, completed once into typed options: flags win over
// the environment, the environment over defaults. Each component declares its own options type
// next to itself; this file fills them in and refuses every bad value before anything starts,
// with one convention: CastellanError('invalid-argument', why, { subject: the flag or variable }),
// which prints as `castellan: --flag: why` (exit code 2).
import { isIP } from 'node:net';
import type { LevelWithSilent } from 'pino';
import { parseHostPort, type HostPort } from '../../address.js';
import { parseTrustedNodeAccounts } from '../../authn/impersonation.js';
import type { AuthnOptions } from '../../authn/options.js';
import type { CaOptions } from '../../ca/options.js';
import { parsePkcs11Uri } from '../../ca/signers/pkcs11-uri.js';
import { parseDuration } from '../../duration.js';
import { CastellanError } from '../../errors.js';
import { DEFAULT_LEASE_NAME, DEFAULT_ROOT_ROTATION_CHECK_MS } from '../../kube/defaults.js';
import type { KubeOptions } from '../../kube/options.js';
import { CA_KEY_TYPES, isCaKeyType } from '../../pki/key-type.js';
import { validateTrustDomain } from '../../pki/spiffe.js';
import type { PolicyOptions } from '../../server/policy-options.js';
import type { ServerOptions } from '../../server/server-options.js';
import { LOG_LEVELS, SERVE_DEFAULTS, TRUSTED_NODE_ACCOUNTS_ENV, type ServeFlags } from './flags.js';

/** The process environment, as the composition root hands it down. */
export type Environment = Readonly<Record<string, string | undefined>>;

/** `castellan serve`, fully resolved: every default applied, every value checked. */
export interface ServeOptions {
  readonly logLevel: LevelWithSilent;
  /** Processes sharing the gRPC port (./cluster.ts); undefined = one. */
  readonly workers: WorkersSetting | undefined;
  readonly ca: CaOptions;
  readonly authn: AuthnOptions;
  readonly server: ServerOptions;
  readonly policy: PolicyOptions;
  /** Kubernetes mode's settings; undefined in local mode. */
  readonly kube: KubeOptions | undefined;
}

/** `--workers`: a count, or `auto` = the cores available. */
export type WorkersSetting = number | 'auto';
/** More processes than this would only cost memory: each one saturates a core. */
export const MAX_WORKERS = 64;
/** More CSR threads than this per process would only cost memory. */
export const MAX_CSR_THREADS = 16;

const DNS_NAME =
  /^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** The one way a flag or variable is refused: `<subject>: <why>`. */
function bad(subject: string, why: string): CastellanError {
  return new CastellanError('invalid-argument', why, { subject });
}

/** The parsers' own messages name only the value; the flag becomes the subject. */
function checked<T>(subject: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw bad(subject, (e as Error).message);
  }
}

const duration = (subject: string, text: string): number =>
  checked(subject, () => parseDuration(text));
const address = (subject: string, text: string): HostPort =>
  checked(subject, () => parseHostPort(text));

const isLoopback = (host: string): boolean =>
  host === 'localhost' || host === '::1' || /^127\./.test(host);

/** Two listeners that would collide (port 0 picks a free port, so it never does). */
function sameListener(a: HostPort, b: HostPort): boolean {
  return a.port !== 0 && a.port === b.port && a.host === b.host;
}

/** `--workers`, `--csr-threads`: `auto`, or a whole number from `min` to `max`. */
function countOrAuto(flag: string, value: string, min: number, max: number): number | 'auto' {
  if (value === 'auto') return 'auto';
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) {
    throw bad(flag, `"${value}" is not "auto" or a whole number from ${min} to ${max}`);
  }
  return n;
}

function nonEmpty(flag: string, value: string | undefined): string | undefined {
  if (value === '') throw bad(flag, 'must not be empty');
  return value;
}

/**
 * Completes serve's options from its flags and the environment (DEFAULT_WORKLOAD_CERT_TTL,
 * MAX_WORKLOAD_CERT_TTL; KUBERNETES_SERVICE_HOST and CASTELLAN_KUBE for Kubernetes mode).
 * Throws CastellanError('invalid-argument') naming the flag or variable of the first bad value.
 */
export function completeServeOptions(flags: ServeFlags, env: Environment = {}): ServeOptions {
  const trustDomain = flags.trustDomain ?? SERVE_DEFAULTS.trustDomain;
  checked('--trust-domain', () => validateTrustDomain(trustDomain));
  const grpcAddress = address('--grpc-addr', flags.grpcAddr ?? SERVE_DEFAULTS.grpcAddr);
  const monitoringAddress = address(
    '--monitoring-addr',
    flags.monitoringAddr ?? SERVE_DEFAULTS.monitoringAddr,
  );
  if (sameListener(grpcAddress, monitoringAddress)) {
    throw bad('--monitoring-addr', 'must differ from --grpc-addr');
  }

  if ((flags.jwtIssuer === undefined) !== (flags.jwksFile === undefined)) {
    throw bad(
      flags.jwtIssuer === undefined ? '--jwks-file' : '--jwt-issuer',
      '--jwt-issuer and --jwks-file go together',
    );
  }
  if (flags.jwtIssuer === '') throw bad('--jwt-issuer', 'must not be empty');
  const tokenAudiences = flags.tokenAudience ?? [...SERVE_DEFAULTS.tokenAudience];
  if (tokenAudiences.some((a) => a.trim() === '')) {
    throw bad('--token-audience', 'audiences must not be empty');
  }

  const defaultTtlText =
    flags.defaultTtl ?? env['DEFAULT_WORKLOAD_CERT_TTL'] ?? SERVE_DEFAULTS.defaultTtl;
  const maxTtlText = flags.maxTtl ?? env['MAX_WORKLOAD_CERT_TTL'] ?? SERVE_DEFAULTS.maxTtl;
  // The flag names the error whenever it is given, even empty: it is what was used.
  const defaultTtlMs = duration(
    flags.defaultTtl !== undefined ? '--default-ttl' : 'DEFAULT_WORKLOAD_CERT_TTL',
    defaultTtlText,
  );
  const maxTtlMs = duration(
    flags.maxTtl !== undefined ? '--max-ttl' : 'MAX_WORKLOAD_CERT_TTL',
    maxTtlText,
  );
  if (defaultTtlMs > maxTtlMs) {
    throw bad('--default-ttl', `default TTL ${defaultTtlText} is above the maximum ${maxTtlText}`);
  }

  const logLevel = (flags.logLevel ?? SERVE_DEFAULTS.logLevel) as LevelWithSilent;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw bad('--log-level', `"${flags.logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  const namespace = flags.namespace ?? SERVE_DEFAULTS.namespace;
  if (!NAMESPACE.test(namespace)) throw bad('--namespace', `"${namespace}" is not a DNS label`);
  const caKeyType = flags.caKeyType ?? SERVE_DEFAULTS.caKeyType;
  if (!isCaKeyType(caKeyType)) {
    throw bad('--ca-key-type', `"${caKeyType}" is not one of ${CA_KEY_TYPES.join(', ')}`);
  }

  let names = flags.servingDns;
  if (names === undefined) {
    names = [`castellan.${namespace}.svc`, `istiod.${namespace}.svc`];
    if (isLoopback(grpcAddress.host)) names.push('localhost', '127.0.0.1');
  }
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const n of names) {
    if (isIP(n)) ipAddresses.push(n);
    else if (DNS_NAME.test(n.toLowerCase())) dnsNames.push(n.toLowerCase());
    else throw bad('--serving-dns', `"${n}" is neither a DNS name nor an IP address`);
  }

  const dataDir = nonEmpty('--data-dir', flags.dataDir) ?? SERVE_DEFAULTS.dataDir;
  const cacertsDir = nonEmpty('--cacerts-dir', flags.cacertsDir);
  const caKeyUri = flags.caKeyUri?.trim();
  // Checked now; the token is opened when the CA loads. The parser's errors never show a PIN.
  if (caKeyUri !== undefined) checked('--ca-key-uri', () => parsePkcs11Uri(caKeyUri));
  const cacertsPollIntervalMs = duration(
    '--cacerts-poll-interval',
    flags.cacertsPollInterval ?? SERVE_DEFAULTS.cacertsPollInterval,
  );
  const policyDir = nonEmpty('--policy-dir', flags.policyDir);
  const meshConfigFile = nonEmpty('--mesh-config', flags.meshConfig);
  const bundleAddress =
    flags.bundleAddr === undefined ? undefined : address('--bundle-addr', flags.bundleAddr);
  for (const [flag, other] of [
    ['--grpc-addr', grpcAddress],
    ['--monitoring-addr', monitoringAddress],
  ] as const) {
    if (bundleAddress && sameListener(bundleAddress, other)) {
      throw bad('--bundle-addr', `must differ from ${flag}`);
    }
  }
  const workers =
    flags.workers === undefined
      ? undefined
      : countOrAuto('--workers', flags.workers, 1, MAX_WORKERS);
  const csrThreads = countOrAuto(
    '--csr-threads',
    flags.csrThreads ?? SERVE_DEFAULTS.csrThreads,
    0,
    MAX_CSR_THREADS,
  );

  const kube = completeKubeOptions(flags, env, namespace);
  if (kube && workers !== undefined && workers !== 1) {
    // Kubernetes mode runs leader election, Secret and policy watches and the TokenReview
    // cache per process; several per pod would multiply them. Scale with replicas instead.
    throw bad('--workers', 'only 1 worker in --kube mode (scale with replicas)');
  }
  if (caKeyUri !== undefined && !kube && cacertsDir === undefined) {
    // The key alone is no CA: its certificates come from the folder or the `cacerts` Secret.
    throw bad('--ca-key-uri', 'goes with --cacerts-dir, or --kube (the certificates of the key)');
  }

  return {
    logLevel,
    workers,
    ca: {
      trustDomain,
      selfSignedKeyType: caKeyType,
      dataDir,
      cacertsDir,
      caKeyUri,
      cacertsPollIntervalMs,
    },
    authn: {
      tokenAudiences,
      externalJwt:
        flags.jwtIssuer !== undefined && flags.jwksFile !== undefined
          ? { issuer: flags.jwtIssuer, jwksFile: flags.jwksFile }
          : undefined,
    },
    server: {
      grpcAddress,
      monitoringAddress,
      bundleAddress,
      servingNames: { dnsNames, ipAddresses },
      ttl: { defaultTtlMs, maxTtlMs },
      csrThreads,
    },
    policy: {
      policyDir,
      meshConfigFile,
      defaultRootNamespace: namespace,
      defaultTrustDomain: trustDomain,
    },
    kube,
  };
}

/**
 * Kubernetes mode is on with --kube or --kubeconfig, and automatically in a pod
 * (KUBERNETES_SERVICE_HOST set) unless CASTELLAN_KUBE=false. Its flags are checked either way.
 */
function completeKubeOptions(
  flags: ServeFlags,
  env: Environment,
  namespace: string,
): KubeOptions | undefined {
  const inPod = Boolean(env['KUBERNETES_SERVICE_HOST']) && env['CASTELLAN_KUBE'] !== 'false';
  const enabled = flags.kube === true || inPod || flags.kubeconfig !== undefined;
  const remoteKubeconfigs = new Map<string, string>();
  for (const spec of flags.remoteKubeconfig ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(spec);
    if (!m) throw bad('--remote-kubeconfig', `"${spec}" is not clusterid=path`);
    const [, id, path] = m as unknown as [string, string, string];
    if (remoteKubeconfigs.has(id)) throw bad('--remote-kubeconfig', `cluster "${id}" given twice`);
    remoteKubeconfigs.set(id, path);
  }
  const leaseName = flags.leaseName ?? DEFAULT_LEASE_NAME;
  if (!OBJECT_NAME.test(leaseName)) {
    throw bad('--lease-name', `"${leaseName}" is not a valid object name`);
  }
  if (!enabled && (flags.jwtOffline || remoteKubeconfigs.size > 0)) {
    throw bad(flags.jwtOffline ? '--jwt-offline' : '--remote-kubeconfig', 'needs --kube');
  }
  // The flag wins over the environment, as everywhere in serve.
  const envAccounts = env[TRUSTED_NODE_ACCOUNTS_ENV];
  const trustedNodeAccounts =
    flags.trustedNodeAccount !== undefined
      ? parseTrustedNodeAccounts(flags.trustedNodeAccount, '--trusted-node-account')
      : envAccounts !== undefined && envAccounts.trim() !== ''
        ? parseTrustedNodeAccounts(envAccounts.split(','), TRUSTED_NODE_ACCOUNTS_ENV)
        : [];
  if (!enabled && trustedNodeAccounts.length > 0) {
    // Local mode has no pods to check a node against: impersonation there is always refused.
    throw bad(
      flags.trustedNodeAccount !== undefined ? '--trusted-node-account' : TRUSTED_NODE_ACCOUNTS_ENV,
      'needs --kube',
    );
  }
  const optionalDuration = (flag: string, text: string | undefined, fallback: number): number =>
    text === undefined ? fallback : duration(flag, text);
  const options: KubeOptions = {
    kubeconfigPath: flags.kubeconfig,
    namespace,
    jwtOffline: flags.jwtOffline === true,
    leaseName,
    leaseDurationMs: optionalDuration('--lease-duration', flags.leaseDuration, 15_000),
    tokenReviewCacheMaxAgeMs: optionalDuration(
      '--token-review-cache-ttl',
      flags.tokenReviewCacheTtl,
      60_000,
    ),
    remoteKubeconfigs,
    rootRotationCheckMs: optionalDuration(
      '--root-rotation-check-interval',
      flags.rootRotationCheckInterval,
      DEFAULT_ROOT_ROTATION_CHECK_MS,
    ),
    clusterId: flags.clusterId ?? SERVE_DEFAULTS.clusterId,
    trustedNodeAccounts,
  };
  return enabled ? options : undefined;
}
