// `castellan serve --workers N`: worker processes sharing the gRPC port, one monitoring port.
// (The flag and the worker count: serve-options.test.ts; the IPC messages: serve-cluster.test.ts.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import { cliPath, istioSampleCerts } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  opensslVerify,
  tmp,
  type CaClient,
} from '../server/support/client.js';
import { startServe, type ServeProcess } from '../server/support/serve-process.js';

const HOUR = 3_600_000;

/** Workers start one by one: give them longer than a single process. */
const until = (check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<boolean> =>
  waitFor('condition', check, timeoutMs);

/** A client on its own TCP + TLS connection (grpc-js would otherwise share one), as sidecars do. */
function ownConnection(port: number, rootPem: string): CaClient {
  return caClient(`localhost:${port}`, rootPem, undefined, { 'grpc.use_local_subchannel_pool': 1 });
}

/** The pids of the primary's live children (its workers), from /proc. */
function workerPids(serve: ServeProcess): number[] {
  const pid = serve.child.pid!;
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(/\s+/).map(Number);
}

interface LogLine {
  msg?: string;
  audit?: string;
  outcome?: string;
  pid?: number;
  maxInflightCsr?: number;
  maxQueuedCsr?: number;
}

/** Pids that wrote a JSON log line on stderr that `match` accepts. */
function loggingPids(stderr: string, match: (line: LogLine) => boolean): Set<number> {
  const pids = new Set<number>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const rec = JSON.parse(line) as LogLine;
    if (match(rec) && typeof rec.pid === 'number') pids.add(rec.pid);
  }
  return pids;
}

/** Pids that wrote "certificate issued" audit lines on stderr. */
const issuingPids = (stderr: string): Set<number> =>
  loggingPids(stderr, (l) => l.audit === 'csr' && l.outcome === 'issued');

