// `castellan serve`'s flags and environment, completed once into typed options: flags win over
// the environment, the environment over defaults. Each component declares its own options type
// next to itself; this file fills them in and refuses every bad value before anything starts,
// with one convention: CastellanError('invalid-argument', why, { subject: the flag or variable }),
// which prints as `castellan: --flag: why` (exit code 2).
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import type { LevelWithSilent } from 'pino';
import { parseHostPort, type HostPort } from '../../address.js';
import { parseTrustedNodeAccounts } from '../../authn/impersonation.js';
import type { AuthnOptions } from '../../authn/options.js';
import type { CaOptions } from '../../ca/options.js';
import { parsePkcs11Uri } from '../../ca/signers/pkcs11-uri.js';
import { formatDuration, parseDuration, parseGoDuration } from '../../duration.js';
import { NOT_BEFORE_BACKDATE_MS } from '../../ca/issue-workload.js';
import { CastellanError } from '../../errors.js';
import {
  DEFAULT_CRL_CONFIGMAP,
  DEFAULT_LEASE_NAME,
  DEFAULT_ROOT_ROTATION_CHECK_MS,
  longestRootTtlDueAtOnceMs,
} from '../../kube/defaults.js';
import type { KubeOptions } from '../../kube/options.js';
import { CA_KEY_TYPES, isCaKeyType } from '../../pki/key-type.js';
import { validateTrustDomain } from '../../pki/spiffe.js';
import type { AdmissionOptions, RateLimit } from '../../server/admission.js';
import type { PolicyOptions } from '../../server/policy-options.js';
import type { ServerOptions } from '../../server/server-options.js';
import { GRPC_TRANSPORTS, type GrpcTransport } from '../../server/grpc-transport.js';
import {
  CRL_CONFIGMAP_ENV,
  ENABLE_CA_CRL_ENV,
  ISTIOD_ENV,
  LOG_LEVELS,
  SERVE_DEFAULTS,
  TRUSTED_NODE_ACCOUNTS_ENV,
  type IstiodEnvName,
  type ServeFlags,
} from './flags.js';

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
/** Kubernetes' bound on an object name (a DNS subdomain). */
const MAX_OBJECT_NAME = 253;

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

/** The values Go's strconv.ParseBool takes, as istiod reads its boolean variables. */
const GO_BOOLEANS: Readonly<Record<string, boolean>> = {
  '1': true,
  t: true,
  T: true,
  true: true,
  TRUE: true,
  True: true,
  '0': false,
  f: false,
  F: false,
  false: false,
  FALSE: false,
  False: false,
};

/**
 * A boolean setting: the flag when given, else the variable, else the default. Refused with its
 * name when it is not one of Go's boolean spellings (istiod would warn and use its default;
 * a typo in a security switch deserves a refusal).
 */
function flagOrEnvBoolean(
  flag: string,
  flagValue: string | undefined,
  variable: string,
  env: Environment,
  fallback: boolean,
): boolean {
  const [subject, text] = flagValue !== undefined ? [flag, flagValue] : [variable, env[variable]];
  if (text === undefined) return fallback;
  const value = GO_BOOLEANS[text.trim()];
  if (value === undefined) throw bad(subject, `"${text}" is not true or false`);
  return value;
}

function nonEmpty(flag: string, value: string | undefined): string | undefined {
  if (value === '') throw bad(flag, 'must not be empty');
  return value;
}

/** Where a setting came from: its text and the flag or istiod variable a refusal names. */
interface Setting {
  readonly text: string;
  readonly subject: string;
  /** From istiod's variable: parsed as istiod parses it (Go durations, strconv.Atoi). */
  readonly fromEnv: boolean;
}

/**
 * A flag's value, else its istiod variable's (ISTIOD_ENV), else undefined. A variable set to
 * the empty string counts as unset: istiod reads an empty duration or number as its default
 * (pkg/env/var.go), and an empty name or path would name nothing.
 */
function setting(
  flagValue: string | undefined,
  env: Environment,
  name: IstiodEnvName,
): Setting | undefined {
  if (flagValue !== undefined)
    return { text: flagValue, subject: ISTIOD_ENV[name], fromEnv: false };
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  return { text: value, subject: name, fromEnv: true };
}

