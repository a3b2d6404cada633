// `castellan serve --csr-threads`: CSRs checked on a worker thread behind the real gRPC service
// give the same answers as on the event loop — certificates that openssl verifies, and
// INVALID_ARGUMENT for defects — and /metrics says how many check threads are up.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import { waitFor } from '../support/wait-for.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  opensslUris,
  opensslVerify,
  tmp,
} from '../server/support/client.js';
import { scrapeMetrics, startServe, type ServeProcess } from '../server/support/serve-process.js';

const HOUR = 3_600_000;
const running: ServeProcess[] = [];
after(async () => {
  for (const s of running) {
    s.child.kill('SIGTERM');
    await s.exited;
  }
});

async function metric(port: number, name: string): Promise<number | undefined> {
  const line = (await scrapeMetrics(port)).split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

for (const threads of [1, 0]) {
  test(`--csr-threads ${threads}: issued and refused as on the event loop`, async () => {
    const dataDir = tmp();
    const serve = await startServe(['--data-dir', dataDir, '--csr-threads', String(threads)]);
    running.push(serve);
    const ready = 'castellan_csr_check_threads_ready';
    // The thread answers once its modules are loaded; before that, checks run inline.
    await waitFor(
      'condition',
      async () => (await metric(serve.monitoringPort, ready)) === threads,
      20_000,
    );

    const rootPem = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
    const token = await (
      await DevTokenIssuer.open(dataDir)
    ).mintToken({ namespace: 'web', serviceAccount: 'frontend', ttlMs: HOUR });
    const client = caClient(`localhost:${serve.grpcPort}`, rootPem);
    try {
      const chains = await Promise.all(
        (['ec', 'rsa:2048', 'ec'] as const).map((k) =>
          createCertificate(client, { csr: opensslCsr(k).csrPem }, token),
        ),
      );
      for (const chain of chains) {
        assert.match(opensslVerify(chain, rootPem), /OK/);
        assert.deepEqual(opensslUris(chain[0]!), ['spiffe://cluster.local/ns/web/sa/frontend']);
      }
      const parseErrors = 'citadel_server_csr_parsing_err_count';
      const before = (await metric(serve.monitoringPort, parseErrors)) ?? 0;
      for (const csr of [opensslCsr('rsa:1024').csrPem, 'garbage']) {
        const err = (await createCertificate(client, { csr }, token).then(
          () => assert.fail('accepted a bad CSR'),
          (e: unknown) => e,
        )) as ServiceError;
        assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
      }
      assert.equal(await metric(serve.monitoringPort, parseErrors), before + 2);
      assert.equal(await metric(serve.monitoringPort, ready), threads, 'still up');
    } finally {
      client.close();
    }
  });
}
