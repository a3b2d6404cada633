// End to end: CreateCertificate over gRPC + TLS + JWT against a spawned `castellan serve`
// (own data dir, ephemeral loopback ports, the dev token issuer), driven by many separate
// @grpc/grpc-js channels as real sidecars make. Also measures start-to-/ready and the server's
// resident memory (/proc/<pid>/status VmRSS).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { istioCaPackageDefinition } from '../src/api/istioca.js';
import { createKeyAndCsr } from '../src/pki/csr-builder.js';
import { cliPath } from '../test/support/paths.js';
import { drive, type BenchCase, type LimitKey, type Measurement } from './types.js';

type CaKeyType = 'ec-p256' | 'rsa-2048' | 'rsa-4096';
const LIMITS: Record<CaKeyType, LimitKey> = {
  'ec-p256': 'ecdsap256',
  'rsa-2048': 'rsa2048',
  'rsa-4096': 'rsa4096',
};
const TARGETS: Record<CaKeyType, (c: number) => string> = {
  'ec-p256': (c) => (c === 64 ? '>= 3500/s, p99 <= 25 ms, rss <= 200 MB' : '-'),
  'rsa-2048': (c) => (c === 64 ? '>= 70% of limit' : '-'),
  'rsa-4096': (c) => (c === 64 ? '>= 90% of limit' : '-'),
};

interface Server {
  child: ChildProcess;
  dataDir: string;
  grpcAddr: string;
  readyMs: number;
  rootPem: string;
  token: string;
  stop(): Promise<void>;
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.setTimeout(1000, () => req.destroy());
  });
}