function sample(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${name} on /metrics`);
  return Number(m[1]);
}

async function readyStatus(port: number): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => null);
  return r?.status ?? 0;
}

function pidAlive(pid: number): boolean {
  return existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
}

describe('castellan serve --workers 2 (processes)', () => {
  test('a worker that cannot start fails the command (exit 1), nothing left running', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const dir = tmp();
      const child = spawn(
        process.execPath,
        [
          cliPath,
          'serve',
          '--workers',
          '2',
          '--data-dir',
          join(dir, 'd'),
          '--grpc-addr',
          `127.0.0.1:${port}`,
          '--monitoring-addr',
          '127.0.0.1:0',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const seen = new Set<number>();
      const poll = setInterval(() => {
        try {
          const text = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8');
          for (const p of text.trim().split(/\s+/).filter(Boolean)) seen.add(Number(p));
        } catch {
          // exited
        }
      }, 20);
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      clearInterval(poll);
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
      assert.match(stderr, /exited during start-up/);
      for (const pid of seen) assert.ok(!pidAlive(pid), `worker ${pid} exited`);
    } finally {
      blocker.close();
    }
  });

  test('both workers issue, /metrics sums them, each holds its share of the admission bounds, a CA change reaches both, a dead worker is replaced, SIGTERM exits 0', async (t) => {
    const cacerts = tmp();
    // Istio's alt sample set first (it passes -x509_strict), then the default set.
    for (const f of ['ca-cert', 'ca-key', 'cert-chain', 'root-cert']) {
      copyFileSync(join(istioSampleCerts, `${f}-alt.pem`), join(cacerts, `${f}.pem`));
    }
    const dataDir = join(tmp(), 'data');
    const serve = await startServe([
      '--workers',
      '2',
      '--data-dir',
      dataDir,
      '--cacerts-dir',
      cacerts,
      // Re-read often: the test waits for the swap, not for a 2 s default poll.
      '--cacerts-poll-interval',
      '100ms',
      // Split between the two workers, rounded up (admissionPerWorker): 9 + 9 and 17 + 17,
      // room for the 16 calls below even if the OS gives one worker all of them.
      '--max-inflight-csr',
      '17',
      '--max-queued-csr',
      '33',
      '--log-level',
      'info',
    ]);
    const clients: CaClient[] = [];
    try {
      assert.equal(await readyStatus(serve.monitoringPort), 200, 'ready when announced');
      const first = workerPids(serve);
      assert.equal(first.length, 2, 'two workers');
      const token = await (
        await DevTokenIssuer.open(dataDir)
      ).mintToken({ namespace: 'web', serviceAccount: 'frontend', ttlMs: HOUR });
      const csr = opensslCsr('ec').csrPem;
      const rootPem = readFileSync(join(istioSampleCerts, 'root-cert-alt.pem'), 'utf8');
      const issueOnNewConnections = async (n: number, root: string): Promise<string[][]> => {
        const batch = Array.from({ length: n }, () => ownConnection(serve.grpcPort, root));
        clients.push(...batch);
        return Promise.all(batch.map((c) => createCertificate(c, { csr }, token)));
      };

      // 16 connections: the primary hands them to the workers in turn.
      const chains = await issueOnNewConnections(16, rootPem);
      assert.match(opensslVerify(chains[0]!, rootPem), /OK/);
      await until(() => issuingPids(serve.stderr()).size === 2, 5000);
      assert.deepEqual([...issuingPids(serve.stderr())].sort(), [...first].sort());

      // /metrics on the primary: counters summed over both workers (each issued only some),
      // the CA's expiry gauge taken once, not doubled.
      const metrics = await (
        await fetch(`http://127.0.0.1:${serve.monitoringPort}/metrics`)
      ).text();
      assert.equal(sample(metrics, 'citadel_server_success_cert_issuance_count'), 16);
      assert.equal(sample(metrics, 'citadel_server_csr_count'), 16);
      assert.equal(
        sample(metrics, 'castellan_csr_duration_seconds_count\\{outcome="issued"\\}'),
        16,
      );
      // Each worker says its share when it listens; the primary sums the shares.
      const shares = loggingPids(
        serve.stderr(),
        (l) => l.msg === 'CA service listening' && l.maxInflightCsr === 9 && l.maxQueuedCsr === 17,
      );
      assert.deepEqual([...shares].sort(), [...first].sort());
      assert.equal(sample(metrics, 'castellan_csr_inflight_limit'), 18);
      assert.equal(sample(metrics, 'castellan_csr_queue_limit'), 34);
      const rootNotAfter = new X509Certificate(rootPem).validTo;
      assert.equal(
        sample(metrics, 'citadel_server_root_cert_expiry_timestamp'),
        Date.parse(rootNotAfter) / 1000,
      );

      // The plugged-in folder changes: every worker follows (each watches the folder).
      for (const f of ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']) {
        copyFileSync(join(istioSampleCerts, f), join(cacerts, f));
      }
      const altRoot = readFileSync(join(istioSampleCerts, 'root-cert.pem'), 'utf8');
      const before = issuingPids(serve.stderr());
      await until(() => {
        const swapped = loggingPids(
          serve.stderr(),
          (l) => l.msg === 'plugged-in CA changed: swapped',
        );
        return first.every((pid) => swapped.has(pid));
      });
      const altChains = await issueOnNewConnections(8, altRoot);
      // (The default sample set predates -x509_strict's checks: plain verification.)
      for (const chain of altChains) {
        assert.match(opensslVerify(chain, altRoot, { strict: false }), /OK/);
      }
      assert.equal(before.size, 2);

      // A worker killed outright: logged, replaced, and /ready comes back.
      const victim = first[0]!;
      process.kill(victim, 'SIGKILL');
      await until(() => /worker died; starting a replacement/.test(serve.stderr()));
      await until(async () => {
        const now = workerPids(serve);
        return (
          now.length === 2 &&
          !now.includes(victim) &&
          (await readyStatus(serve.monitoringPort)) === 200
        );
      });
      const replaced = workerPids(serve);
      const again = await issueOnNewConnections(8, altRoot);
      assert.equal(again.length, 8);
      t.diagnostic(`workers ${first.join(',')} -> ${replaced.join(',')}`);

      for (const c of clients) c.close();
      serve.child.kill('SIGTERM');
      assert.equal(await serve.exited, 0, serve.stderr());
      for (const pid of replaced) assert.ok(!pidAlive(pid), `worker ${pid} exited`);
    } finally {
      for (const c of clients) c.close();
      if (serve.child.exitCode === null) {
        serve.child.kill('SIGKILL');
        await serve.exited;
      }
    }
  });
});
