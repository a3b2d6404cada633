import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Registry } from 'prom-client';
import { systemClock } from '../clock.js';
import { CastellanError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { formatHostPort } from '../address.js';
import { AggregatedWorkersRegistry, type WorkerMetrics } from '../server/metrics-aggregation.js';
import { MonitoringServer, type Readiness } from '../server/monitoring.js';
import type { ServeConfig, WorkersSetting } from './serve-config.js';

/**
 * `castellan serve --workers N`: N worker processes (node:cluster) share the gRPC port, so
 * issuance uses every core (one Node process saturates one: TLS, HTTP/2, CSR checks and
 * authentication run on its main thread). The primary serves nothing itself: it prepares the
 * data dir once, forks the workers, replaces any that die, answers the monitoring port for
 * all of them (/ready when every worker is ready, /metrics summed), and drains them on SIGTERM.
 */

/** The environment variable that hands a worker its resolved configuration (JSON). */
export const WORKER_CONFIG_ENV = 'CASTELLAN_SERVE_WORKER_CONFIG';

/** How many worker processes: `auto` is the cores this process may use. */
export function resolveWorkerCount(
  setting: WorkersSetting | undefined,
  kubeMode: boolean,
  cores: number = availableParallelism(),
): number {
  if (kubeMode) {
    // Kubernetes mode runs leader election, Secret and policy watches and the TokenReview
    // cache per process; several per pod would multiply them. Scale with replicas instead.
    if (setting !== undefined && setting !== 1) {
      throw new CastellanError(
        'invalid-argument',
        'only 1 worker in --kube mode (scale with replicas)',
        { subject: '--workers' },
      );
    }
    return 1;
  }
  const wanted = setting ?? LOCAL_DEFAULT_WORKERS;
  return wanted === 'auto' ? Math.max(1, cores) : wanted;
}

/**
 * Local mode's default: one process. Measured on a 2-core machine with the load generator on
 * the same machine (docs/performance.md): two workers added only 6–20% throughput (the client
 * takes the other core) and doubled start to /ready (≈0.55 s → ≈1.1 s, past the 1 s target),
 * since each worker loads every module itself. `--workers auto` is for a machine whose clients
 * are elsewhere.
 */
export const LOCAL_DEFAULT_WORKERS: WorkersSetting = 1;

/** How long the primary waits for a worker's answer to a /metrics query. */
const QUERY_TIMEOUT_MS = 2000;
/** Replacements beyond this many deaths within CRASH_WINDOW_MS wait CRASH_BACKOFF_MS. */
const CRASHES_BEFORE_BACKOFF = 3;
const CRASH_WINDOW_MS = 10_000;
const CRASH_BACKOFF_MS = 1000;
/** How long SIGTERM waits for workers to drain before killing them. */
const DRAIN_TIMEOUT_MS = 15_000;

/** Messages between the primary and its workers (IPC, JSON). */
type WorkerMessage =
  | { readonly castellan: 'loaded' }
  | { readonly castellan: 'serving'; readonly line: string }
  | { readonly castellan: 'readiness'; readonly ready: boolean; readonly reason?: string }
  | { readonly castellan: 'metrics'; readonly id: number; readonly metrics: WorkerMetrics };
type PrimaryMessage =
  { readonly castellan: 'metrics?'; readonly id: number } | { readonly castellan: 'go' };

function isWorkerMessage(m: unknown): m is WorkerMessage {
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof (m as { castellan?: unknown }).castellan === 'string'
  );
}

interface WorkerState {
  ready: boolean;
  reason: string;
  everReady: boolean;
}

/**
 * Runs serve as the primary of a cluster when more than one worker is wanted; resolves true
 * once the cluster has stopped (SIGTERM/SIGINT), false when the caller should serve in this
 * process (one worker, or this process is itself a worker).
 */
export async function serveAsClusterPrimary(
  config: ServeConfig,
  kubeMode: boolean,
): Promise<boolean> {
  if (!cluster.isPrimary) return false;
  const count = resolveWorkerCount(config.workers, kubeMode);
  if (count <= 1) return false;
  const logger = createLogger({ level: config.logLevel });
  await runPrimary(config, count, logger);
  return true;
}

