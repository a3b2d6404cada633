import { AggregatorRegistry, Registry, type Aggregator } from 'prom-client';

/** One worker's metrics, as `Registry.getMetricsAsJSON()` gives them (plain JSON, sent by IPC). */
export type WorkerMetrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/**
 * Metrics every worker holds the same value of, because each follows the same state rather
 * than counting its own events: the CA's expiry gauges, and refused CA updates (every worker
 * watches the same plugged-in folder, so each counts the same refusal). Summing them would
 * multiply them by the worker count; the largest is the truth.
 */
const MIRRORED_COUNTERS = new Set(['castellan_ca_load_errors_total']);
/** Gauges of each worker's own resources: the service has their sum. */
const SUMMED_GAUGES = new Set([
  'castellan_csr_check_threads_ready',
  'castellan_csr_inflight',
  'castellan_csr_inflight_limit',
  'castellan_csr_queue_limit',
  'castellan_csr_queued',
  // Each worker's own connections on the shared gRPC port.
  'castellan_grpc_open_connections',
]);

function aggregatorFor(metric: WorkerMetrics[number]): Aggregator {
  // prom-client types `type` as a numeric enum, but the JSON carries its name ('gauge').
  if (SUMMED_GAUGES.has(metric.name)) return 'sum';
  if (String(metric.type) === 'gauge' || MIRRORED_COUNTERS.has(metric.name)) return 'max';
  // Counters and histograms count each worker's own calls: the service's total is the sum.
  return 'sum';
}

/**
 * Merges the metrics of several workers into one registry, as if one process had served every
 * call: counters and histograms summed, mirrored state (gauges) taken once. prom-client's
 * AggregatorRegistry does the merging; only the choice of aggregator per metric is ours.
 */
export function aggregateWorkerMetrics(workers: readonly WorkerMetrics[]): Registry {
  const withAggregators = workers.map((metrics) =>
    metrics.map((m) => ({ ...m, aggregator: aggregatorFor(m) })),
  );
  return AggregatorRegistry.aggregate(withAggregators);
}

/**
 * A registry whose exposition is fetched from the workers at scrape time and aggregated, so
 * the primary's monitoring server can list it like any local registry.
 */
export class AggregatedWorkersRegistry extends Registry {
  constructor(private readonly collect: () => Promise<readonly WorkerMetrics[]>) {
    super();
  }

  override async metrics(): Promise<string> {
    return aggregateWorkerMetrics(await this.collect()).metrics();
  }
}
