// End to end, driven by h2load (nghttp2-client): CreateCertificate over gRPC + TLS + JWT against
// a spawned `castellan serve`, from c separate TLS connections with one call in flight on each
// (-c c -m 1 -t 1), as sidecars make. h2load is a C load generator on one thread, so it takes
// far less of the machine's CPU than a Node gRPC client and the figures are mostly the
// server's; its CPU is reported (`gen cpu`) beside the server's to show how much it took.
//
// Each case:
// 1. starts the server (bench/server.ts) and writes the request body (one gRPC frame, see
//    grpc-frame.ts) into the server's temp data dir;
// 2. warm-up: `h2load -D 2s -c c` (WARM_UP_SECONDS; no longer than the measured run), so the
//    server's JIT is warm before timing, with the same accounting as the measured run (step 4).
//    It was `-n max(4c, 128)` until 2026-12-07: 256 calls at P-256 c=64, after which the first
//    second of the measured run still had a p99 of 30–37 ms against 11–19 ms for most seconds
//    after it (the JIT still compiling); in single runs, 5,000 calls of warm-up brought that
//    second to 24 ms and 20,000 to 15 (docs/performance.md, "Warm-up"). A CA serves for days:
//    the figures are for a warm one. Start-up has its own case;
// 3. the measured run: `h2load -D <seconds + 1 s> -c c --log-file …`. A new h2load process
//    makes new connections, so the measured run starts with c TLS handshakes, which under load
//    can take a few hundred ms. The figures are taken from its per-request log over the
//    steady window: from when the last connection was up to the last response. h2load's
//    --warm-up-time would keep the handshakes out too, but it does not count the calls of its
//    warm-up phase anywhere, and then the server's counters cannot be checked against it;
// 4. checks the outcome against the server, since h2load only sees HTTP status 200 even when
//    the gRPC call failed (grpc-status comes in the trailers): /metrics before and after
//    (summed over workers by the primary).
import { onInterrupt } from './interrupt.js';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createKeyAndCsr, type WorkloadKeyType } from '../src/pki/csr-builder.js';
import type { GrpcTransport } from '../src/server/grpc-transport.js';
import { CFSSL_AUTHSIGN_CASE } from './cfssl.js';
import { createCertificateFrame } from './grpc-frame.js';
import {
  CA_KEY_TYPES,
  childPids,
  LIMITS,
  TARGETS,
  scrapeCounters,
  serverCpuSeconds,
  serverPids,
  peakRssDuring,
  serverThreadCpuSeconds,
  settledCounters,
  threadCpuSplit,
  startServer,
  type CaCounters,
  type CaKeyType,
  type Server,
} from './server.js';
import type { BenchCase, BenchOptions, Measurement } from './types.js';

const NOT_FOUND = 'h2load not found: run scripts/setup-bench-deps.sh';
/** Added to the measured run's duration for its connections to come up (see step 3 above). */
export const RAMP_SECONDS = 1;
/** The warm-up's load, for every h2load case and its peer (step 2 above). */
export const WARM_UP_SECONDS = 2;

/** h2load's bound for a warm-up before a measured run of `seconds`. */
export function warmUpDuration(seconds: number): string {
  return `${Math.round(Math.min(WARM_UP_SECONDS, seconds) * 1000)}ms`;
}

let h2loadFound: boolean | undefined;
function requireH2load(): void {
  h2loadFound ??= spawnSync('h2load', ['--version'], { stdio: 'ignore' }).error === undefined;
  if (!h2loadFound) throw new Error(NOT_FOUND);
}

interface H2loadRun {
  /** h2load's standard output (its summary). */
  output: string;
  /** CPU seconds (user + system) h2load used, from the shell's `times`. */
  cpuSeconds: number;
  /** From spawn to exit. */
  wallSeconds: number;
}

/**
 * Runs h2load with `args`, bounded to `timeoutMs`. It runs under `sh`, whose `times` builtin
 * then prints the CPU time of its finished children (h2load only): exact, where reading
 * /proc/<pid>/stat would race with the exit. A timeout kills h2load (and, if the shell lingers,
 * its process group: the shell leads its own); this returns only once both are gone.
 */
