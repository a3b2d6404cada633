// The one start / ready / stop of `castellan serve` for the end-to-end cases (whatever drives
// the load; spawned by the tests' own test/server/support/serve-process.ts), plus what they
// read about the server: its processes, CPU and memory from /proc, and its Prometheus counters
// from the monitoring port.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { stopOnInterrupt, temporaryDir } from './interrupt.js';
import { get } from 'node:http';
import { join } from 'node:path';
import { binPath, cliPath } from '../test/support/paths.js';
import {
  startServe,
  waitForReady,
  type ServeProcess,
} from '../test/server/support/serve-process.js';
import type { LimitKey } from './types.js';

export type CaKeyType = 'ec-p256' | 'rsa-2048' | 'rsa-4096';
export const CA_KEY_TYPES: readonly CaKeyType[] = ['ec-p256', 'rsa-2048', 'rsa-4096'];

export const LIMITS: Record<CaKeyType, LimitKey> = {
  'ec-p256': 'ecdsap256',
  'rsa-2048': 'rsa2048',
  'rsa-4096': 'rsa4096',
};

/** The targets; they are stated for 64 concurrent clients, so only c=64 rows carry one. */
export const TARGETS: Record<CaKeyType, (c: number) => string> = {
  'ec-p256': (c) => (c === 64 ? '>= 3500/s, p99 <= 25 ms, rss <= 200 MB' : '-'),
  'rsa-2048': (c) => (c === 64 ? '>= 70% of limit' : '-'),
  'rsa-4096': (c) => (c === 64 ? '>= 90% of limit' : '-'),
};

export interface Server {
  child: ChildProcess;
  /** The server's own data dir (temporary): files a case writes here go away with stop(). */
  dataDir: string;
  /** host:port of the gRPC (TLS) listener. */
  grpcAddr: string;
  /** host:port of the monitoring HTTP listener (/ready, /metrics). */
  monitoringAddr: string;
  readyMs: number;
  rootPem: string;
  /** A dev-issuer JWT for spiffe://cluster.local/ns/bench/sa/sa. */
  token: string;
  stop(): Promise<void>;
}

function httpGet(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`GET ${url}: no answer in ${timeoutMs} ms`)),
    );
  });
}

/** Start line to the first 200 on /ready, and the start itself, are bounded to this together. */
const READY_TIMEOUT_MS = 30_000;

/**
 * Starts `castellan serve` (own temporary data dir, ephemeral loopback ports, `--log-level
 * error`) through bin/castellan.js, as installed, with test/server/support/serve-process.ts;
 * resolves once /ready answers 200 (bounded to 30 s). `workersFlag` is passed as `--workers`;
 * without it, CASTELLAN_BENCH_WORKERS if set, else serve's own default (one process in local
 * mode).
 */
