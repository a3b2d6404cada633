// `castellan serve --workers N`: N worker processes (node:cluster) share the gRPC port, so
// issuance uses every core (one Node process saturates one: TLS, HTTP/2, CSR checks and
// authentication run on its main thread). Each worker runs the same ServeApp as a single
// process, without a monitoring listener. The primary serves nothing itself: it prepares the
// data dir once, forks the workers, hands each its options, replaces any that die, answers the
// monitoring port for all of them (/ready when every worker is ready, /metrics summed), prints
// the start line, and drains them on SIGTERM.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { LevelWithSilent } from 'pino';
import type { HostPort } from '../../address.js';
import { DevTokenIssuer } from '../../authn/dev-token-issuer.js';
import { loadOrCreateSelfSignedCa } from '../../ca/sources/self-signed.js';
import type { Clock } from '../../clock.js';
import { asCastellanError, CastellanError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { admissionPerWorker } from '../../server/admission.js';
import { AggregatedWorkersRegistry, type WorkerMetrics } from '../../server/metrics-aggregation.js';
import { MonitoringServer, type Readiness } from '../../server/monitoring.js';
import { loadMeshSettings } from '../../server/policy-options.js';
import { ServeApp, startLine, type ServeProcessHost, type ServingSummary } from './app.js';
import {
  parsePrimaryMessage,
  parseWorkerMessage,
  type PrimaryMessage,
  type WorkerMessage,
  type WorkerServeOptions,
} from './cluster-messages.js';
import type { Environment, ServeOptions, WorkersSetting } from './options.js';

/**
 * Local mode's default: one process. Measured on a 2-core machine with the load generator on
 * the same machine (docs/performance.md): two workers added only 6–20% throughput (the client
 * takes the other core) and doubled start to /ready (≈0.55 s → ≈1.1 s, past the 1 s target),
 * since each worker loads every module itself. `--workers auto` is for a machine whose clients
 * are elsewhere. (Kubernetes mode allows only one: completeServeOptions refuses more.)
 */
export const LOCAL_DEFAULT_WORKERS: WorkersSetting = 1;

/** How many worker processes: `auto` is the cores this process may use. */
export function resolveWorkerCount(
  setting: WorkersSetting | undefined,
  cores: number = availableParallelism(),
): number {
  const wanted = setting ?? LOCAL_DEFAULT_WORKERS;
  return wanted === 'auto' ? Math.max(1, cores) : wanted;
}

/** How long the primary waits for a worker's answer to a /metrics query. */
const METRICS_QUERY_TIMEOUT_MS = 2000;
/** Replacements beyond this many deaths within CRASH_WINDOW_MS wait CRASH_BACKOFF_MS. */
const CRASHES_BEFORE_BACKOFF = 3;
const CRASH_WINDOW_MS = 10_000;
const CRASH_BACKOFF_MS = 1000;
/** How long SIGTERM waits for workers to drain before killing them. */
const DRAIN_TIMEOUT_MS = 15_000;
/** How often a worker re-checks its readiness (CA gone, serving certificate lost). */
const READINESS_REPORT_MS = 1000;

/** The script node:cluster runs in each worker. */
const WORKER_SCRIPT = fileURLToPath(new URL('./worker-main.js', import.meta.url));

/** Runs serve as the primary of `workers` processes until SIGTERM/SIGINT (or a failed start). */
export async function runClusterPrimary(
  options: ServeOptions,
  workers: number,
  host: ServeProcessHost,
): Promise<void> {
  await new ClusterPrimary(options, workers, host).run();
}

/** What the primary knows of one worker. */
interface WorkerState {
  ready: boolean;
  reason: string;
  /** Ready at least once: its death is a crash to recover from, not a failed start. */
  everReady: boolean;
}

/** A /metrics scrape in progress: the workers still to answer, and what came back. */
interface MetricsQuery {
  readonly waitingFor: Set<Worker>;
  readonly received: WorkerMetrics[];
  finish(): void;
}

class ClusterPrimary {
  private readonly workers = new Map<Worker, WorkerState>();
  private readonly metricsQueries = new Map<number, MetricsQuery>();
  private nextQueryId = 0;
  /** Set once SIGTERM (or a failed start) arrived: exited workers are not replaced. */
  private stopping = false;
  /** What the first serving worker reported; the start line is printed from it. */
  private firstServing: ServingSummary | undefined;
  private announced = false;
  /** Times of recent worker deaths, for the crash back-off. */
  private readonly recentDeaths: number[] = [];
  private readonly monitoring: MonitoringServer;
  private monitoringAddress: HostPort | undefined;
  /** What each worker is handed: the same options, with the monitoring port left to us. */
  private readonly workerOptions: WorkerServeOptions;
  /** Assigned in run() right after forking, before any worker's message can arrive. */
  private sharedStatePrepared!: Promise<void>;
  private failStart: (e: Error) => void = () => {};
  private readonly startFailed = new Promise<never>((_, reject) => (this.failStart = reject));

  constructor(
    private readonly options: ServeOptions,
    private readonly count: number,
    private readonly host: ServeProcessHost,
  ) {
    this.startFailed.catch(() => {});
    this.workerOptions = {
      ...options,
      kube: undefined,
      server: {
        ...options.server,
        monitoringAddress: undefined,
        admission: admissionPerWorker(options.server.admission, count),
      },
    };
    this.monitoring = new MonitoringServer({
      readiness: () => this.readiness(),
      registries: [new AggregatedWorkersRegistry(() => this.collectMetrics())],
      logger: host.logger,
    });
  }

  async run(): Promise<void> {
    const { logger } = this.host;
    const address = this.options.server.monitoringAddress;
    this.monitoringAddress = address ? await this.monitoring.listen(address) : undefined;
    cluster.setupPrimary({ exec: WORKER_SCRIPT });
    // Workers are forked first: loading their modules (the bulk of start-up) overlaps with
    // preparing the data dir here, and each waits for the 'go' that follows it.
    for (let i = 0; i < this.count; i++) this.fork();
    // Foreign roots in root-cert.pem are said by each worker as it loads the set.
    this.sharedStatePrepared = prepareSharedState(this.options, this.host.clock);
    this.sharedStatePrepared.catch((e: unknown) =>
      this.failStart(e instanceof Error ? e : new Error(String(e))),
    );
    let failure: Error | undefined;
    const signal = await Promise.race([this.host.stopRequested, this.startFailed]).catch(
      (e: unknown) => {
        failure = e instanceof Error ? e : new Error(String(e));
        return 'start-up failure';
      },
    );
    this.stopping = true;
    logger.info({ signal, workers: this.workers.size }, 'shutting down: draining workers');
    await this.drain();
    await this.monitoring.close();
    logger.info('stopped');
    logger.flush();
    if (failure) throw failure;
  }

  private readiness(): Readiness {
    if (this.stopping) return { ready: false, reason: 'shutting down' };
    const states = [...this.workers.values()];
    const ready = states.filter((s) => s.ready).length;
    if (ready >= this.count) return { ready: true };
    const why = states.find((s) => !s.ready)?.reason ?? 'starting';
    return { ready: false, reason: `${ready} of ${this.count} workers ready (${why})` };
  }

  private fork(): void {
    const worker = cluster.fork();
    this.workers.set(worker, { ready: false, reason: 'starting', everReady: false });
    worker.on('message', (raw: unknown) => this.onMessage(worker, raw));
    worker.on('exit', (code: number | null, signal: string | null) =>
      this.onExit(worker, code, signal),
    );
  }

  private send(worker: Worker, message: PrimaryMessage): void {
    if (worker.isConnected()) worker.send(message);
  }

  private onMessage(worker: Worker, raw: unknown): void {
    let message: WorkerMessage | undefined;
    try {
      message = parseWorkerMessage(raw);
    } catch (e) {
      this.host.logger.error(
        { pid: worker.process.pid, err: (e as Error).message },
        'refused a message from a worker',
      );
      return;
    }
    const state = this.workers.get(worker);
    switch (message?.castellan) {
      case 'loaded':
        // The worker has loaded its modules; it starts serving once the data dir is ready.
        void this.sharedStatePrepared.then(
          () => this.send(worker, { castellan: 'go', options: this.workerOptions }),
          () => {},
        );
        break;
      case 'serving':
        this.firstServing ??= message.serving;
        this.maybeAnnounce();
        break;
      case 'readiness':
        if (!state) break;
        state.ready = message.ready;
        state.reason = message.reason;
        state.everReady ||= message.ready;
        this.maybeAnnounce();
        break;
      case 'metrics': {
        const query = this.metricsQueries.get(message.id);
        if (!query || !query.waitingFor.delete(worker)) break;
        query.received.push(message.metrics);
        if (query.waitingFor.size === 0) query.finish();
        break;
      }
      case undefined: // Not ours: no `castellan` tag (parseWorkerMessage).
        break;
    }
  }

  /** The start line, once: when a worker serves and every worker is ready. */
  private maybeAnnounce(): void {
    if (this.announced || !this.firstServing || !this.readiness().ready) return;
    this.announced = true;
    this.host.stdout.write(startLine({ ...this.firstServing, monitoring: this.monitoringAddress }));
    this.host.logger.info(
      { workers: this.count, pids: [...this.workers.keys()].map((w) => w.process.pid) },
      'all workers ready',
    );
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const state = this.workers.get(worker);
    this.workers.delete(worker);
    for (const query of this.metricsQueries.values()) {
      if (query.waitingFor.delete(worker) && query.waitingFor.size === 0) query.finish();
    }
    if (this.stopping) return;
    if (!state?.everReady && !this.announced) {
      // Dying before ever serving (a port in use, a bad CA folder): a replacement would die
      // the same way, so the whole command fails, with the worker's own message on stderr.
      this.failStart(
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
    const now = this.host.clock.now();
    this.recentDeaths.push(now);
    while ((this.recentDeaths[0] ?? Infinity) < now - CRASH_WINDOW_MS) {
      this.recentDeaths.shift();
    }
    const delayMs = this.recentDeaths.length > CRASHES_BEFORE_BACKOFF ? CRASH_BACKOFF_MS : 0;
    this.host.logger.error(
      { worker: worker.id, pid: worker.process.pid, code, signal, delayMs },
      'worker died; starting a replacement',
    );
    this.host.clock.after(delayMs, () => {
      if (!this.stopping) this.fork();
    });
  }

  /** Every worker's metrics for one /metrics scrape; a worker that does not answer is left out. */
  private collectMetrics(): Promise<WorkerMetrics[]> {
    return new Promise((resolve) => {
      const waitingFor = new Set([...this.workers.keys()].filter((w) => w.isConnected()));
      if (waitingFor.size === 0) {
        resolve([]);
        return;
      }
      const id = this.nextQueryId++;
      const received: WorkerMetrics[] = [];
      const timer = this.host.clock.after(METRICS_QUERY_TIMEOUT_MS, () => {
        this.host.logger.warn(
          { missing: [...waitingFor].map((w) => w.process.pid) },
          'workers did not send metrics in time',
        );
        finish();
      });
      const finish = (): void => {
        timer.cancel();
        this.metricsQueries.delete(id);
        resolve(received);
      };
      this.metricsQueries.set(id, { waitingFor, received, finish });
      for (const worker of waitingFor) this.send(worker, { castellan: 'metrics?', id });
    });
  }

  /** SIGTERM to every worker (each finishes its in-flight calls), SIGKILL to any that lingers. */
  private async drain(): Promise<void> {
    await Promise.all(
      [...this.workers.keys()].map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) {
              resolve();
              return;
            }
            const timer = this.host.clock.after(DRAIN_TIMEOUT_MS, () => {
              this.host.logger.warn(
                { pid: worker.process.pid },
                'worker did not drain in time; killing it',
              );
              worker.process.kill('SIGKILL');
            });
            worker.once('exit', () => {
              timer.cancel();
              resolve();
            });
            worker.process.kill('SIGTERM');
          }),
      ),
    );
  }
}

