// End to end: CreateCertificate over gRPC + TLS + JWT against a spawned `castellan serve` (own
// data dir, ephemeral loopback ports, the dev token issuer; bench/server.ts), with the server's
// start-to-/ready time and resident memory (/proc/<pid>/status VmRSS). Cases, in order:
// - `e2e serve start to /ready`: spawn to the first 200 on /ready, several times;
// - `e2e h2load grpc+tls+jwt <ca> c=<n>[ --workers auto]` (bench/h2load.ts): the primary
//   end-to-end figures, driven by h2load, a C load generator that leaves most of the machine
//   to the server;
// - `e2e grpc-js client grpc+tls+jwt <ca> c=<n>`: driven from this process by @grpc/grpc-js
//   channels, one per simulated sidecar, as a Node client sees the server. That client shares
//   the machine's cores with the server and takes close to one itself (`gen cpu`), so these
//   figures measure the client as much as the server; kept for comparison, at c=64 for each CA
//   key type and c=1 for P-256.
import * as grpc from '@grpc/grpc-js';
import { istioCaPackageDefinition } from '../src/api/istioca.js';
import { createKeyAndCsr } from '../src/pki/csr-builder.js';
import { h2loadCases } from './h2load.js';
import {
  LIMITS,
  TARGETS,
  serverCpuSeconds,
  serverPids,
  serverRssMb,
  startServer,
  type CaKeyType,
  type Server,
} from './server.js';
import { drive, type BenchCase, type Measurement } from './types.js';

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

function grpcJsCase(keyType: CaKeyType, concurrency: number): BenchCase {
  return {
    name: `e2e grpc-js client grpc+tls+jwt ${keyType} c=${concurrency}`,
    limit: LIMITS[keyType],
    target: TARGETS[keyType](concurrency),
    async run(options): Promise<Measurement> {
      const pool = await csrs();
      const server = await startServer(keyType);
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
        // The load generator is this process: its CPU over the run (the grpc-js clients and
        // the bench's own bookkeeping; nothing else runs here meanwhile).
        const ownCpu0 = process.cpuUsage();
        const r = await drive(once, concurrency, options);
        const ownCpu = process.cpuUsage(ownCpu0);
        const serverCpu = (serverCpuSeconds(server.child.pid!) - cpu0) / r.seconds;
        return {
          certs_per_s: r.count / r.seconds,
          p50_ms: r.p50,
          p99_ms: r.p99,
          rss_mb: serverRssMb(server.child.pid!),
          processes: serverPids(server.child.pid!).length,
          ready_ms: server.readyMs,
          server_cpu: serverCpu,
          client_cpu: (ownCpu.user + ownCpu.system) / 1e6 / r.seconds,
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
      // The lower median: with --quick's two starts, the faster (the upper one was the slowest
      // too, and the two columns said the same).
      const median = times[Math.floor((times.length - 1) / 2)]!;
      return {
        certs_per_s: 0,
        // For this row, the latencies are start-to-/ready times (median and slowest).
        p50_ms: median,
        p99_ms: times[times.length - 1]!,
        rss_mb: rss,
        ready_ms: median,
        processes,
      };
    },
  };
}

export function e2eCases(): BenchCase[] {
  return [
    startCase(),
    ...h2loadCases(),
    grpcJsCase('ec-p256', 1),
    grpcJsCase('ec-p256', 64),
    grpcJsCase('rsa-2048', 64),
    grpcJsCase('rsa-4096', 64),
  ];
}
