// Workers' metrics merged as one service's: own events summed, mirrored state taken once.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  AggregatedWorkersRegistry,
  aggregateWorkerMetrics,
  type WorkerMetrics,
} from '../../src/server/metrics-aggregation.js';

/** One worker's registry, shaped like serve's: counters, a histogram, expiry gauge, CA errors. */
async function worker(
  issued: number,
  latencies: number[],
  loadErrors: number,
): Promise<WorkerMetrics> {
  const registry = new Registry();
  const registers = [registry];
  new Counter({ name: 'citadel_server_success_cert_issuance_count', help: 'h', registers }).inc(
    issued,
  );
  const h = new Histogram({
    name: 'castellan_csr_duration_seconds',
    help: 'h',
    labelNames: ['outcome'],
    buckets: [0.01, 0.1],
    registers,
  });
  for (const l of latencies) h.observe({ outcome: 'issued' }, l);
  new Gauge({ name: 'citadel_server_root_cert_expiry_timestamp', help: 'h', registers }).set(
    2_000_000_000,
  );
  const errors = new Counter({
    name: 'castellan_ca_load_errors_total',
    help: 'h',
    labelNames: ['source'],
    registers,
  });
  if (loadErrors > 0) errors.inc({ source: 'cacerts-dir:/x' }, loadErrors);
  new Gauge({ name: 'castellan_csr_check_threads_ready', help: 'h', registers }).set(1);
  new Gauge({ name: 'castellan_csr_inflight_limit', help: 'h', registers }).set(16);
  new Gauge({ name: 'castellan_csr_queue_limit', help: 'h', registers }).set(256);
  // Through JSON, as the IPC channel carries it.
  return JSON.parse(JSON.stringify(await registry.getMetricsAsJSON())) as WorkerMetrics;
}

function sample(text: string, line: string): number {
  const m = new RegExp(`^${line.replace(/[{}".]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${line} in:\n${text}`);
  return Number(m[1]);
}

describe('aggregateWorkerMetrics', () => {
  test('counters and histograms are summed; gauges and refused CA updates are not', async () => {
    const text = await aggregateWorkerMetrics([
      await worker(3, [0.005, 0.05], 1),
      await worker(5, [0.5], 1),
    ]).metrics();
    assert.equal(sample(text, 'citadel_server_success_cert_issuance_count'), 8);
    // Each worker's own check thread: the service has both.
    assert.equal(sample(text, 'castellan_csr_check_threads_ready'), 2);
    // Each worker's share of the admission bounds: the service's bound is their sum.
    assert.equal(sample(text, 'castellan_csr_inflight_limit'), 32);
    assert.equal(sample(text, 'castellan_csr_queue_limit'), 512);
    assert.equal(sample(text, 'castellan_csr_duration_seconds_count{outcome="issued"}'), 3);
    assert.equal(
      sample(text, 'castellan_csr_duration_seconds_bucket{le="0.1",outcome="issued"}'),
      2,
    );
    assert.equal(sample(text, 'citadel_server_root_cert_expiry_timestamp'), 2_000_000_000);
    assert.equal(sample(text, 'castellan_ca_load_errors_total{source="cacerts-dir:/x"}'), 1);
  });

  test('AggregatedWorkersRegistry asks the workers at each scrape', async () => {
    let scrapes = 0;
    const registry = new AggregatedWorkersRegistry(async () => {
      scrapes++;
      return [await worker(scrapes, [], 0)];
    });
    assert.equal(sample(await registry.metrics(), 'citadel_server_success_cert_issuance_count'), 1);
    assert.equal(sample(await registry.metrics(), 'citadel_server_success_cert_issuance_count'), 2);
  });
});