export async function runH2load(args: string[], timeoutMs: number): Promise<H2loadRun> {
  requireH2load();
  const t0 = performance.now();
  const child = spawn('/bin/sh', ['-c', 'h2load "$@"; s=$?; times; exit $s', 'h2load', ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-64_000)));
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  let timedOut = false;
  const kill = (pid: number): void => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  // On timeout, h2load first, so that the shell reaps it (killed together, h2load would be
  // left to init, which in a container may never reap it); then, if need be, the whole group.
  let groupTimer: NodeJS.Timeout | undefined;
  // Its own process group (detached): a Ctrl-C to the bench's group does not reach it.
  const forget = onInterrupt(() => kill(-child.pid!));
  const timer = setTimeout(() => {
    timedOut = true;
    for (const pid of childPids(child.pid!)) kill(pid);
    groupTimer = setTimeout(() => kill(-child.pid!), 2000);
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(
    (resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, s) => resolve([c, s]));
    },
  ).finally(() => {
    forget();
    clearTimeout(timer);
    clearTimeout(groupTimer);
  });
  const wallSeconds = (performance.now() - t0) / 1000;
  const tail = `${err}${out}`.trim().split('\n').slice(-8).join('\n');
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the timer's callback: TypeScript keeps a let narrowed to its initializer across callbacks (microsoft/TypeScript#9998)
  if (timedOut) throw new Error(`h2load did not finish in ${timeoutMs} ms: ${tail}`);
  if (code !== 0) throw new Error(`h2load exited with ${code ?? signal}: ${tail}`);
  // `times` prints two lines, "<user> <sys>" of the shell, then of its children: "0m1.23s ...".
  const lines = out.trimEnd().split('\n');
  const children = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines.pop() ?? '');
  if (!children) throw new Error(`no CPU times after h2load's output: ${tail}`);
  const [, um, us, sm, ss] = children.map(Number) as [number, number, number, number, number];
  lines.pop(); // the shell's own times
  return { output: lines.join('\n'), cpuSeconds: um * 60 + us + sm * 60 + ss, wallSeconds };
}

export interface H2loadStats {
  started: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  /** Connect (TCP + TLS) times, from the start of the main phase; microseconds. */
  connectMinUs: number;
  connectMaxUs: number;
}

/** h2load's durations: "0us", "9.74ms", "1.03s". */
function durationUs(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!m) throw new Error(`unexpected h2load duration "${text}"`);
  return Number(m[1]) * { us: 1, ms: 1e3, s: 1e6 }[m[2] as 'us' | 'ms' | 's'];
}

/** h2load's summary; fails unless it negotiated `protocol` (h2, or http/1.1 with --h1). */
export function parseStats(output: string, protocol = 'h2'): H2loadStats {
  const proto = /^Application protocol: (\S+)/m.exec(output)?.[1];
  if (proto !== protocol) {
    throw new Error(`h2load negotiated ${proto ?? 'no protocol'}, not ${protocol}`);
  }
  const r =
    /^requests: \d+ total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(
      output,
    );
  const connect = /^time for connect:\s+(\S+)\s+(\S+)/m.exec(output);
  if (!r || !connect) throw new Error(`unexpected h2load summary:\n${output}`);
  const [started, done, succeeded, failed, errored, timeout] = r.slice(1).map(Number);
  return {
    started: started!,
    done: done!,
    succeeded: succeeded!,
    failed: failed!,
    errored: errored!,
    timeout: timeout!,
    connectMinUs: durationUs(connect[1]!),
    connectMaxUs: durationUs(connect[2]!),
  };
}

/**
 * Checks h2load's counts against the server's. Every call that reaches the handler counts in
 * csr_count, and in success_cert_issuance_count only if a certificate was issued, so:
 * - csr delta = issued + cancelled delta: nothing was refused (a call h2load cut off at the time
 *   limit is cancelled by its client and, since issue 15, not signed);
 * - issued delta >= h2load's succeeded: every HTTP 200 h2load counted carried a certificate
 *   (a call refused before the handler, e.g. undecodable, counts in neither);
 * - issued delta <= succeeded + (started - done): h2load's -D stops its clients at the cut
 *   with calls started but not done, which the server still answers (and counts); those are
 *   the only calls of ours h2load does not count as succeeded. With -n, started = done.
 */
function checkAccounting(run: string, s: H2loadStats, before: CaCounters, after: CaCounters): void {
  const csr = after.csr - before.csr;
  const issued = after.issued - before.issued;
  const cancelled = after.cancelled - before.cancelled;
  const counts = `citadel_server_csr_count +${csr}, citadel_server_success_cert_issuance_count +${issued}, cancelled or left the queue +${cancelled}; h2load: ${s.started} started, ${s.done} done, ${s.succeeded} succeeded`;
  if (s.failed || s.errored || s.timeout) {
    throw new Error(
      `${run}: h2load saw ${s.failed} failed, ${s.errored} errored, ${s.timeout} timed out (${counts})`,
    );
  }
  if (csr !== issued + cancelled) {
    throw new Error(
      `${run}: the server refused ${csr - issued - cancelled} of ${csr} calls (${counts})`,
    );
  }
  // Only the calls h2load cut off at the time limit may have been left by their client.
  if (cancelled > s.started - s.done) {
    throw new Error(`${run}: more calls cancelled than h2load cut off (${counts})`);
  }
  if (issued < s.succeeded) {
    throw new Error(
      `${run}: h2load counted ${s.succeeded - issued} successes without a certificate: HTTP 200 with a gRPC error in the trailers? (${counts})`,
    );
  }
  if (issued > s.succeeded + (s.started - s.done)) {
    throw new Error(`${run}: the server issued more than h2load started (${counts})`);
  }
}