async function runPrimary(config: ServeConfig, count: number, logger: Logger): Promise<void> {
  const states = new Map<Worker, WorkerState>();
  const pending = new Map<number, { left: Set<Worker>; got: WorkerMetrics[]; done: () => void }>();
  let nextQuery = 0;
  let stopping = false;
  let announced = false;
  let servingLine: string | undefined;

  const readiness = (): Readiness => {
    if (stopping) return { ready: false, reason: 'shutting down' };
    const ready = [...states.values()].filter((s) => s.ready).length;
    if (ready >= count) return { ready: true };
    const why = [...states.values()].find((s) => !s.ready)?.reason ?? 'starting';
    return { ready: false, reason: `${ready} of ${count} workers ready (${why})` };
  };
  const collect = (): Promise<WorkerMetrics[]> =>
    new Promise((resolve) => {
      const id = nextQuery++;
      const got: WorkerMetrics[] = [];
      const left = new Set<Worker>();
      const done = (): void => {
        clearTimeout(timer);
        pending.delete(id);
        resolve(got);
      };
      const timer = setTimeout(() => {
        logger.warn(
          { missing: [...left].map((w) => w.process.pid) },
          'workers did not send metrics in time',
        );
        done();
      }, QUERY_TIMEOUT_MS);
      pending.set(id, { left, got, done });
      for (const worker of states.keys()) {
        if (!worker.isConnected()) continue;
        left.add(worker);
        worker.send({ castellan: 'metrics?', id } satisfies PrimaryMessage);
      }
      if (left.size === 0) done();
    });

  const monitoring = new MonitoringServer({
    readiness,
    registries: [new AggregatedWorkersRegistry(collect)],
    logger,
  });
  const monitoringAddr = await monitoring.listen(config.monitoringAddress);

  let failStart: ((e: Error) => void) | undefined;
  const startFailed = new Promise<never>((_, reject) => (failStart = reject));
  startFailed.catch(() => {});

  const fork = (): Worker => {
    const worker = cluster.fork({ [WORKER_CONFIG_ENV]: JSON.stringify(config) });
    states.set(worker, { ready: false, reason: 'starting', everReady: false });
    worker.on('message', (m: unknown) => {
      if (!isWorkerMessage(m)) return;
      const state = states.get(worker);
      if (m.castellan === 'readiness' && state) {
        state.ready = m.ready;
        state.reason = m.reason ?? '';
        state.everReady ||= m.ready;
        maybeAnnounce();
      } else if (m.castellan === 'loaded') {
        // The worker has loaded its modules; it starts serving once the data dir is ready.
        void prepared.then(
          () => worker.isConnected() && worker.send({ castellan: 'go' } satisfies PrimaryMessage),
          () => {},
        );
      } else if (m.castellan === 'serving') {
        servingLine ??= m.line;
        maybeAnnounce();
      } else if (m.castellan === 'metrics') {
        const query = pending.get(m.id);
        if (!query || !query.left.delete(worker)) return;
        query.got.push(m.metrics);
        if (query.left.size === 0) query.done();
      }
    });
    return worker;
  };
  const maybeAnnounce = (): void => {
    if (announced || !servingLine || !readiness().ready) return;
    announced = true;
    // The workers' line says "monitoring off": they leave the monitoring port to us.
    process.stdout.write(
      servingLine.replace('(monitoring off;', `(monitoring ${formatHostPort(monitoringAddr)};`),
    );
    logger.info(
      { workers: count, pids: [...states.keys()].map((w) => w.process.pid) },
      'all workers ready',
    );
  };

  cluster.setupPrimary({ exec: fileURLToPath(new URL('./serve-worker.js', import.meta.url)) });
  const deaths: number[] = [];
  cluster.on('exit', (worker, code, signal) => {
    const state = states.get(worker);
    states.delete(worker);
    for (const query of pending.values()) {
      if (query.left.delete(worker) && query.left.size === 0) query.done();
    }
    if (stopping) return;
    if (!state?.everReady && !announced) {
      // Dying before ever serving (a port in use, a bad CA folder): a replacement would die
      // the same way, so the whole command fails, with the worker's own message on stderr.
      failStart?.(
        new CastellanError(
          'internal',
          `worker ${worker.process.pid} exited during start-up (code ${code ?? signal})`,
          { subject: 'castellan serve --workers' },
        ),
      );
      return;
    }
    // A worker that keeps dying (a bug hit by every request, memory exhausted) is replaced
    // at most about once a second, so a crash loop does not become a fork loop.
    const now = Date.now();
    deaths.push(now);
    while (deaths.length > 0 && deaths[0]! < now - CRASH_WINDOW_MS) deaths.shift();
    const delayMs = deaths.length > CRASHES_BEFORE_BACKOFF ? CRASH_BACKOFF_MS : 0;
    logger.error(
      { worker: worker.id, pid: worker.process.pid, code, signal, delayMs },
      'worker died; starting a replacement',
    );
    setTimeout(() => {
      if (!stopping) fork();
    }, delayMs);
  });

  const stopped = stopSignal();
  // Workers are forked first: loading their modules (the bulk of start-up) overlaps with
  // preparing the data dir here, and each waits for the 'go' that follows it.
  for (let i = 0; i < count; i++) fork();
  const prepared = prepareSharedState(config);
  prepared.catch((e: unknown) => failStart?.(e instanceof Error ? e : new Error(String(e))));
  let failure: unknown;
  const signal = await Promise.race([stopped, startFailed]).catch((e: unknown) => {
    failure = e;
    return 'start-up failure';
  });

  stopping = true;
  logger.info({ signal, workers: states.size }, 'shutting down: draining workers');
  await drain([...states.keys()], logger);
  await monitoring.close();
  logger.info('stopped');
  logger.flush();
  if (failure) throw failure;
}

