import { isIP } from 'node:net';
import { Option, type Command } from 'commander';
import type { LevelWithSilent } from 'pino';
import { parseDuration } from '../duration.js';
import { parsePkcs11Uri } from '../ca/signers/pkcs11-uri.js';
import { CastellanError } from '../errors.js';
import { isCaKeyType, CA_KEY_TYPES, type CaKeyType } from '../pki/key-type.js';
import { validateTrustDomain } from '../pki/spiffe.js';
import { parseHostPort, type HostPort } from '../address.js';
import type { CsrThreadsSetting } from '../server/csr-check-pool.js';
import { collect } from './options.js';

/** `castellan serve`, fully resolved: every default applied, every value checked. */
export interface ServeConfig {
  readonly dataDir: string;
  readonly cacertsDir: string | undefined;
  /** The plugged-in CA's key inside a PKCS#11 token (RFC 7512 URI; docs/hsm.md), instead of ca-key.pem. */
  readonly caKeyUri: string | undefined;
  readonly trustDomain: string;
  readonly grpcAddress: HostPort;
  readonly monitoringAddress: HostPort;
  /** A trusted external token issuer, besides the local dev issuer. */
  readonly jwt: { readonly issuer: string; readonly jwksFile: string } | undefined;
  readonly tokenAudiences: readonly string[];
  readonly defaultTtlMs: number;
  readonly maxTtlMs: number;
  readonly logLevel: LevelWithSilent;
  readonly servingDnsNames: readonly string[];
  readonly servingIpAddresses: readonly string[];
  readonly namespace: string;
  readonly caKeyType: CaKeyType;
  /** Local mode's policy inputs: a folder of manifests, followed (docs/policy.md). */
  readonly policyDir: string | undefined;
  /** MeshConfig settings for policy evaluation (rootNamespace, trustDomainAliases, ...). */
  readonly meshConfigFile: string | undefined;
  /** HTTPS listener for GET /v1/bundles/<ns>/<pod>; undefined = off. */
  readonly bundleAddress: HostPort | undefined;
  /** Worker processes sharing the gRPC port (src/cli/serve-cluster.ts); undefined = the mode's default. */
  readonly workers: WorkersSetting | undefined;
  /** Threads checking CSRs beside the event loop (src/server/csr-check-pool.ts). */
  readonly csrThreads: CsrThreadsSetting;
}

/** `--workers`: a count, or `auto` = the cores available. */
export type WorkersSetting = number | 'auto';
/** More processes than this would only cost memory: each one saturates a core. */
export const MAX_WORKERS = 64;
/** More CSR threads than this per process would only cost memory. */
export const MAX_CSR_THREADS = 16;

/** The options as commander hands them over (strings, before checking). */
export interface RawServeOptions {
  dataDir?: string;
  cacertsDir?: string;
  caKeyUri?: string;
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
}

export const SERVE_DEFAULTS = {
  dataDir: './.castellan',
  trustDomain: 'cluster.local',
  grpcAddr: '127.0.0.1:15012',
  monitoringAddr: '127.0.0.1:15014',
  tokenAudience: ['istio-ca'],
  defaultTtl: '24h',
  maxTtl: '2160h',
  namespace: 'istio-system',
  // ECDSA: generating it takes milliseconds, so a first start reaches /ready quickly.
  caKeyType: 'ec-p256' as CaKeyType,
} as const;

const LOG_LEVELS: readonly LevelWithSilent[] = [
  'trace',
  'debug',
  'info',
  'warn',
  'error',
  'fatal',
  'silent',
];
const DNS_NAME =
  /^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Declares serve's flags on a command (no defaults here: parseServeConfig applies them). */
