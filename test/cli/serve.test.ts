// `castellan serve`, the real command run as a process (its options: serve-options.test.ts).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { createServer, type AddressInfo } from 'node:net';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import { istioSampleCerts } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  opensslUris,
  opensslVerify,
  tmp,
} from '../server/support/client.js';
import { runCli, startServe, waitForReady } from '../server/support/serve-process.js';

const HOUR = 3_600_000;

describe('castellan serve (process)', () => {
  test('unknown flags and bad values are refused before anything starts', async () => {
    const dir = tmp();
    const unknown = await runCli(['serve', '--data-dir', join(dir, 'd'), '--frobnicate'], dir);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /unknown option '--frobnicate'/);
    const bad = await runCli(['serve', '--data-dir', join(dir, 'd'), '--max-ttl', 'forever'], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--max-ttl/);
    assert.ok(!existsSync(join(dir, 'd')), 'nothing was created');
  });

  test('a port in use: a clear error and exit 1, nothing left running', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const dir = tmp();
      const res = await runCli(
        [
          'serve',
          '--data-dir',
          join(dir, 'd'),
          '--grpc-addr',
          `127.0.0.1:${port}`,
          '--monitoring-addr',
          '127.0.0.1:0',
        ],
        dir,
      );
      assert.equal(res.code, 1, res.stderr);
      assert.match(res.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
    } finally {
      blocker.close();
    }
  });

  test('local default: ready, issues, reuses its root on restart, SIGTERM drains and exits 0', async (t) => {
    const dataDir = join(tmp(), 'data');
    const started = Date.now();
    let serve = await startServe(['--data-dir', dataDir]);
    assert.ok(await waitForReady(serve), 'became ready');
    const readyMs = Date.now() - started;
    t.diagnostic(`serve: spawn to /ready in ${readyMs} ms (target 1 s on a quiet machine)`);
    assert.match(serve.startLine, /root-cert\.pem/);
    assert.match(serve.startLine, /castellan token/);
    const rootPem = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
    assert.equal(statSync(join(dataDir, 'ca-key.pem')).mode & 0o777, 0o600);
    const token = await (
      await DevTokenIssuer.open(dataDir)
    ).mintToken({ namespace: 'web', serviceAccount: 'frontend', ttlMs: HOUR });

    const client = caClient(`localhost:${serve.grpcPort}`, rootPem);
    const chain = await createCertificate(client, { csr: opensslCsr('ec').csrPem }, token);
    assert.match(opensslVerify(chain, rootPem), /OK/);
    assert.deepEqual(opensslUris(chain[0]!), ['spiffe://cluster.local/ns/web/sa/frontend']);

    // The real CSR parser behind the real server: defects are INVALID_ARGUMENT.
    for (const csr of [opensslCsr('rsa:1024').csrPem, 'garbage']) {
      const err = (await createCertificate(client, { csr }, token).then(
        () => assert.fail('accepted a bad CSR'),
        (e: unknown) => e,
      )) as ServiceError;
      assert.equal(err.code, status.INVALID_ARGUMENT);
    }

    // Many calls in flight, then SIGTERM: every call completes, the process exits 0.
    const metrics = `http://127.0.0.1:${serve.monitoringPort}/metrics`;
    const received = async (): Promise<number> =>
      Number(/^citadel_server_csr_count (\d+)$/m.exec(await (await fetch(metrics)).text())?.[1]);
    const before = await received();
    const calls = Array.from({ length: 16 }, () =>
      createCertificate(client, { csr: opensslCsr('ec').csrPem }, token),
    );
    await waitFor('the server to receive calls', async () => (await received()) > before);
    serve.child.kill('SIGTERM');
    const results = await Promise.allSettled(calls);
    assert.equal(await serve.exited, 0, serve.stderr());
    const ok = results.filter((r) => r.status === 'fulfilled');
    for (const r of results) {
      if (r.status === 'rejected') assert.equal((r.reason as { code: number }).code, 14);
    }
    assert.ok(ok.length > 0, 'in-flight calls were answered');
    client.close();

    serve = await startServe(['--data-dir', dataDir]);
    try {
      assert.equal(readFileSync(join(dataDir, 'root-cert.pem'), 'utf8'), rootPem, 'root reused');
    } finally {
      serve.child.kill('SIGTERM');
      assert.equal(await serve.exited, 0);
    }
  });

  test('alt Istio sample set plugged in: chains verify against root-cert-alt.pem, root once; folder changes followed', async () => {
    const cacerts = tmp();
    for (const [from, to] of [
      ['ca-cert-alt.pem', 'ca-cert.pem'],
      ['ca-key-alt.pem', 'ca-key.pem'],
      ['cert-chain-alt.pem', 'cert-chain.pem'],
      ['root-cert-alt.pem', 'root-cert.pem'],
    ] as const) {
      copyFileSync(join(istioSampleCerts, from), join(cacerts, to));
    }
    const dataDir = join(tmp(), 'data');
    const serve = await startServe([
      '--data-dir',
      dataDir,
      '--cacerts-dir',
      cacerts,
      // Re-read often: the test waits for each change, not for a 2 s default poll.
      '--cacerts-poll-interval',
      '100ms',
    ]);
    try {
      const altRoot = readFileSync(join(istioSampleCerts, 'root-cert-alt.pem'), 'utf8');
      const published = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
      assert.equal(
        new X509Certificate(published).fingerprint256,
        new X509Certificate(altRoot).fingerprint256,
      );
      const token = await (
        await DevTokenIssuer.open(dataDir)
      ).mintToken({ namespace: 'foo', serviceAccount: 'bar', ttlMs: HOUR });
      const client = caClient(`localhost:${serve.grpcPort}`, altRoot);
      const chain = await createCertificate(client, { csr: opensslCsr('ec').csrPem }, token);
      client.close();
      assert.match(opensslVerify(chain, altRoot), /OK/);
      const rootFp = new X509Certificate(altRoot).fingerprint256;
      const fps = chain.map((p) => new X509Certificate(p).fingerprint256);
      assert.equal(fps.filter((f) => f === rootFp).length, 1, 'the root exactly once');
      assert.equal(fps.at(-1), rootFp, 'root last');
      assert.equal(chain.length, 3);
      assert.deepEqual(opensslUris(chain[0]!), ['spiffe://cluster.local/ns/foo/sa/bar']);

      // A broken update (alt-2: key does not match its certificate) is refused; serving goes on.
      copyFileSync(join(istioSampleCerts, 'ca-cert-alt-2.pem'), join(cacerts, 'ca-cert.pem'));
      copyFileSync(join(istioSampleCerts, 'cert-chain-alt-2.pem'), join(cacerts, 'cert-chain.pem'));
      const metrics = `http://127.0.0.1:${serve.monitoringPort}/metrics`;
      await waitFor('condition', async () =>
        /castellan_ca_load_errors_total\{[^}]*\} [1-9]/.test(await (await fetch(metrics)).text()),
      );
      const still = caClient(`localhost:${serve.grpcPort}`, altRoot);
      assert.match(
        opensslVerify(
          await createCertificate(still, { csr: opensslCsr('ec').csrPem }, token),
          altRoot,
        ),
        /OK/,
      );
      still.close();

      // A good set (Istio's 2018 sample) is swapped in without a restart, serving certificate too.
      for (const f of ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']) {
        copyFileSync(join(istioSampleCerts, f), join(cacerts, f));
      }
      const oldRoot = readFileSync(join(istioSampleCerts, 'root-cert.pem'), 'utf8');
      await waitFor('condition', () =>
        readFileSync(join(dataDir, 'root-cert.pem'), 'utf8').includes(
          oldRoot.trim().split('\n')[1]!,
        ),
      );
      let swapped: string[] = [];
      await waitFor('condition', async () => {
        const c = caClient(`localhost:${serve.grpcPort}`, oldRoot);
        try {
          swapped = await createCertificate(c, { csr: opensslCsr('ec').csrPem }, token);
          return true;
        } catch {
          return false;
        } finally {
          c.close();
        }
      });
      // The 2018 set is not -x509_strict clean (see shared/README.md): plain verify.
      assert.match(opensslVerify(swapped, oldRoot, { strict: false }), /OK/);
    } finally {
      serve.child.kill('SIGTERM');
      assert.equal(await serve.exited, 0);
    }
  });
});