/** Starts `castellan serve`; resolves once /ready answers 200 (bounded to 30 s). */
async function startServer(keyType: CaKeyType, workersFlag?: string): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), 'castellan-bench-'));
  const t0 = performance.now();
  // CASTELLAN_BENCH_NODE_ARGS: extra node flags for the server, e.g. to profile it:
  // "--cpu-prof --cpu-prof-dir=/tmp/castellan-prof" (the profile is written on SIGTERM exit).
  const nodeArgs = (process.env.CASTELLAN_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // CASTELLAN_BENCH_WORKERS: `--workers` for the server; unset = serve's own default (auto
  // in local mode: one worker process per core), which is what the figures are meant to show.
  const workers = workersFlag ?? process.env.CASTELLAN_BENCH_WORKERS;
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      cliPath,
      'serve',
      '--data-dir',
      dataDir,
      '--grpc-addr',
      '127.0.0.1:0',
      '--monitoring-addr',
      '127.0.0.1:0',
      '--ca-key-type',
      keyType,
      '--log-level',
      'error',
      ...(workers ? ['--workers', workers] : []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString().slice(-4000)));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    let grpcAddr: string | undefined;
    let monitoring: string | undefined;
    while (performance.now() - t0 < 30_000) {
      if (child.exitCode !== null) throw new Error(`castellan serve exited: ${err}`);
      const m = /CA serving on (\S+) \(monitoring ([^;)\s]+)/.exec(out);
      if (m) {
        grpcAddr = m[1];
        monitoring = m[2];
        if ((await httpStatus(`http://${monitoring}/ready`)) === 200) break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const readyMs = performance.now() - t0;
    if (!grpcAddr || !monitoring) throw new Error(`castellan serve did not get ready: ${err}`);
    const token = execFileSync(
      process.execPath,
      [cliPath, 'token', '--namespace', 'bench', '--service-account', 'sa', '--data-dir', dataDir],
      { encoding: 'utf8' },
    ).trim();
    const rootPem = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
    return { child, dataDir, grpcAddr, readyMs, rootPem, token, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The server's processes: the one spawned and, with --workers, its worker children. */
function serverPids(pid: number): number[] {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return [pid, ...(children ? children.split(/\s+/).map(Number) : [])];
  } catch {
    return [pid];
  }
}

/** CPU seconds used so far by every process of the server. */
function serverCpuSeconds(pid: number): number {
  return serverPids(pid).reduce((sum, p) => sum + cpuSecondsOf(p), 0);
}

/** The largest resident set among the server's processes (the target is per process). */
function serverRssMb(pid: number): number {
  return Math.max(...serverPids(pid).map(rssOf));
}

/** CPU seconds (user + system) the process has used so far, from /proc/<pid>/stat. */
function cpuSecondsOf(pid: number): number {
  // Fields after the command name (which may hold spaces, hence the last ')'): utime is the
  // 12th and stime the 13th of them, in clock ticks (100 per second on Linux).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
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

type CreateCertificate = (
  request: { csr: string; validityDuration: number },
  metadata: grpc.Metadata,
  callback: (err: grpc.ServiceError | null, response?: { certChain: string[] }) => void,
) => void;

function clients(server: Server, count: number): { call: CreateCertificate; close: () => void }[] {
  const pkg = grpc.loadPackageDefinition(istioCaPackageDefinition()) as unknown as {
    istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
  };
  const Ctor = pkg.istio.v1.auth.IstioCertificateService;
  return Array.from({ length: count }, () => {
    // A local subchannel pool: each client gets its own TCP + TLS connection, like a sidecar.
    const client = new Ctor(
      server.grpcAddr,
      grpc.credentials.createSsl(Buffer.from(server.rootPem)),
      {
        'grpc.use_local_subchannel_pool': 1,
        // Dial 127.0.0.1 but verify (and send SNI for) "localhost", which the serving certificate
        // also covers: SNI with an IP address is not allowed (RFC 6066) and Node warns about it.
        'grpc.ssl_target_name_override': 'localhost',
        'grpc.default_authority': 'localhost',
      },
    );
    const fn = client['CreateCertificate'] as CreateCertificate;
    return { call: fn.bind(client), close: () => client.close() };
  });
}

let csrPool: Promise<string[]> | undefined;
function csrs(): Promise<string[]> {
  csrPool ??= Promise.all(
    Array.from({ length: 64 }, () =>
      createKeyAndCsr('ec-p256', { sans: ['spiffe://cluster.local/ns/bench/sa/sa'] }).then(
        (k) => k.csrPem,
      ),
    ),
  );
  return csrPool;
}

function e2eCase(keyType: CaKeyType, concurrency: number, workers?: string): BenchCase {
  return {
    name: `e2e grpc+tls+jwt ${keyType} c=${concurrency}${workers ? ` --workers ${workers}` : ''}`,
    limit: LIMITS[keyType],
    target: TARGETS[keyType](concurrency),
    async run(options): Promise<Measurement> {
      const pool = await csrs();
      const server = await startServer(keyType, workers);
      const conns = clients(server, concurrency);
      try {
        const metadata = new grpc.Metadata();
        metadata.set('authorization', `Bearer ${server.token}`);
        const once = (i: number): Promise<void> =>
          new Promise((resolve, reject) => {
            conns[i % conns.length]!.call(
              { csr: pool[i % pool.length]!, validityDuration: 3600 },
              metadata,
              (err, res) =>
                err || !res?.certChain.length ? reject(err ?? new Error('empty')) : resolve(),
            );
          });
        // Warm-up: every connection does its TLS handshake before timing starts.
        await Promise.all(conns.map((_, i) => once(i)));
        const cpu0 = serverCpuSeconds(server.child.pid!);
        const r = await drive(once, concurrency, options);
        const serverCpu = (serverCpuSeconds(server.child.pid!) - cpu0) / r.seconds;
        return {
          certs_per_s: r.count / r.seconds,
          p50_ms: r.p50,
          p99_ms: r.p99,
          rss_mb: serverRssMb(server.child.pid!),
          processes: serverPids(server.child.pid!).length,
          ready_ms: server.readyMs,
          server_cpu: serverCpu,
        };
      } finally {
        for (const c of conns) c.close();
        await server.stop();
      }
    },
  };
}

/**
 * `castellan serve` with the local defaults (fresh data dir: a new P-256 root is made), from
 * spawn to the first 200 on /ready, several times; and the resident memory once ready.
 */
function startCase(): BenchCase {
  return {
    name: 'e2e serve start to /ready (local default, fresh data dir)',
    target: '<= 1000 ms',
    async run(options): Promise<Measurement> {
      const runs = options.quick ? 2 : 5;
      const times: number[] = [];
      let rss = 0;
      let processes = 0;
      for (let i = 0; i < runs; i++) {
        const server = await startServer('ec-p256');
        try {
          times.push(server.readyMs);
          rss = Math.max(rss, serverRssMb(server.child.pid!));
          processes = serverPids(server.child.pid!).length;
        } finally {
          await server.stop();
        }
      }
      times.sort((a, b) => a - b);
      return {
        certs_per_s: 0,
        // For this row, the latencies are start-to-/ready times (median and slowest).
        p50_ms: times[Math.floor(times.length / 2)]!,
        p99_ms: times[times.length - 1]!,
        rss_mb: rss,
        ready_ms: times[Math.floor(times.length / 2)]!,
        processes,
      };
    },
  };
}

export function e2eCases(): BenchCase[] {
  const out: BenchCase[] = [startCase()];
  for (const keyType of ['ec-p256', 'rsa-2048', 'rsa-4096'] as const) {
    for (const c of [1, 16, 64]) out.push(e2eCase(keyType, c));
  }
  // The multi-process figure (one worker per core), beside the local default's single process.
  out.push(e2eCase('ec-p256', 64, 'auto'));
  return out;
}