export function addServeOptions(command: Command): Command {
  return command
    .option('--data-dir <dir>', `state folder (default "${SERVE_DEFAULTS.dataDir}")`)
    .option(
      '--cacerts-dir <dir>',
      'plugged-in CA folder (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem)',
    )
    .option(
      '--ca-key-uri <pkcs11-uri>',
      "the plugged-in CA's key in a PKCS#11 token, instead of ca-key.pem: pkcs11:token=…;object=…?module-path=…&pin-source=file:… (docs/hsm.md)",
    )
    .option(
      '--trust-domain <domain>',
      `SPIFFE trust domain (default "${SERVE_DEFAULTS.trustDomain}")`,
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
      'accepted token audience, repeatable (default istio-ca)',
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
      'folder of PeerAuthentication, AuthorizationPolicy and Pod manifests, followed (local mode)',
    )
    .option(
      '--mesh-config <file>',
      'MeshConfig settings for policies: rootNamespace, trustDomainAliases, extensionProviders',
    )
    .option(
      '--bundle-addr <host:port>',
      'HTTPS listener for GET /v1/bundles/<ns>/<pod>, client certificate required (default off)',
    )
    .option(
      '--workers <n|auto>',
      'processes sharing the gRPC port; auto = one per core (default 1; only 1 in --kube mode)',
    )
    .option(
      '--csr-threads <n|auto>',
      'threads per process checking CSRs beside the event loop; 0 = on the event loop; auto = 1 with two or more cores, else 0',
      'auto',
    );
}

function bad(flag: string, message: string): CastellanError {
  return new CastellanError('invalid-argument', message, { subject: flag });
}

function duration(flag: string, value: string): number {
  try {
    // The flag is the error's subject: the parser's own message names only the value.
    return parseDuration(value);
  } catch (e) {
    throw bad(flag, (e as Error).message);
  }
}

const isLoopback = (host: string): boolean =>
  host === 'localhost' || host === '::1' || /^127\./.test(host);

/**
 * Resolves serve's options: flags win over the environment, the environment over defaults.
 * Refuses any bad value with a CastellanError('invalid-argument') naming the flag.
 */
