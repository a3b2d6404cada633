// The real `castellan serve --kube` (spawned, compiled: npx tsc -p tsconfig.json first), several
// replicas at once, against the in-test fake API server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { ROOT_CERT_CONFIGMAP } from '../../src/kube/configmap-publisher.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  opensslUris,
  opensslVerify,
  type CaClient,
} from '../server/support/client.js';
import { scrapeMetrics, type ServeProcess } from '../server/support/serve-process.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { waitFor } from '../support/wait-for.js';
import { putCacerts, sample, sampleCacerts, startKubeServe } from './helpers.js';

const NS = 'istio-system';
const ALT_ROOT = sample('root-cert-alt.pem');

let api: FakeApiServer;
let dir: string;
const procs: ServeProcess[] = [];
let csr: string;

/** Each replica has its own API credentials, so the fake tells their requests apart. */
const USERS = { 'token-a': 'replica-a', 'token-b': 'replica-b', 'token-c': 'replica-c' };

async function serve(user: 'a' | 'b' | 'c', ...extra: string[]): Promise<ServeProcess> {
  const p = await startKubeServe(api, dir, user, '--lease-duration', '2s', ...extra);
  procs.push(p);
  return p;
}

/** A token of service account `app/<serviceAccount>` for the CA's audience. */
const appToken = (serviceAccount: string, extra: { expiresInSeconds?: number } = {}) =>
  api.issuer.issueToken({ namespace: 'app', serviceAccount, audiences: ['istio-ca'], ...extra });

const selfSignedRoot = (): string =>
  Buffer.from(
    (api.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)[
      'root-cert.pem'
    ]!,
    'base64',
  ).toString();

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS, 'app'], users: USERS });
  dir = mkdtempSync(join(tmpdir(), 'serve-kube-'));
  csr = opensslCsr('ec').csrPem;
});
after(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

let a: ServeProcess;
let b: ServeProcess;
let clients: CaClient[];

test('two replicas started at once share exactly one self-signed root', async () => {
  [a, b] = await Promise.all([serve('a', '--jwt-offline'), serve('b', '--jwt-offline')]);
  assert.equal(api.count({ verb: 'create', resource: 'secrets', namespace: NS, code: 201 }), 1);
  const root = selfSignedRoot();
  // Clients trust the current root and the enterprise root the operator is about to plug in.
  clients = [a, b].map((p) => caClient(`127.0.0.1:${p.grpcPort}`, root + ALT_ROOT));
  const token = await appToken('web');
  for (const c of clients) {
    const chain = await createCertificate(c, { csr }, token);
    assert.equal(chain[chain.length - 1], root);
    opensslVerify(chain, root);
    assert.deepEqual(opensslUris(chain[0]!), ['spiffe://cluster.local/ns/app/sa/web']);
  }
});

test('a cacerts update swaps the CA on every replica with zero failed requests under load', async () => {
  const token = await appToken('web');
  let failures = 0;
  let ok = 0;
  let altSeen = 0;
  let running = true;
  const errors: string[] = [];
  const worker = async (c: CaClient): Promise<void> => {
    while (running) {
      try {
        const chain = await createCertificate(c, { csr }, token);
        ok++;
        // The last element holds every root (server.go's layout): the new one beside the old.
        if (chain.at(-1)!.includes(ALT_ROOT)) altSeen++;
      } catch (e) {
        failures++;
        errors.push(String(e));
      }
    }
  };
  const load = [0, 1, 0, 1].map((i) => worker(clients[i]!));
  await waitFor('load to run', () => ok > 20);
  putCacerts(api, NS, sampleCacerts('-alt'));
  await waitFor('certificates from the plugged-in CA', () => altSeen > 40, 20_000);
  running = false;
  await Promise.all(load);
  assert.equal(failures, 0, errors.slice(0, 3).join('\n'));
  for (const c of clients) {
    const chain = await createCertificate(c, { csr }, token);
    assert.match(chain[1]!, /BEGIN CERTIFICATE/);
    opensslVerify(chain, ALT_ROOT); // chains to the enterprise root
    assert.ok(
      chain.at(-1)!.includes(ALT_ROOT) && chain.at(-1)!.includes(selfSignedRoot()),
      'the old root is still sent beside the new, in the one last element',
    );
  }
});

test('a bad cacerts update is refused: serving goes on with the last good CA, Event and metric', async () => {
  putCacerts(api, NS, sampleCacerts('-alt-2')); // its key does not match its certificate
  await waitFor(
    'an Event from each replica',
    () => api.listObjects('events', NS).filter((e) => e.reason === 'CALoadFailed').length >= 2,
  );
  for (const p of [a, b]) {
    await waitFor('the metric', async () =>
      /castellan_ca_load_errors_total\{[^}]*\} [1-9]/.test(await scrapeMetrics(p.monitoringPort)),
    );
  }
  const token = await appToken('web');
  for (const c of clients) {
    const chain = await createCertificate(c, { csr }, token);
    opensslVerify(chain, ALT_ROOT);
    assert.equal(
      chain[1],
      sample('ca-cert-alt.pem').replace(/\n*$/, '\n'),
      'still the last good intermediate',
    );
  }
});

