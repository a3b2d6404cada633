// `serve --workers N`: the messages between the primary and its workers are checked on receipt
// (src/cli/serve/cluster-messages.ts), and a worker (src/cli/serve/cluster.ts) runs in-process
// here against a scripted primary: it says it has loaded, serves the options of 'go', reports
// readiness and metrics, and stops when asked; a bad 'go' fails it with a clear error.
// The real processes: serve-workers.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runClusterWorker, type PrimaryChannel } from '../../src/cli/serve/cluster.js';
import {
  parsePrimaryMessage,
  parseWorkerMessage,
  type WorkerMessage,
  type WorkerServeOptions,
} from '../../src/cli/serve/cluster-messages.js';
import type { ServeFlags } from '../../src/cli/serve/flags.js';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import { systemClock } from '../../src/clock.js';
import { isCastellanError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { waitFor } from '../support/wait-for.js';
import { caClient, createCertificate, opensslCsr, tmp } from '../server/support/client.js';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';

/** Options as the primary hands them to a worker: local mode, no monitoring port. */
function workerOptions(dataDir: string, extra: ServeFlags = {}): WorkerServeOptions {
  const options = completeServeOptions({
    dataDir,
    grpcAddr: '127.0.0.1:0',
    csrThreads: '0',
    workers: '2',
    ...extra,
  });
  return {
    ...options,
    kube: undefined,
    server: { ...options.server, monitoringAddress: undefined },
  };
}

/** What crosses the IPC channel: JSON (node:cluster's default serialization). */
const overIpc = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

/** Refused as malformed, with this message. */
function refused(fn: () => unknown, message: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isCastellanError(e, 'malformed'), String(e));
    assert.equal(e.message, message);
    return true;
  });
}

describe('cluster messages', () => {
  test("'go' carries every option over IPC unchanged", () => {
    const options = workerOptions('/data', {
      cacertsDir: '/cacerts',
      jwtIssuer: 'https://issuer',
      jwksFile: 'jwks.json',
      bundleAddr: '127.0.0.1:0',
      servingDns: ['ca.example.com', '10.0.0.1'],
      policyDir: '/policies',
      meshConfig: '/mesh.yaml',
      grpcTransport: 'grpc-js',
    });
    assert.equal(options.server.grpcTransport, 'grpc-js');
    assert.deepEqual(parsePrimaryMessage(overIpc({ castellan: 'go', options })), {
      castellan: 'go',
      options,
    });
    assert.deepEqual(parsePrimaryMessage({ castellan: 'metrics?', id: 7 }), {
      castellan: 'metrics?',
      id: 7,
    });
  });

  test('a message of the wrong shape is refused, naming the first bad field', () => {
    const options = overIpc(workerOptions('/data')) as Record<string, Record<string, unknown>>;
    const go = (change: (o: typeof options) => void): unknown => {
      const copy = structuredClone(options);
      change(copy);
      return { castellan: 'go', options: copy };
    };
    refused(
      () =>
        parsePrimaryMessage(go((o) => (o['server']!['grpcAddress'] = { host: 'h', port: 'x' }))),
      'message from the primary: go.options.server.grpcAddress.port: expected a whole number from 0 to 65535',
    );
    refused(
      () => parsePrimaryMessage(go((o) => delete o['ca']!['trustDomain'])),
      'message from the primary: go.options.ca.trustDomain: expected a string',
    );
    refused(
      () => parsePrimaryMessage(go((o) => (o['ca']!['selfSignedKeyType'] = 'dsa'))),
      'message from the primary: go.options.ca.selfSignedKeyType: expected one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096',
    );
    refused(
      () => parsePrimaryMessage(go((o) => (o['server']!['grpcTransport'] = 'nghttp2'))),
      'message from the primary: go.options.server.grpcTransport: expected one of castellan, grpc-js',
    );
    refused(
      () => parsePrimaryMessage(go((o) => (o['authn']!['tokenAudiences'] = ['a', 1]))),
      'message from the primary: go.options.authn.tokenAudiences[1]: expected a string',
    );
    // A worker never runs Kubernetes mode, and a field the worker does not know means the two
    // sides disagree on the shape: both refused rather than ignored.
    refused(
      () => parsePrimaryMessage(go((o) => (o['kube'] = { namespace: 'x' }))),
      'message from the primary: go.options.kube: expected nothing',
    );
    refused(
      () => parsePrimaryMessage(go((o) => (o['server']!['extra'] = 1))),
      'message from the primary: go.options.server.extra: expected no such field',
    );
    refused(
      () => parsePrimaryMessage({ castellan: 'go' }),
      'message from the primary: go.options: expected an object',
    );
    refused(
      () => parsePrimaryMessage({ castellan: 'metrics?', id: -1 }),
      'message from the primary: metrics?.id: expected a whole number from 0 to 9007199254740991',
    );
    refused(
      () => parsePrimaryMessage({ castellan: 'serve!' }),
      'message from the primary: castellan: expected one of go, metrics?',
    );
  });

  test('worker messages: checked the same way', async () => {
    const registry = new Registry();
    new Counter({ name: 'citadel_server_csr_count', help: 'CSRs.', registers: [registry] });
    const serving = {
      grpc: { host: '127.0.0.1', port: 15012 },
      bundles: { host: '127.0.0.1', port: 15013 },
      trustBundle: '/data/root-cert.pem',
      tokenHint: 'npx castellan token',
    };
    const good: WorkerMessage[] = [
      { castellan: 'loaded' },
      { castellan: 'serving', serving: { ...serving, monitoring: undefined } },
      { castellan: 'readiness', ready: false, reason: 'no CA loaded yet' },
      { castellan: 'metrics', id: 3, metrics: await registry.getMetricsAsJSON() },
    ];
    // (What JSON drops, an absent optional field, comes back as undefined.)
    for (const m of good) assert.deepEqual(overIpc(parseWorkerMessage(overIpc(m))), overIpc(m));
    refused(
      () => parseWorkerMessage({ castellan: 'readiness', ready: 'yes', reason: '' }),
      'message from a worker: readiness.ready: expected true or false',
    );
    refused(
      () => parseWorkerMessage({ castellan: 'serving', serving: { ...serving, grpc: '1.2.3.4' } }),
      'message from a worker: serving.serving.grpc: expected an object',
    );
    refused(
      () => parseWorkerMessage({ castellan: 'metrics', id: 1, metrics: [{ values: [] }] }),
      'message from a worker: metrics.metrics[0]: expected a metric with a name and values',
    );
  });

  test('messages that are not ours (no castellan tag) are left alone', () => {
    for (const m of [undefined, null, 'go', { cmd: 'NODE_CLUSTER' }, { castellan: 1 }]) {
      assert.equal(parsePrimaryMessage(m), undefined);
      assert.equal(parseWorkerMessage(m), undefined);
    }
  });
});

