// The messages between `serve --workers N`'s primary and its workers (node:cluster IPC, JSON),
// and the check each side runs on what it receives: a message whose shape is wrong is refused
// with the path of the first bad field, never trusted as a cast. Messages without a `castellan`
// tag are not ours and are left alone.
import { CastellanError } from '../../errors.js';
import { CA_KEY_TYPES } from '../../pki/key-type.js';
import type { WorkerMetrics } from '../../server/metrics-aggregation.js';
import { GRPC_TRANSPORTS } from '../../server/grpc-transport.js';
import type { ServingSummary } from './app.js';
import { LOG_LEVELS } from './flags.js';
import { MAX_CSR_THREADS, MAX_WORKERS, type ServeOptions } from './options.js';

/** A worker serves local mode (Kubernetes mode runs one process), so its options have no `kube`. */
export type WorkerServeOptions = ServeOptions & { readonly kube: undefined };

/** Worker → primary. */
export type WorkerMessage =
  /** Modules loaded: waiting for 'go'. */
  | { readonly castellan: 'loaded' }
  /** Listening: what the start line needs (the primary prints it, with its monitoring port). */
  | { readonly castellan: 'serving'; readonly serving: ServingSummary }
  | { readonly castellan: 'readiness'; readonly ready: boolean; readonly reason: string }
  /** The answer to 'metrics?' `id`. */
  | { readonly castellan: 'metrics'; readonly id: number; readonly metrics: WorkerMetrics };

/** Primary → worker. */
export type PrimaryMessage =
  /** The data dir is prepared: serve with these options. */
  | { readonly castellan: 'go'; readonly options: WorkerServeOptions }
  /** Send your metrics, answering with this `id`. */
  | { readonly castellan: 'metrics?'; readonly id: number };

/** Checks an IPC value against a shape; throws naming `path` and what was expected. */
type Check<T> = (value: unknown, path: string) => T;

function refuse(path: string, expected: string): never {
  throw new CastellanError('malformed', `expected ${expected}`, { subject: path });
}

const string: Check<string> = (v, p) => (typeof v === 'string' ? v : refuse(p, 'a string'));
const boolean: Check<boolean> = (v, p) => (typeof v === 'boolean' ? v : refuse(p, 'true or false'));
const wholeNumber =
  (min: number, max: number): Check<number> =>
  (v, p) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
      ? v
      : refuse(p, `a whole number from ${min} to ${max}`);
const oneOf =
  <T extends string>(values: readonly T[]): Check<T> =>
  (v, p) =>
    values.includes(v as T) ? (v as T) : refuse(p, `one of ${values.join(', ')}`);
const countOrAuto =
  (min: number, max: number): Check<number | 'auto'> =>
  (v, p) =>
    v === 'auto' ? v : wholeNumber(min, max)(v, p);
const optional =
  <T>(check: Check<T>): Check<T | undefined> =>
  (v, p) =>
    v === undefined ? undefined : check(v, p);
const absent: Check<undefined> = (v, p) => (v === undefined ? v : refuse(p, 'nothing'));
const arrayOf =
  <T>(check: Check<T>): Check<readonly T[]> =>
  (v, p) =>
    Array.isArray(v) ? v.map((item, i) => check(item, `${p}[${i}]`)) : refuse(p, 'a list');

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An object with exactly these fields (an unknown field is refused: the shapes drifted). */
function object<S extends Record<string, Check<unknown>>>(
  shape: S,
): Check<{ readonly [K in keyof S]: ReturnType<S[K]> }> {
  return (v, p) => {
    if (!isRecord(v)) return refuse(p, 'an object');
    for (const key of Object.keys(v)) if (!(key in shape)) refuse(`${p}.${key}`, 'no such field');
    const out: Record<string, unknown> = {};
    for (const [key, check] of Object.entries(shape)) out[key] = check(v[key], `${p}.${key}`);
    return out as { readonly [K in keyof S]: ReturnType<S[K]> };
  };
}

const hostPort = object({ host: string, port: wholeNumber(0, 65535) });
const positiveMs = wholeNumber(1, Number.MAX_SAFE_INTEGER);
const positiveNumber: Check<number> = (v, p) =>
  typeof v === 'number' && v > 0 && Number.isFinite(v) ? v : refuse(p, 'a positive number');