export interface LogRow {
  /** Request start, microseconds since the epoch. */
  startUs: number;
  status: number;
  durationUs: number;
}

/** h2load --log-file: "<start µs since epoch>\t<HTTP status, -1 if failed>\t<µs to end>". */
export function readLog(path: string): LogRow[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [startUs, status, durationUs] = line.split('\t').map(Number);
      return { startUs: startUs!, status: status!, durationUs: durationUs! };
    });
}

/**
 * Throughput and latency over the steady window of a run: from the moment its last connection
 * was up to its last response. h2load's connect times count from the start of the main phase,
 * and each client sends its first request as soon as it is connected, so the earliest request
 * starts connectMin after that start and the last connection is up at connectMax. The rate is
 * the responses that ended in the window over its length (from the log, not from h2load's
 * "finished in", which also holds the handshakes and the stop); latencies are those of the
 * requests started in the window.
 */
export function steadyWindow(
  rows: LogRow[],
  s: H2loadStats,
): { seconds: number; completed: number; p50: number; p99: number } {
  // Loops, not Math.min(...rows): a long run has more rows than a call takes arguments.
  let firstStart = Infinity;
  let lastEnd = -Infinity;
  for (const r of rows) {
    firstStart = Math.min(firstStart, r.startUs);
    lastEnd = Math.max(lastEnd, r.startUs + r.durationUs);
  }
  const upUs = firstStart - s.connectMinUs + s.connectMaxUs;
  const completed = rows.filter((r) => r.startUs + r.durationUs >= upUs).length;
  const latencies = rows
    .filter((r) => r.startUs >= upUs)
    .map((r) => r.durationUs / 1000)
    .sort((a, b) => a - b);
  const q = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return { seconds: (lastEnd - upUs) / 1e6, completed, p50: q(0.5), p99: q(0.99) };
}

const csrPems = new Map<WorkloadKeyType, Promise<string>>();
/**
 * One CSR for every request: the server keeps no CSR cache (each call parses the CSR, checks
 * its proof of possession and signs a new certificate), so repeating it costs the same. P-256 is
 * what ztunnel (and sidecars with ECC_SIGNATURE_ALGORITHM=ECDSA) send; RSA-2048 what Istio's
 * sidecars send by default (pilot-agent: WORKLOAD_RSA_KEY_SIZE 2048).
 */
function benchCsr(keyType: WorkloadKeyType): Promise<string> {
  let pem = csrPems.get(keyType);
  if (!pem) {
    pem = createKeyAndCsr(keyType, { sans: ['spiffe://cluster.local/ns/bench/sa/sa'] }).then(
      (k) => k.csrPem,
    );
    csrPems.set(keyType, pem);
  }
  return pem;
}

function h2loadArgs(server: Server, bodyPath: string, concurrency: number): string[] {
  return [
    ...['-c', String(concurrency), '-m', '1', '-t', '1'],
    ...['-d', bodyPath],
    ...['-H', 'content-type: application/grpc'],
    ...['-H', 'te: trailers'],
    ...['-H', `authorization: Bearer ${server.token}`],
    `https://${server.grpcAddr}/istio.v1.auth.IstioCertificateService/CreateCertificate`,
  ];
}