/** The primary's side of a worker's channel, scripted by the test. */
class ScriptedPrimary implements PrimaryChannel {
  readonly received: WorkerMessage[] = [];
  private readonly listeners = new Set<(raw: unknown) => void>();

  send(message: WorkerMessage): void {
    // What the primary would receive, checked as the primary checks it.
    this.received.push(parseWorkerMessage(overIpc(message))!);
  }

  onMessage(listener: (raw: unknown) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The primary sends: as JSON, as node:cluster does. */
  deliver(message: unknown): void {
    for (const l of [...this.listeners]) l(overIpc(message));
  }

  get listening(): number {
    return this.listeners.size;
  }

  has<K extends WorkerMessage['castellan']>(
    kind: K,
  ): Extract<WorkerMessage, { castellan: K }> | undefined {
    return this.received.findLast((m) => m.castellan === kind) as
      Extract<WorkerMessage, { castellan: K }> | undefined;
  }
}

function worker(primary: ScriptedPrimary, stopRequested: Promise<string>): Promise<void> {
  return runClusterWorker({
    clock: systemClock,
    env: {},
    channel: primary,
    stopRequested,
    logger: () => silentLogger,
  });
}

describe('a cluster worker (in-process)', () => {
  test("a bad 'go' fails the worker with the reason; it never serves", async () => {
    const primary = new ScriptedPrimary();
    const running = worker(primary, new Promise(() => {}));
    await waitFor("'loaded'", () => primary.has('loaded'));
    primary.deliver({ castellan: 'go', options: { logLevel: 'info' } });
    await assert.rejects(running, (e: unknown) => {
      assert.ok(isCastellanError(e, 'malformed'), String(e));
      assert.equal(e.message, 'message from the primary: go.options.ca: expected an object');
      return true;
    });
    assert.equal(primary.has('serving'), undefined);
  });

  test('asked to stop before its options came, it ends without serving', async () => {
    const primary = new ScriptedPrimary();
    await worker(primary, Promise.resolve('SIGTERM'));
    assert.deepEqual(
      primary.received.map((m) => m.castellan),
      ['loaded'],
    );
    assert.equal(primary.listening, 0, 'no listener left on the channel');
  });

  test("serves the options of 'go', reports serving, readiness and metrics, stops when asked", async () => {
    const dataDir = join(tmp(), 'data');
    const primary = new ScriptedPrimary();
    let stop: (signal: string) => void = () => {};
    const running = worker(primary, new Promise((resolve) => (stop = resolve)));
    await waitFor("'loaded'", () => primary.has('loaded'));
    // Prepared by the primary before 'go' in a real cluster; here the worker makes it itself.
    primary.deliver({ castellan: 'go', options: workerOptions(dataDir) });
    const { serving } = await waitFor("'serving'", () => primary.has('serving'));
    assert.equal(serving.monitoring, undefined, 'the monitoring port is the primary’s');
    assert.equal(serving.trustBundle, join(dataDir, 'root-cert.pem'));
    assert.match(serving.tokenHint, /--data-dir /);
    assert.deepEqual(primary.has('readiness'), { castellan: 'readiness', ready: true, reason: '' });

    const rootPem = readFileSync(serving.trustBundle, 'utf8');
    const token = await (
      await DevTokenIssuer.open(dataDir)
    ).mintToken({ namespace: 'web', serviceAccount: 'frontend', ttlMs: 3_600_000 });
    const client = caClient(`localhost:${serving.grpc.port}`, rootPem);
    await createCertificate(client, { csr: opensslCsr('ec').csrPem }, token);
    client.close();
    primary.deliver({ castellan: 'metrics?', id: 41 });
    const { metrics } = await waitFor('metrics 41', () => {
      const m = primary.has('metrics');
      return m?.id === 41 ? m : undefined;
    });
    const issued = metrics.find((m) => m.name === 'citadel_server_success_cert_issuance_count');
    assert.equal(issued?.values[0]?.value, 1);
    assert.ok(metrics.some((m) => m.name === 'castellan_ca_load_errors_total'));
    assert.ok(metrics.some((m) => m.name === 'castellan_csr_check_threads_ready'));

    stop('SIGTERM');
    await running;
    assert.equal(primary.listening, 0, 'no listener left on the channel');
  });
});