export async function startServer(
  keyType: CaKeyType,
  workersFlag?: string,
  serveArgs: readonly string[] = [],
): Promise<Server> {
  const temp = temporaryDir('castellan-bench-');
  const dataDir = temp.path;
  const t0 = performance.now();
  // CASTELLAN_BENCH_NODE_ARGS: extra node flags for the server, e.g. to profile it:
  // "--cpu-prof --cpu-prof-dir=/tmp/castellan-prof" (the profile is written on SIGTERM exit).
  const nodeArgs = (process.env.CASTELLAN_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const workers = workersFlag ?? process.env.CASTELLAN_BENCH_WORKERS;
  let serve: ServeProcess | undefined;
  const stop = async (): Promise<void> => {
    await serve?.stop();
    temp.remove();
  };
  try {
    serve = await startServe(
      [
        '--data-dir',
        dataDir,
        '--ca-key-type',
        keyType,
        '--log-level',
        'error',
        // The load is one token standing in for many workloads: the per-identity budget
        // (docs/reliability.md) would shed it by design. The in-flight and queue bounds stay on.
        '--rate-limit',
        'off',
        ...(workers ? ['--workers', workers] : []),
        ...serveArgs,
      ],
      undefined,
      { entry: binPath, nodeArgs, timeoutMs: READY_TIMEOUT_MS },
    );
    stopOnInterrupt(serve.child);
    const left = READY_TIMEOUT_MS - (performance.now() - t0);
    if (!(await waitForReady(serve, left))) {
      throw new Error(`castellan serve did not get ready in 30 s: ${serve.stderr().slice(-4000)}`);
    }
    const readyMs = performance.now() - t0;
    const token = execFileSync(
      process.execPath,
      [cliPath, 'token', '--namespace', 'bench', '--service-account', 'sa', '--data-dir', dataDir],
      { encoding: 'utf8' },
    ).trim();
    const rootPem = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
    return {
      child: serve.child,
      dataDir,
      grpcAddr: `127.0.0.1:${serve.grpcPort}`,
      monitoringAddr: `127.0.0.1:${serve.monitoringPort}`,
      readyMs,
      rootPem,
      token,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The CA service's request counters (Istio's names), summed over workers by the primary. */
export interface CaCounters {
  /** citadel_server_csr_count: CreateCertificate calls that reached the handler. */
  csr: number;
  /** citadel_server_success_cert_issuance_count: certificates issued. */
  issued: number;
  /**
   * castellan_csr_cancelled_total + castellan_csr_queue_abandoned_total: calls whose client
   * left before they were signed or while they waited for a slot (h2load's clients stopped at
   * the time limit with calls in flight), answered with nothing issued.
   */
  cancelled: number;
}

/** Reads the counters from the server's /metrics (bounded to 10 s). */
export async function scrapeCounters(server: Server): Promise<CaCounters> {
  const { status, body } = await httpGet(`http://${server.monitoringAddr}/metrics`, 10_000);
  if (status !== 200) throw new Error(`GET /metrics answered ${status}`);
  const counter = (name: string): number => {
    const m = new RegExp(`^${name}(?:\\{\\})? (\\S+)$`, 'm').exec(body);
    if (!m) throw new Error(`/metrics has no ${name}`);
    return Number(m[1]);
  };
  return {
    csr: counter('citadel_server_csr_count'),
    issued: counter('citadel_server_success_cert_issuance_count'),
    cancelled:
      counter('castellan_csr_cancelled_total') + counter('castellan_csr_queue_abandoned_total'),
  };
}

/**
 * The counters once every call the server has received is answered: a call counts in `csr`
 * when its handler starts and in `issued` only when it ends, so right after the load stops a
 * few may still be signing. Polls until every call is issued or cancelled or have not moved for 500 ms
 * (bounded to 15 s); a gap that remains is a refused call, for the caller to report.
 */
export async function settledCounters(server: Server): Promise<CaCounters> {
  const end = performance.now() + 15_000;
  let last = await scrapeCounters(server);
  let stableSince = performance.now();
  while (last.csr !== last.issued + last.cancelled && performance.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    const now = await scrapeCounters(server);
    if (now.csr !== last.csr || now.issued !== last.issued || now.cancelled !== last.cancelled) {
      stableSince = performance.now();
    } else if (performance.now() - stableSince >= 500) return now;
    last = now;
  }
  return last;
}

/** A process's children (those of its main thread), from /proc; none if it is gone. */
export function childPids(pid: number): number[] {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return children ? children.split(/\s+/).map(Number) : [];
  } catch {
    return [];
  }
}

/** The server's processes: the one spawned and, with --workers, its worker children. */
export function serverPids(pid: number): number[] {
  return [pid, ...childPids(pid)];
}

/** CPU seconds used so far by every process of the server. */
export function serverCpuSeconds(pid: number): number {
  return serverPids(pid).reduce((sum, p) => sum + cpuSecondsOf(p), 0);
}

/** The largest resident set among the server's processes (the target is per process). */
export function serverRssMb(pid: number): number {
  return Math.max(...serverPids(pid).map(rssOf));
}

/** How often peakRssDuring reads the resident set. */
const RSS_SAMPLE_MS = 250;

/**
 * `work`'s result, and the largest serverRssMb (or `readRssMb`) seen while it ran (read every
 * 250 ms, and once at its end). A reading taken only after the load misses the peak: under load a server's
 * garbage, and the native memory it still holds, waits for the next full collection (measured
 * on Castellan: 155 MB with a full collection forced every second, 230–270 MB without; a
 * reading after the run gave 169–187 MB).
 */
export async function peakRssDuring<T>(
  pid: number,
  work: Promise<T>,
  readRssMb: (pid: number) => number = serverRssMb,
): Promise<{ value: T; peakRssMb: number }> {
  let peakRssMb = 0;
  const sample = (): void => {
    try {
      peakRssMb = Math.max(peakRssMb, readRssMb(pid));
    } catch {
      // The process is gone (the run fails on its own).
    }
  };
  const timer = setInterval(sample, RSS_SAMPLE_MS);
  try {
    const value = await work;
    sample();
    return { value, peakRssMb };
  } finally {
    clearInterval(timer);
  }
}

/**
 * CPU seconds so far of every thread of the server's processes, by `pid/tid`: threadCpuSplit
 * turns two of these into the CPU of the event loops, the crypto threads and the rest.
 */
export function serverThreadCpuSeconds(pid: number): Map<string, number> {
  const seconds = new Map<string, number>();
  for (const p of serverPids(pid)) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // gone
    }
    for (const tid of tids) {
      try {
        seconds.set(`${p}/${tid}`, cpuSecondsOf(p, `/proc/${p}/task/${tid}/stat`));
      } catch {
        // a thread that ended between listing and reading
      }
    }
  }
  return seconds;
}

/**
 * The CPU between two serverThreadCpuSeconds readings, split by thread: each process's main
 * thread (its event loop), each process's busiest other thread (the crypto thread: node names
 * its threads alike, and for a P-256 CA no other thread comes close; an RSA CA's signatures run
 * on libuv's pool, in `other`), and everything else (libuv's pool, V8's GC helpers). A thread
 * that ended during the run is left out.
 */
export function threadCpuSplit(
  before: Map<string, number>,
  after: Map<string, number>,
): { loop: number; crypto: number; other: number } {
  const perProcess = new Map<string, { main: number; others: number[] }>();
  for (const [key, end] of after) {
    const used = end - (before.get(key) ?? 0);
    const [pid, tid] = key.split('/') as [string, string];
    const entry = perProcess.get(pid) ?? { main: 0, others: [] };
    if (pid === tid) entry.main += used;
    else entry.others.push(used);
    perProcess.set(pid, entry);
  }
  let loop = 0;
  let crypto = 0;
  let other = 0;
  for (const { main, others } of perProcess.values()) {
    const busiest = Math.max(0, ...others);
    loop += main;
    crypto += busiest;
    other += others.reduce((a, b) => a + b, 0) - busiest;
  }
  return { loop, crypto, other };
}

/** CPU seconds (user + system) the process has used so far, from /proc/<pid>/stat. */
function cpuSecondsOf(pid: number, path = `/proc/${pid}/stat`): number {
  // Fields after the command name (which may hold spaces, hence the last ')'): utime is the
  // 12th and stime the 13th of them, in clock ticks (100 per second on Linux).
  const stat = readFileSync(path, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssOf(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return 0; // gone between listing and reading
  }
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) / 1024 : 0;
}