/**
 * The data dir's shared state, made once before any worker reads it, so workers only ever read
 * it (no two processes race to create a root key or the development token issuer's key).
 */
async function prepareSharedState(options: ServeOptions, clock: Clock): Promise<void> {
  const { ca } = options;
  const selfSigned = async (): Promise<unknown> =>
    ca.cacertsDir
      ? undefined
      : loadOrCreateSelfSignedCa(
          {
            dataDir: ca.dataDir,
            // As a single process does (./app.ts): the mesh config's trust domain names the root.
            trustDomain: (await loadMeshSettings(options.policy)).trustDomain,
            keyType: ca.selfSignedKeyType,
            ttlMs: ca.selfSignedRootTtlMs,
          },
          clock,
        );
  // Both at once: the dev issuer's RSA key is generated on the thread pool meanwhile.
  await Promise.all([selfSigned(), DevTokenIssuer.open(ca.dataDir, { clock })]);
}

/** A worker's end of the IPC channel (node:cluster's `process.send` / 'message'). */
export interface PrimaryChannel {
  send(message: WorkerMessage): void;
  /** Returns a function that removes the listener. */
  onMessage(listener: (raw: unknown) => void): () => void;
}

/** What a worker takes from its process; read once, by ./worker-main.ts. */
export interface ClusterWorkerHost {
  readonly clock: Clock;
  readonly env: Environment;
  readonly channel: PrimaryChannel;
  /** Resolves with the signal's name when the primary (or anyone) asks this worker to stop. */
  readonly stopRequested: Promise<string>;
  /** The worker's logger once the options say its level (tagged so lines can be told apart). */
  logger(level: LevelWithSilent): Logger;
}