async function measure(
  server: Server,
  concurrency: number,
  options: BenchOptions,
  csrKeyType: WorkloadKeyType,
): Promise<Measurement> {
  const bodyPath = join(server.dataDir, 'h2load-body.bin');
  writeFileSync(bodyPath, createCertificateFrame(await benchCsr(csrKeyType), 3600));
  const args = h2loadArgs(server, bodyPath, concurrency);
  const pid = server.child.pid!;

  // Warm-up, bounded by time like the measured run and checked the same way.
  let before = await scrapeCounters(server);
  const warmUp = await runH2load(['-D', warmUpDuration(options.seconds), ...args], 120_000);
  let after = await settledCounters(server);
  const warmUpStats = parseStats(warmUp.output);
  checkAccounting('warm-up', warmUpStats, before, after);
  if (warmUpStats.succeeded === 0) throw new Error('warm-up: no call succeeded');

  // The measured run, bounded by time (h2load's -n and -D are exclusive).
  const logPath = join(server.dataDir, 'h2load-requests.log');
  const durationMs = Math.round((options.seconds + RAMP_SECONDS) * 1000);
  before = after;
  const cpu0 = serverCpuSeconds(pid);
  const threads0 = serverThreadCpuSeconds(pid);
  const { value: run, peakRssMb } = await peakRssDuring(
    pid,
    runH2load(['-D', `${durationMs}ms`, `--log-file=${logPath}`, ...args], durationMs + 60_000),
  );
  const cpuSeconds = serverCpuSeconds(pid) - cpu0;
  const byThread = threadCpuSplit(threads0, serverThreadCpuSeconds(pid));
  const serverCpu = cpuSeconds / run.wallSeconds;
  after = await settledCounters(server);
  const stats = parseStats(run.output);
  checkAccounting('measured run', stats, before, after);
  const rows = readLog(logPath);
  const notOk = rows.filter((r) => r.status !== 200).length;
  if (rows.length === 0 || rows.length !== stats.done || notOk) {
    throw new Error(
      `measured run: the log has ${rows.length} requests (${notOk} not HTTP 200), h2load counted ${stats.done} done`,
    );
  }
  const w = steadyWindow(rows, stats);
  if (w.seconds < options.seconds / 2) {
    throw new Error(
      `measured run: connections took ${(stats.connectMaxUs / 1e6).toFixed(2)} s to come up, leaving ${w.seconds.toFixed(2)} s of steady load`,
    );
  }
  return {
    certs_per_s: w.completed / w.seconds,
    p50_ms: w.p50,
    p99_ms: w.p99,
    rss_mb: peakRssMb,
    processes: serverPids(pid).length,
    ready_ms: server.readyMs,
    server_cpu: serverCpu,
    client_cpu: run.cpuSeconds / run.wallSeconds,
    // Over the whole run (handshakes and the cut included), per certificate issued in it.
    cpu_us_per_cert: (cpuSeconds * 1e6) / (after.issued - before.issued),
    loop_us_per_cert: (byThread.loop * 1e6) / (after.issued - before.issued),
    crypto_us_per_cert: (byThread.crypto * 1e6) / (after.issued - before.issued),
  };
}

function h2loadCase(
  keyType: CaKeyType,
  concurrency: number,
  workers?: string,
  csrKeyType: WorkloadKeyType = 'ec-p256',
  transport?: GrpcTransport,
): BenchCase {
  const csr = csrKeyType === 'ec-p256' ? '' : ` csr=${csrKeyType}`;
  const serveArgs = transport ? ['--grpc-transport', transport] : [];
  return {
    name: `e2e h2load grpc+tls+jwt ${keyType} c=${concurrency}${workers ? ` --workers ${workers}` : ''}${csr}${serveArgs.length ? ` ${serveArgs.join(' ')}` : ''}`,
    limit: LIMITS[keyType],
    // The issue's targets are stated for the P-256 CSRs of the other cases.
    target: csr || transport ? '-' : TARGETS[keyType](concurrency),
    // The issue's yardstick: a Go CA doing TLS + HTTP/2 + an authenticated sign, same h2load.
    ...(keyType === 'ec-p256' && concurrency === 64 && !csr
      ? { peer: CFSSL_AUTHSIGN_CASE(64) }
      : {}),
    async run(options): Promise<Measurement> {
      requireH2load(); // before starting anything
      const server = await startServer(keyType, workers, serveArgs);
      try {
        return await measure(server, concurrency, options, csrKeyType);
      } finally {
        await server.stop();
      }
    },
  };
}

export function h2loadCases(): BenchCase[] {
  const out: BenchCase[] = [];
  for (const keyType of CA_KEY_TYPES) {
    for (const c of keyType === 'ec-p256' ? [1, 16, 64] : [64]) out.push(h2loadCase(keyType, c));
    // The multi-process figure (one worker per core), beside the local default's one process.
    out.push(h2loadCase(keyType, 64, 'auto'));
  }
  // Istio's defaults: sidecars send RSA-2048 CSRs, istiod's self-signed CA is RSA-2048.
  out.push(h2loadCase('ec-p256', 64, undefined, 'rsa-2048'));
  out.push(h2loadCase('rsa-2048', 64, undefined, 'rsa-2048'));
  // The previous transport, @grpc/grpc-js on node:http2, beside ours (docs/performance.md).
  out.push(h2loadCase('ec-p256', 64, undefined, 'ec-p256', 'grpc-js'));
  return out;
}
