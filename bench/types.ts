/** openssl speed algorithm names whose signing rate is a case's limit. */
export type LimitKey = 'ecdsap256' | 'rsa2048' | 'rsa4096';

export interface BenchOptions {
  /** A short smoke run. */
  readonly quick: boolean;
  /** Upper bound on the measured time of one case. */
  readonly seconds: number;
  /** Upper bound on the certificates issued by one case. */
  readonly maxCount: number;
}

export interface Measurement {
  certs_per_s: number;
  p50_ms: number;
  p99_ms: number;
  /**
   * Resident memory of the process doing the work (the server for end-to-end cases; for the
   * h2load cases and their cfssl peers, the peak read every 250 ms during the measured run).
   */
  rss_mb: number;
  /** End-to-end cases: `castellan serve` start to the first 200 from /ready (target <= 1 s). */
  ready_ms?: number;
  /**
   * End-to-end cases: the server's CPU use during the load in cores (1.0 = one core busy).
   * Near 1.0 with the thread pool idle means the event loop is the bottleneck.
   */
  server_cpu?: number;
  /**
   * End-to-end cases: the load generator's CPU use over the same run, in cores (`gen cpu`):
   * h2load's process, or this Node process for the grpc-js client cases. On a machine shared
   * by both, what it takes is not available to the server.
   */
  client_cpu?: number;
  /** End-to-end cases: the server's CPU (every thread and process) per certificate, µs. */
  cpu_us_per_cert?: number;
  /** End-to-end cases: the event loops' CPU per certificate (every process's main thread), µs. */
  loop_us_per_cert?: number;
  /**
   * End-to-end cases: the crypto threads' CPU per certificate (each process's busiest thread
   * besides its main one; bench/server.ts threadCpuSplit), µs.
   */
  crypto_us_per_cert?: number;
  /** End-to-end cases: how many processes the server ran (primary + `--workers`). */
  processes?: number;
  /**
   * Signing cases (bench/hsm.ts): the event loop's delay during the run, p99 and max, in ms
   * (perf_hooks.monitorEventLoopDelay): what signing costs the loop that serves requests.
   */
  loop_p99_ms?: number;
  loop_max_ms?: number;
}

export interface BenchCase {
  readonly name: string;
  /** The openssl speed rate this case is compared with; none for cases without a CA key. */
  readonly limit?: LimitKey;
  /** The target, as text for the table (e.g. "≥ 3500/s", "≥ 90% of limit"). */
  readonly target: string;
  /**
   * The name of a peer case (another CA doing the same work, bench/cfssl.ts) this one is
   * compared with: it runs whenever this one does, and the table prints certs/s over the peer's.
   */
  readonly peer?: string;
  run(options: BenchOptions): Promise<Measurement>;
}

/** Runs `op` with `concurrency` in flight until time or count runs out; latencies in ms. */
export async function drive(
  op: (i: number) => Promise<unknown>,
  concurrency: number,
  options: BenchOptions,
): Promise<{ count: number; seconds: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  const deadline = start + options.seconds * 1000;
  let started = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && started < options.maxCount) {
      const i = started++;
      const t0 = performance.now();
      await op(i);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number): number =>
    latencies.length
      ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!
      : 0;
  return { count: latencies.length, seconds, p50: q(0.5), p99: q(0.99) };
}

export function rssMb(): number {
  return process.memoryUsage().rss / (1024 * 1024);
}
