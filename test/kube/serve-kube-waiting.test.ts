// Kubernetes mode started on a `cacerts` that does not verify: the runtime (in process) holds no
// CA and does not join leader election; the real `castellan serve --kube` waits, not ready, and
// a SIGTERM while it waits ends it cleanly. So does one that cannot reach the API server at all. The whole operator workflow around it, with kubectl:
// test/kube/kubectl.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/clock.js';
import { isCastellanError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import { startKubeRuntime } from '../../src/cli/serve/kube-runtime.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { startServe } from '../server/support/serve-process.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { cliPath } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';
import { putCacerts, sampleCacerts } from './helpers.js';

const NS = 'istio-system';
let api: FakeApiServer;
let dir: string;

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS] });
  dir = mkdtempSync(join(tmpdir(), 'serve-kube-waiting-'));
  putCacerts(api, NS, sampleCacerts('-alt-2')); // its key does not belong to its certificate
});
after(async () => {
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('the runtime starts with no CA, says why, and refuses to lead', async () => {
  const kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));
  const kube = completeServeOptions({ kube: true, kubeconfig }, {}).kube;
  assert.ok(kube);
  const runtime = await startKubeRuntime(kube, {
    ca: {
      selfSignedKeyType: 'ec-p256',
      selfSignedRootTtlMs: 10 * 365 * 86_400_000,
      enableCaCrl: true,
      caKeyUri: undefined,
    },
    trustDomain: () => 'cluster.local',
    authn: { tokenAudiences: ['istio-ca'] },
    clock: systemClock,
    env: {},
    logger: silentLogger,
    identity: 'waiting-replica',
  });
  try {
    assert.equal(runtime.caState.current(), undefined);
    assert.match(runtime.whyNoCa?.() ?? '', /^cacerts does not verify: .*does not belong/);
    await assert.rejects(runtime.publishTrustBundle(), (e) => isCastellanError(e, 'unavailable'));
    assert.equal(runtime.leader.isLeader, false);
    assert.equal(api.listObjects('leases.coordination.k8s.io', NS).length, 0, 'no Lease taken');
    assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined);
  } finally {
    await runtime.close();
  }
});

/** A port that was free a moment ago (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('serve --kube waits with the gRPC port closed; SIGTERM while waiting exits 0', async () => {
  const kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig-serve'));
  const grpcPort = await freePort();
  const s = await startServe(
    [
      '--kube',
      '--kubeconfig',
      kubeconfig,
      '--data-dir',
      join(dir, 'data'),
      // After startServe's own 127.0.0.1:0: the last one given wins.
      '--grpc-addr',
      `127.0.0.1:${grpcPort}`,
    ],
    undefined,
    { acceptWaiting: true },
  );
  const refused = await new Promise<string>((resolve) => {
    const socket = connect(grpcPort, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
  });
  assert.equal(refused, 'ECONNREFUSED', 'nothing listens on the gRPC port');
  assert.match(s.startLine, /^castellan: waiting for a CA, not serving: cacerts does not verify/);
  const r = await fetch(`http://127.0.0.1:${s.monitoringPort}/ready`);
  assert.equal(r.status, 503);
  assert.match(await r.text(), /^not ready: cacerts does not verify: /);
  assert.equal(await s.stop(), 0);
  assert.match(s.stderr(), /"msg":"stopped"/);
});

// Found by a new operator (2026-12-07): with the API server out of reach, `serve --kube` exited 0
// after about a second, printing nothing at the default level — the list's retry runs on a timer
// that does not hold the event loop, and nothing else did yet. In a pod: "Completed", empty logs.
test('serve --kube with no API server to reach: warns, keeps trying, and exits 0 on SIGTERM', async () => {
  const port = await freePort(); // nothing listens there
  const kubeconfig = join(dir, 'kubeconfig-unreachable');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- cluster: {server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true}`,
      '  name: gone',
      'contexts:',
      '- context: {cluster: gone, user: u}',
      '  name: gone',
      'current-context: gone',
      'users:',
      '- name: u',
      '  user: {token: unused}',
      '',
    ].join('\n'),
  );
  const child = spawn(
    process.execPath,
    [
      cliPath,
      'serve',
      '--kube',
      '--kubeconfig',
      kubeconfig,
      '--data-dir',
      join(dir, 'data-unreachable'),
      '--grpc-addr',
      '127.0.0.1:0',
      '--monitoring-addr',
      '127.0.0.1:0',
      '--log-level',
      'debug',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  try {
    const lines = (): { level: number; msg: string; path?: string; error?: string }[] =>
      err
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: number; msg: string });
    // A second failed attempt, a retry after the first: the process stayed up for it.
    await waitFor(
      'a second failed list, with serve still running',
      () =>
        child.exitCode === null &&
        lines().some((l) => l.msg.startsWith('list or watch failed again')),
    );
    const warning = lines().find(
      (l) => l.msg === 'list or watch failed; retrying until it succeeds',
    );
    assert.equal(warning?.level, 40, 'a warning at the default log level');
    assert.equal(warning.path, '/api/v1/namespaces/istio-system/configmaps');
    assert.match(warning.error ?? '', /ECONNREFUSED/);
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0);
  assert.match(err, /"signal":"SIGTERM","msg":"stopped before serving"/);
});