export function parseServeConfig(raw: RawServeOptions, env: NodeJS.ProcessEnv = {}): ServeConfig {
  const trustDomain = raw.trustDomain ?? SERVE_DEFAULTS.trustDomain;
  try {
    validateTrustDomain(trustDomain);
  } catch (e) {
    throw bad('--trust-domain', (e as Error).message);
  }
  const grpcAddress = addr('--grpc-addr', raw.grpcAddr ?? SERVE_DEFAULTS.grpcAddr);
  const monitoringAddress = addr(
    '--monitoring-addr',
    raw.monitoringAddr ?? SERVE_DEFAULTS.monitoringAddr,
  );
  if (sameListener(grpcAddress, monitoringAddress)) {
    throw bad('--monitoring-addr', 'must differ from --grpc-addr');
  }

  if ((raw.jwtIssuer === undefined) !== (raw.jwksFile === undefined)) {
    throw bad(
      raw.jwtIssuer === undefined ? '--jwks-file' : '--jwt-issuer',
      '--jwt-issuer and --jwks-file go together',
    );
  }
  if (raw.jwtIssuer === '') throw bad('--jwt-issuer', 'must not be empty');

  const tokenAudiences = raw.tokenAudience ?? [...SERVE_DEFAULTS.tokenAudience];
  if (tokenAudiences.some((a) => a.trim() === '')) {
    throw bad('--token-audience', 'audiences must not be empty');
  }

  const defaultTtlText =
    raw.defaultTtl ?? env['DEFAULT_WORKLOAD_CERT_TTL'] ?? SERVE_DEFAULTS.defaultTtl;
  const maxTtlText = raw.maxTtl ?? env['MAX_WORKLOAD_CERT_TTL'] ?? SERVE_DEFAULTS.maxTtl;
  // The flag names the error whenever it is given, even empty: it is what was used.
  const defaultTtlMs = duration(
    raw.defaultTtl !== undefined ? '--default-ttl' : 'DEFAULT_WORKLOAD_CERT_TTL',
    defaultTtlText,
  );
  const maxTtlMs = duration(
    raw.maxTtl !== undefined ? '--max-ttl' : 'MAX_WORKLOAD_CERT_TTL',
    maxTtlText,
  );
  if (defaultTtlMs > maxTtlMs) {
    throw bad('--default-ttl', `default TTL ${defaultTtlText} is above the maximum ${maxTtlText}`);
  }

  const logLevel = (raw.logLevel ?? 'info') as LevelWithSilent;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw bad('--log-level', `"${raw.logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }

  const namespace = raw.namespace ?? SERVE_DEFAULTS.namespace;
  if (!NAMESPACE.test(namespace)) throw bad('--namespace', `"${namespace}" is not a DNS label`);

  const caKeyType = raw.caKeyType ?? SERVE_DEFAULTS.caKeyType;
  if (!isCaKeyType(caKeyType)) {
    throw bad('--ca-key-type', `"${caKeyType}" is not one of ${CA_KEY_TYPES.join(', ')}`);
  }

  let names = raw.servingDns;
  if (names === undefined) {
    names = [`castellan.${namespace}.svc`, `istiod.${namespace}.svc`];
    if (isLoopback(grpcAddress.host)) names.push('localhost', '127.0.0.1');
  }
  const servingDnsNames: string[] = [];
  const servingIpAddresses: string[] = [];
  for (const n of names) {
    if (isIP(n)) servingIpAddresses.push(n);
    else if (DNS_NAME.test(n.toLowerCase())) servingDnsNames.push(n.toLowerCase());
    else throw bad('--serving-dns', `"${n}" is neither a DNS name nor an IP address`);
  }

  if (raw.dataDir === '') throw bad('--data-dir', 'must not be empty');
  if (raw.cacertsDir === '') throw bad('--cacerts-dir', 'must not be empty');
  if (raw.caKeyUri !== undefined) {
    try {
      // Checked now; the token is opened when the CA loads. Errors never show a PIN.
      parsePkcs11Uri(raw.caKeyUri);
    } catch (e) {
      throw bad('--ca-key-uri', (e as Error).message);
    }
  }
  if (raw.policyDir === '') throw bad('--policy-dir', 'must not be empty');
  if (raw.meshConfig === '') throw bad('--mesh-config', 'must not be empty');
  const bundleAddress =
    raw.bundleAddr === undefined ? undefined : addr('--bundle-addr', raw.bundleAddr);
  for (const [flag, other] of [
    ['--grpc-addr', grpcAddress],
    ['--monitoring-addr', monitoringAddress],
  ] as const) {
    if (bundleAddress && sameListener(bundleAddress, other)) {
      throw bad('--bundle-addr', `must differ from ${flag}`);
    }
  }

  return {
    dataDir: raw.dataDir ?? SERVE_DEFAULTS.dataDir,
    cacertsDir: raw.cacertsDir,
    caKeyUri: raw.caKeyUri?.trim(),
    trustDomain,
    grpcAddress,
    monitoringAddress,
    jwt:
      raw.jwtIssuer !== undefined && raw.jwksFile !== undefined
        ? { issuer: raw.jwtIssuer, jwksFile: raw.jwksFile }
        : undefined,
    tokenAudiences,
    defaultTtlMs,
    maxTtlMs,
    logLevel,
    servingDnsNames,
    servingIpAddresses,
    namespace,
    caKeyType,
    policyDir: raw.policyDir,
    meshConfigFile: raw.meshConfig,
    bundleAddress,
    workers:
      raw.workers === undefined ? undefined : countOrAuto('--workers', raw.workers, 1, MAX_WORKERS),
    csrThreads: countOrAuto('--csr-threads', raw.csrThreads ?? 'auto', 0, MAX_CSR_THREADS),
  };
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

/** Two listeners that would collide (port 0 picks a free port, so it never does). */
function sameListener(a: HostPort, b: HostPort): boolean {
  return a.port !== 0 && a.port === b.port && a.host === b.host;
}

function addr(flag: string, value: string): HostPort {
  try {
    return parseHostPort(value);
  } catch (e) {
    throw bad(flag, (e as Error).message);
  }
}