/**
 * A worker: says it has loaded, waits for its options (checked: a bad message fails the worker),
 * serves them with a ServeApp, reports to the primary (start, readiness, metrics), and stops
 * when asked. Resolves when stopped; stopped before its options came, it never serves.
 */
export async function runClusterWorker(host: ClusterWorkerHost): Promise<void> {
  const { channel, clock } = host;
  const options = await receiveOptions(channel, host.stopRequested);
  if (!options) return;
  const logger = host.logger(options.logLevel);
  const app = await ServeApp.create(options, { clock, env: host.env, logger });
  const serving = await app.start();
  // Workers run local mode only (--workers needs no --kube), whose CA loads before start().
  if (!serving) throw new CastellanError('internal', 'a worker started without a CA');
  channel.send({ castellan: 'serving', serving });
  const stopAnswering = answerPrimary(app, channel, clock, logger);
  const signal = await host.stopRequested;
  logger.info({ signal }, 'shutting down: finishing in-flight requests');
  stopAnswering();
  await app.stop();
  logger.info('stopped');
  logger.flush();
}

/**
 * Sends 'loaded'; resolves with the options of the primary's 'go', or with undefined if the
 * worker is asked to stop first (the primary drains workers that are still waiting).
 */
function receiveOptions(
  channel: PrimaryChannel,
  stopRequested: Promise<string>,
): Promise<WorkerServeOptions | undefined> {
  return new Promise((resolve, reject) => {
    const stopListening = channel.onMessage((raw) => {
      let message: PrimaryMessage | undefined;
      try {
        message = parsePrimaryMessage(raw);
      } catch (e) {
        stopListening();
        reject(asCastellanError(e, 'malformed'));
        return;
      }
      if (message?.castellan !== 'go') return;
      stopListening();
      resolve(message.options);
    });
    void stopRequested.then(() => {
      stopListening();
      resolve(undefined);
    });
    channel.send({ castellan: 'loaded' });
  });
}

/** Answers the primary's metrics queries and reports readiness changes; returns a stop. */
function answerPrimary(
  app: ServeApp,
  channel: PrimaryChannel,
  clock: Clock,
  logger: Logger,
): () => void {
  const stopListening = channel.onMessage((raw) => {
    let message: PrimaryMessage | undefined;
    try {
      message = parsePrimaryMessage(raw);
    } catch (e) {
      logger.error({ err: (e as Error).message }, 'refused a message from the primary');
      return;
    }
    if (message?.castellan !== 'metrics?') return;
    const { id } = message;
    void Promise.all(app.registries.map((r) => r.getMetricsAsJSON())).then((parts) =>
      channel.send({ castellan: 'metrics', id, metrics: parts.flat() }),
    );
  });
  let last = '';
  const report = (): void => {
    const r = app.readiness();
    const key = `${r.ready}:${r.reason ?? ''}`;
    if (key === last) return;
    last = key;
    channel.send({ castellan: 'readiness', ready: r.ready, reason: r.reason ?? '' });
  };
  report();
  // Readiness can change later (CA gone, serving certificate lost): follow it.
  const timer = clock.every(READINESS_REPORT_MS, report);
  return () => {
    timer.cancel();
    stopListening();
  };
}