/** Resolves with the name of the first SIGTERM or SIGINT: when serve (primary or not) stops. */
export function stopSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
}

/** The data dir's shared state, made once before any worker reads it. */
async function prepareSharedState(config: ServeConfig): Promise<void> {
  // Shared state is created here, once, so workers only ever read it (no two processes race
  // to create a root key or the dev token issuer's key). Loaded on demand: the primary's own
  // start-up then stays light, and its workers' module loading overlaps with this.
  const [{ loadOrCreateSelfSignedCa }, { DevTokenIssuer }] = await Promise.all([
    import('../ca/sources/self-signed.js'),
    import('../authn/dev-token-issuer.js'),
  ]);
  // Both at once: the dev issuer's RSA key is generated on the thread pool meanwhile.
  await Promise.all([
    config.cacertsDir
      ? undefined
      : loadOrCreateSelfSignedCa(
          { dataDir: config.dataDir, trustDomain: config.trustDomain, keyType: config.caKeyType },
          systemClock,
        ),
    DevTokenIssuer.open(config.dataDir),
  ]);
}

/** SIGTERM to every worker (each finishes its in-flight calls), SIGKILL to any that lingers. */
async function drain(workers: Worker[], logger: Logger): Promise<void> {
  await Promise.all(
    workers.map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          const timer = setTimeout(() => {
            logger.warn({ pid: worker.process.pid }, 'worker did not drain in time; killing it');
            worker.process.kill('SIGKILL');
          }, DRAIN_TIMEOUT_MS);
          worker.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          worker.process.kill('SIGTERM');
        }),
    ),
  );
}

/** What a worker's `runServe` does differently; undefined outside a cluster worker. */
export interface ClusterWorkerHooks {
  /** Tags every log line (audit included) with the worker, so lines can be told apart. */
  tagLogger(logger: Logger): Logger;
  /** Hands the start line to the primary, which prints it once for the cluster. */
  announce(line: string): void;
  /** Answers the primary's readiness and metrics questions from now on. */
  serving(options: { readonly registries: readonly Registry[]; readiness(): Readiness }): void;
}

export function clusterWorkerHooks(): ClusterWorkerHooks | undefined {
  const worker = cluster.worker;
  if (!cluster.isWorker || !worker) return undefined;
  const send = (m: WorkerMessage): void => {
    if (process.connected) process.send?.(m);
  };
  // (Should the primary die outright, node:cluster exits the worker when the IPC channel
  // closes: no worker lingers unsupervised.)
  return {
    tagLogger: (logger) => logger.child({ worker: worker.id, pid: process.pid }),
    announce: (line) => send({ castellan: 'serving', line }),
    serving({ registries, readiness }) {
      process.on('message', (m: unknown) => {
        const q = m as Partial<PrimaryMessage> | null;
        if (q?.castellan !== 'metrics?' || typeof q.id !== 'number') return;
        const id = q.id;
        void Promise.all(registries.map((r) => r.getMetricsAsJSON())).then((parts) =>
          send({ castellan: 'metrics', id, metrics: parts.flat() }),
        );
      });
      let last = '';
      const report = (): void => {
        const r = readiness();
        const key = `${r.ready}:${r.reason ?? ''}`;
        if (key === last) return;
        last = key;
        send({ castellan: 'readiness', ready: r.ready, reason: r.reason ?? '' });
      };
      report();
      // Readiness can change later (CA gone, serving certificate lost): follow it.
      setInterval(report, 1000).unref();
    },
  };
}

/**
 * In a worker, once its modules are loaded: tells the primary, and resolves when the primary
 * has prepared the data dir (its 'go').
 */
export function waitForPrimary(): Promise<void> {
  return new Promise((resolve) => {
    const onMessage = (m: unknown): void => {
      if ((m as Partial<PrimaryMessage> | null)?.castellan !== 'go') return;
      process.off('message', onMessage);
      resolve();
    };
    process.on('message', onMessage);
    process.send?.({ castellan: 'loaded' } satisfies WorkerMessage);
  });
}

/** A worker's configuration, as the primary resolved it. */
export function workerConfigFromEnv(env: NodeJS.ProcessEnv): ServeConfig {
  const text = env[WORKER_CONFIG_ENV];
  if (!text) {
    throw new CastellanError('invalid-argument', `${WORKER_CONFIG_ENV} is not set`, {
      subject: 'serve worker',
    });
  }
  return JSON.parse(text) as ServeConfig;
}