test('--jwt-offline: issuing goes on while the API server is stopped', async () => {
  const token = await appToken('offline');
  await api.stop();
  try {
    for (const c of clients) {
      const chain = await createCertificate(c, { csr }, token);
      assert.deepEqual(opensslUris(chain[0]!), ['spiffe://cluster.local/ns/app/sa/offline']);
    }
  } finally {
    await api.start();
  }
});

test('ConfigMaps in every namespace, repaired; leader failover moves the work', async () => {
  const bundleIn = (ns: string): string | undefined =>
    (
      api.getObject('configmaps', ns, ROOT_CERT_CONFIGMAP)?.data as
        Record<string, string> | undefined
    )?.['root-cert.pem'];
  for (const ns of ['default', NS, 'app', 'kube-system']) {
    await waitFor(`the bundle in ${ns}`, () => bundleIn(ns)?.includes(ALT_ROOT), 10_000);
  }
  assert.equal(bundleIn('kube-public'), undefined);
  // The leader is the replica whose credentials renew the Lease.
  const renewer = (): string | undefined =>
    api.requests
      .filter((r) => r.resource === 'leases' && r.verb === 'update' && r.code === 200)
      .at(-1)?.user;
  const leaderUser = await waitFor('a lease renewal', () => renewer());
  const [leader, follower, followerUser] =
    leaderUser === 'replica-a' ? [a, b, 'replica-b'] : [b, a, 'replica-a'];
  // The leader dies without releasing the Lease.
  leader.child.kill('SIGKILL');
  await leader.exited;
  api.deleteObject('configmaps', 'app', ROOT_CERT_CONFIGMAP);
  api.putObject('configmaps', 'default', {
    metadata: { name: ROOT_CERT_CONFIGMAP },
    data: { 'root-cert.pem': 'edited' },
  });
  // Within the 2 s lease (plus a retry period) the follower leads and repairs both.
  await waitFor('the deletion repaired', () => bundleIn('app')?.includes(ALT_ROOT), 8000);
  await waitFor('the edit repaired', () => bundleIn('default')?.includes(ALT_ROOT), 8000);
  assert.equal(renewer(), followerUser, 'the follower now holds the Lease');
  const repairs = api.requests.filter(
    (r) =>
      r.resource === 'configmaps' &&
      (r.verb === 'create' || r.verb === 'update') &&
      r.namespace === 'app',
  );
  assert.equal(repairs.at(-1)?.user, followerUser);
  api.createNamespace('late');
  await waitFor('a new namespace served', () => bundleIn('late')?.includes(ALT_ROOT), 8000);
  assert.ok(follower.child.exitCode === null, 'the follower is still running');
  clients = [follower === a ? clients[0]! : clients[1]!];
});

test('the TokenReview cache cuts API calls and never accepts an expired token', async () => {
  // A replica started on the broken cacerts left by an earlier test would wait (it never saw
  // the last good set): put the good one back first.
  putCacerts(api, NS, sampleCacerts('-alt'));
  const c = await serve('c'); // no --jwt-offline: every token goes to TokenReview
  const client = caClient(`127.0.0.1:${c.grpcPort}`, selfSignedRoot() + ALT_ROOT);
  const token = await appToken('burst', { expiresInSeconds: 3 });
  api.resetRequests();
  await Promise.all(Array.from({ length: 30 }, () => createCertificate(client, { csr }, token)));
  assert.equal(api.count({ resource: 'tokenreviews' }), 1);
  // The cached review is good for 60 s (--token-review-cache-ttl), the token for 3: once it
  // expires, it is refused, well before the cache entry would have aged out.
  const expMs =
    (
      JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
        exp: number;
      }
    ).exp * 1000;
  const refusedAt = await waitFor(
    'the expired token refused',
    async () => {
      try {
        await createCertificate(client, { csr }, token);
        return false;
      } catch (e) {
        if ((e as { code?: number }).code !== grpcStatus.UNAUTHENTICATED) throw e;
        return Date.now();
      }
    },
    15_000,
  );
  assert.ok(refusedAt >= expMs, `refused ${expMs - refusedAt} ms before the token expired`);
  client.close();
});