/**
 * A duration in ms: a flag in Castellan's syntax (parseDuration: positive; `7d` and plain
 * seconds too), a variable in Go's, as istiod reads it (time.ParseDuration: `3600` or `7d` is
 * no Go duration — istiod would log a warning and use its default, so the value would not mean
 * what it says; it is refused here). `zeroTurnsOff`: 0 (from a flag) and any value ≤ 0 (from a
 * variable, as istiod reads it) mean "off" and return 0; otherwise the value must be positive.
 */
function durationSetting(s: Setting, zeroTurnsOff = false): number {
  if (!s.fromEnv) {
    if (zeroTurnsOff && /^0+(ms|s|m|h|d)?$/.test(s.text.trim())) return 0;
    return duration(s.subject, s.text);
  }
  const ms = checked(s.subject, () => parseGoDuration(s.text));
  if (ms <= 0) {
    if (zeroTurnsOff) return 0;
    throw bad(s.subject, `"${s.text}" is not a positive duration`);
  }
  // Whole milliseconds, as every timer and TTL here counts; a sub-millisecond value stays > 0.
  return Math.ceil(ms);
}

/**
 * Completes serve's options from its flags and the environment (istiod's variables, ISTIOD_ENV
 * in ./flags.ts, and PILOT_ENABLE_CA_CRL / PILOT_CRL_CONFIGMAP; KUBERNETES_SERVICE_HOST and CASTELLAN_KUBE for Kubernetes mode).
 * Throws CastellanError('invalid-argument') naming the flag or variable of the first bad value.
 */