/** ServeOptions as the primary sends them; TypeScript holds this shape to the type. */
const workerServeOptions: Check<WorkerServeOptions> = object({
  logLevel: oneOf(LOG_LEVELS),
  workers: optional(countOrAuto(1, MAX_WORKERS)),
  ca: object({
    trustDomain: string,
    selfSignedKeyType: oneOf(CA_KEY_TYPES),
    selfSignedRootTtlMs: positiveMs,
    dataDir: string,
    cacertsDir: optional(string),
    cacertsDirSetting: optional(string),
    caKeyUri: optional(string),
    cacertsPollIntervalMs: positiveMs,
    enableCaCrl: boolean,
  }),
  authn: object({
    tokenAudiences: arrayOf(string),
    externalJwt: optional(object({ issuer: string, jwksFile: string })),
  }),
  server: object({
    grpcAddress: hostPort,
    monitoringAddress: optional(hostPort),
    bundleAddress: optional(hostPort),
    servingNames: object({ dnsNames: arrayOf(string), ipAddresses: arrayOf(string) }),
    ttl: object({ defaultTtlMs: positiveMs, maxTtlMs: positiveMs }),
    csrThreads: countOrAuto(0, MAX_CSR_THREADS),
    grpcTransport: oneOf(GRPC_TRANSPORTS),
    connections: object({
      handshakeTimeoutMs: positiveMs,
      idleTimeoutMs: positiveMs,
      keepaliveIntervalMs: positiveMs,
      keepaliveTimeoutMs: positiveMs,
    }),
    admission: object({
      maxInflight: wholeNumber(1, Number.MAX_SAFE_INTEGER),
      maxQueued: wholeNumber(0, Number.MAX_SAFE_INTEGER),
      identityRate: optional(object({ perSecond: positiveNumber, burst: positiveNumber })),
      nodeRateFactor: positiveNumber,
    }),
  }),
  policy: object({
    policyDir: optional(string),
    meshConfigFile: optional(string),
    defaultRootNamespace: string,
    defaultTrustDomain: string,
  }),
  kube: absent,
});

const servingSummary: Check<ServingSummary> = object({
  grpc: hostPort,
  monitoring: optional(hostPort),
  bundles: optional(hostPort),
  trustBundle: string,
  tokenHint: string,
});

/** prom-client's JSON of a registry: each metric with its name and samples (merged by it). */
const workerMetrics: Check<WorkerMetrics> = (v, p) =>
  arrayOf((m, mp) =>
    isRecord(m) && typeof m['name'] === 'string' && Array.isArray(m['values'])
      ? m
      : refuse(mp, 'a metric with a name and values'),
  )(v, p) as unknown as WorkerMetrics;

const messageId = wholeNumber(0, Number.MAX_SAFE_INTEGER);
const tag = <T extends string>(name: T): Check<T> => oneOf([name]);

const WORKER_MESSAGES: { readonly [K in WorkerMessage['castellan']]: Check<WorkerMessage> } = {
  loaded: object({ castellan: tag('loaded') }),
  serving: object({ castellan: tag('serving'), serving: servingSummary }),
  readiness: object({ castellan: tag('readiness'), ready: boolean, reason: string }),
  metrics: object({ castellan: tag('metrics'), id: messageId, metrics: workerMetrics }),
};

const PRIMARY_MESSAGES: { readonly [K in PrimaryMessage['castellan']]: Check<PrimaryMessage> } = {
  go: object({ castellan: tag('go'), options: workerServeOptions }),
  'metrics?': object({ castellan: tag('metrics?'), id: messageId }),
};

function parseTagged<M>(
  value: unknown,
  checks: { readonly [tag: string]: Check<M> },
  from: string,
): M | undefined {
  if (!isRecord(value) || typeof value['castellan'] !== 'string') return undefined;
  const name = value['castellan'];
  const check = Object.hasOwn(checks, name) ? checks[name] : undefined;
  try {
    if (!check) return refuse('castellan', `one of ${Object.keys(checks).join(', ')}`);
    return check(value, name);
  } catch (e) {
    throw new CastellanError('malformed', (e as Error).message, { subject: from, cause: e });
  }
}

/**
 * A message a worker received: undefined when it is not ours (no `castellan` tag), else the
 * checked message; throws CastellanError('malformed') naming the first bad field.
 */
export function parsePrimaryMessage(value: unknown): PrimaryMessage | undefined {
  return parseTagged(value, PRIMARY_MESSAGES, 'message from the primary');
}

/** A message the primary received from a worker; as parsePrimaryMessage. */
export function parseWorkerMessage(value: unknown): WorkerMessage | undefined {
  return parseTagged(value, WORKER_MESSAGES, 'message from a worker');
}