export function completeServeOptions(
  flags: ServeFlags,
  env: Environment = {},
  cores: number = availableParallelism(),
): ServeOptions {
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

  const defaultTtl = setting(flags.defaultTtl, env, 'DEFAULT_WORKLOAD_CERT_TTL');
  const maxTtl = setting(flags.maxTtl, env, 'MAX_WORKLOAD_CERT_TTL');
  const defaultTtlText = defaultTtl?.text ?? SERVE_DEFAULTS.defaultTtl;
  const maxTtlText = maxTtl?.text ?? SERVE_DEFAULTS.maxTtl;
  // The flag names the error whenever it is given, even empty: it is what was used.
  const defaultTtlMs = defaultTtl
    ? durationSetting(defaultTtl)
    : parseDuration(SERVE_DEFAULTS.defaultTtl);
  const maxTtlMs = maxTtl ? durationSetting(maxTtl) : parseDuration(SERVE_DEFAULTS.maxTtl);
  if (defaultTtlMs > maxTtlMs) {
    // Stricter than istiod, which checks only requested TTLs against the maximum and would issue
    // certificates longer than it to every request that asks for none.
    // Named after what was set: the maximum alone (the default TTL left as it is) names the
    // maximum's flag or variable, not a flag the operator never passed.
    throw defaultTtl || !maxTtl
      ? bad(
          defaultTtl?.subject ?? '--default-ttl',
          `default TTL ${defaultTtlText} is above the maximum ${maxTtlText}`,
        )
      : bad(
          maxTtl.subject,
          `maximum TTL ${maxTtlText} is below the default TTL ${defaultTtlText} (--default-ttl, DEFAULT_WORKLOAD_CERT_TTL)`,
        );
  }

  const tokenAudiences = completeTokenAudiences(flags, env);
  const selfSignedRoot = setting(flags.selfSignedRootTtl, env, 'CITADEL_SELF_SIGNED_CA_CERT_TTL');
  const selfSignedRootTtlMs = selfSignedRoot
    ? durationSetting(selfSignedRoot)
    : parseDuration(SERVE_DEFAULTS.selfSignedRootTtl);

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
  // istiod reads its plugged-in CA from ROOT_CA_DIR, default ./etc/cacerts. Here the variable
  // counts only when set: a folder that happens to exist under the working directory must not
  // turn a local start into a plugged-in CA (docs/serve.md).
  const cacerts = setting(nonEmpty('--cacerts-dir', flags.cacertsDir), env, 'ROOT_CA_DIR');
  const cacertsDir = cacerts?.text;
  const caKeyUri = flags.caKeyUri?.trim();
  // Checked now; the token is opened when the CA loads. The parser's errors never show a PIN.
  if (caKeyUri !== undefined) checked('--ca-key-uri', () => parsePkcs11Uri(caKeyUri));
  const cacertsPollIntervalMs = duration(
    '--cacerts-poll-interval',
    flags.cacertsPollInterval ?? SERVE_DEFAULTS.cacertsPollInterval,
  );
  const enableCaCrl = flagOrEnvBoolean('--ca-crl', flags.caCrl, ENABLE_CA_CRL_ENV, env, true);
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

  const connections = {
    handshakeTimeoutMs: duration(
      '--handshake-timeout',
      flags.handshakeTimeout ?? SERVE_DEFAULTS.handshakeTimeout,
    ),
    idleTimeoutMs: duration('--idle-timeout', flags.idleTimeout ?? SERVE_DEFAULTS.idleTimeout),
    keepaliveIntervalMs: duration(
      '--keepalive-interval',
      flags.keepaliveInterval ?? SERVE_DEFAULTS.keepaliveInterval,
    ),
    keepaliveTimeoutMs: duration(
      '--keepalive-timeout',
      flags.keepaliveTimeout ?? SERVE_DEFAULTS.keepaliveTimeout,
    ),
  };

  const grpcTransport = flags.grpcTransport ?? SERVE_DEFAULTS.grpcTransport;
  if (!(GRPC_TRANSPORTS as readonly string[]).includes(grpcTransport)) {
    throw bad('--grpc-transport', `"${grpcTransport}" is not one of ${GRPC_TRANSPORTS.join(', ')}`);
  }

  const kube = completeKubeOptions(flags, env, namespace);
  if (kube && cacerts) {
    throw bad(
      cacerts.subject,
      'Kubernetes mode reads the plugged-in CA from Secret cacerts, not from a folder (unset it, or run without --kube)',
    );
  }
  if (kube && workers !== undefined && workers !== 1) {
    // Kubernetes mode runs leader election, Secret and policy watches and the TokenReview
    // cache per process; several per pod would multiply them. Scale with replicas instead.
    throw bad('--workers', 'only 1 worker in --kube mode (scale with replicas)');
  }
  const longest = kube && longestRootTtlDueAtOnceMs(kube.rootRotationGracePercent);
  if (kube && longest && selfSignedRootTtlMs <= longest) {
    throw bad(
      selfSignedRoot?.subject ?? '--self-signed-root-ttl',
      `${formatDuration(selfSignedRootTtlMs)} is too short for a grace of ${kube.rootRotationGracePercent}% (--root-rotation-grace-percent): a new root, backdated ${formatDuration(NOT_BEFORE_BACKDATE_MS)} for clock skew, would be due for re-issue as soon as it is made; use more than ${formatDuration(Math.ceil(longest / 1000) * 1000)}`,
    );
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
      selfSignedRootTtlMs,
      dataDir,
      cacertsDir,
      ...(cacerts && { cacertsDirSetting: cacerts.subject }),
      caKeyUri,
      cacertsPollIntervalMs,
      enableCaCrl,
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
      connections,
      grpcTransport: grpcTransport as GrpcTransport,
      admission: completeAdmission(flags, cores),
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
 * Calls in progress per core by default. Measured on this 2-core machine (docs/performance.md,
 * h2load, P-256 CA): 16 calls in flight give 2,747 certs/s with p99 14 ms, 64 give 3,302/s with
 * p99 39 ms — 20% more throughput for almost three times the latency; 16 per core (32 here) sits
 * between, past the knee, and keeps the work in progress (and its memory) small.
 */
export const INFLIGHT_CSR_PER_CORE = 16;
/**
 * Waiting calls per slot by default: 16 × 32 = 512 here, which drain in ≈ 0.2 s at the
 * throughput above — far below any client's deadline — and hold at most 512 requests of at most
 * 256 KiB each (the gRPC receive limit); a typical CSR request is ≈ 1 KiB.
 */
export const QUEUED_CSR_PER_INFLIGHT = 16;
/** Above this, the limits bound nothing a process can hold. */
const MAX_ADMISSION = 1_000_000;

/** `--rate-limit`: `<n>/s`, `<n>/m` or `<n>/h` (n may be fractional), or `off` (also `0`). */
function parseRate(text: string): number | undefined {
  if (text === 'off' || /^0+(\.0*)?(\/[smh])?$/.test(text)) return undefined;
  const m = /^(\d+(?:\.\d+)?)\/([smh])$/.exec(text);
  const perUnit = m ? Number(m[1]) : NaN;
  if (!m || !(perUnit > 0) || !Number.isFinite(perUnit)) {
    throw bad('--rate-limit', `"${text}" is not <n>/s, <n>/m, <n>/h or off`);
  }
  return perUnit / { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
}

function wholeAtLeast(flag: string, text: string, min: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= MAX_ADMISSION)) {
    throw bad(flag, `"${text}" is not a whole number from ${min} to ${MAX_ADMISSION}`);
  }
  return n;
}

/**
 * Admission control of CreateCertificate (src/server/admission.ts): in-flight and queue bounds
 * from the cores unless given, the per-identity token bucket and the node proxies' multiple.
 */
function completeAdmission(flags: ServeFlags, cores: number): AdmissionOptions {
  const inflightText = flags.maxInflightCsr ?? SERVE_DEFAULTS.maxInflightCsr;
  const maxInflight =
    inflightText === 'auto'
      ? INFLIGHT_CSR_PER_CORE * Math.max(1, cores)
      : wholeAtLeast('--max-inflight-csr', inflightText, 1);
  const queuedText = flags.maxQueuedCsr ?? SERVE_DEFAULTS.maxQueuedCsr;
  const maxQueued =
    queuedText === 'auto'
      ? QUEUED_CSR_PER_INFLIGHT * maxInflight
      : wholeAtLeast('--max-queued-csr', queuedText, 0);
  const perSecond = parseRate(flags.rateLimit ?? SERVE_DEFAULTS.rateLimit);
  const burst =
    flags.rateLimitBurst === undefined
      ? SERVE_DEFAULTS.rateLimitBurst
      : wholeAtLeast('--rate-limit-burst', flags.rateLimitBurst, 1);
  const nodeRateFactor =
    flags.nodeRateLimitFactor === undefined
      ? SERVE_DEFAULTS.nodeRateLimitFactor
      : wholeAtLeast('--node-rate-limit-factor', flags.nodeRateLimitFactor, 1);
  if (perSecond === undefined) {
    for (const [flag, given] of [
      ['--rate-limit-burst', flags.rateLimitBurst],
      ['--node-rate-limit-factor', flags.nodeRateLimitFactor],
    ] as const) {
      if (given !== undefined) throw bad(flag, 'has no effect with --rate-limit off');
    }
  }
  const identityRate: RateLimit | undefined =
    perSecond === undefined ? undefined : { perSecond, burst };
  return { maxInflight, maxQueued, identityRate, nodeRateFactor };
}

/**
 * TOKEN_AUDIENCES is a comma-separated list (istiod splits it on commas, pkg/security/security.go).
 * Whitespace around an entry is dropped; an empty entry is refused (istiod would ask the API
 * server to check an empty audience, which no token of ours carries).
 */
function completeTokenAudiences(flags: ServeFlags, env: Environment): string[] {
  if (flags.tokenAudience !== undefined) {
    if (flags.tokenAudience.some((a) => a.trim() === '')) {
      throw bad('--token-audience', 'audiences must not be empty');
    }
    return flags.tokenAudience;
  }
  const s = setting(undefined, env, 'TOKEN_AUDIENCES');
  if (!s) return [...SERVE_DEFAULTS.tokenAudience];
  const audiences = s.text.split(',').map((a) => a.trim());
  if (audiences.some((a) => a === '')) {
    throw bad(
      s.subject,
      `"${s.text}" has an empty audience (a comma-separated list, e.g. istio-ca)`,
    );
  }
  return [...new Set(audiences)];
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
  if (!enabled && flags.crlConfigmap !== undefined) throw bad('--crl-configmap', 'needs --kube');
  const crlConfigMapName = flags.crlConfigmap ?? env[CRL_CONFIGMAP_ENV] ?? DEFAULT_CRL_CONFIGMAP;
  if (!OBJECT_NAME.test(crlConfigMapName) || crlConfigMapName.length > 253) {
    throw bad(
      flags.crlConfigmap !== undefined ? '--crl-configmap' : CRL_CONFIGMAP_ENV,
      `"${crlConfigMapName}" is not a valid ConfigMap name`,
    );
  }
  const optionalDuration = (flag: string, text: string | undefined, fallback: number): number =>
    text === undefined ? fallback : duration(flag, text);
  const cacheTtl = flags.tokenReviewCacheTtl;
  const rotationCheck = setting(
    flags.rootRotationCheckInterval,
    env,
    'CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL',
  );
  const clusterId = setting(flags.clusterId, env, 'CLUSTER_ID');
  if (clusterId?.text === '') throw bad(clusterId.subject, 'must not be empty');
  const options: KubeOptions = {
    kubeconfigPath: flags.kubeconfig,
    namespace,
    jwtOffline: flags.jwtOffline === true,
    leaseName,
    leaseDurationMs: optionalDuration('--lease-duration', flags.leaseDuration, 15_000),
    // 0: no cache, every request is reviewed (as istiod, which caches nothing).
    tokenReviewCacheMaxAgeMs:
      cacheTtl === undefined
        ? 60_000
        : durationSetting(
            { text: cacheTtl, subject: '--token-review-cache-ttl', fromEnv: false },
            true,
          ),
    remoteKubeconfigs,
    // 0: never (istiod: "zero or a negative value disables automated root cert check").
    rootRotationCheckMs: rotationCheck
      ? durationSetting(rotationCheck, true)
      : DEFAULT_ROOT_ROTATION_CHECK_MS,
    rootRotationGracePercent: completeGracePercent(flags, env),
    rootCertConfigMap: completeRootCertConfigMap(flags, env),
    clusterId: clusterId?.text ?? SERVE_DEFAULTS.clusterId,
    crlConfigMapName,
    trustedNodeAccounts,
  };
  return enabled ? options : undefined;
}

/**
 * CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: a whole number as Go's strconv.Atoi
 * reads it (security/pkg/util/certutil.go uses it as a percentage of the root's lifetime).
 * istiod checks no range; outside 1–99 it misbehaves, so here it is refused: at 0 or below the
 * root is re-issued only once it has expired (every workload's chain broken meanwhile), at 100 or
 * above on every check.
 */
function completeGracePercent(flags: ServeFlags, env: Environment): number {
  const s = setting(
    flags.rootRotationGracePercent,
    env,
    'CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE',
  );
  if (!s) return SERVE_DEFAULTS.rootRotationGracePercent;
  if (!/^[+-]?\d+$/.test(s.text)) throw bad(s.subject, `"${s.text}" is not a whole number`);
  const n = Number(s.text);
  if (n < 1 || n > 99) {
    throw bad(
      s.subject,
      `${s.text} is outside 1-99: ${n < 1 ? 'the root would expire before it is re-issued' : 'the root would be re-issued on every check'}`,
    );
  }
  return n;
}

/** PILOT_CA_CERT_CONFIGMAP: the name every namespace's copy of the trust bundle is published as. */
function completeRootCertConfigMap(flags: ServeFlags, env: Environment): string {
  const s = setting(
    nonEmpty('--root-cert-configmap', flags.rootCertConfigmap),
    env,
    'PILOT_CA_CERT_CONFIGMAP',
  );
  if (!s) return SERVE_DEFAULTS.rootCertConfigMap;
  if (!OBJECT_NAME.test(s.text) || s.text.length > MAX_OBJECT_NAME) {
    throw bad(s.subject, `"${s.text}" is not a valid ConfigMap name`);
  }
  return s.text;
}
