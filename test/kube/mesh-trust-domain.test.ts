// One trust domain (src/cli/serve/mesh-holder.ts): in Kubernetes mode the mesh config is
// ConfigMap `istio`'s `mesh` key, followed live, and its trustDomain is the one value issuance,
// client-certificate renewals and policies use; `--trust-domain` is only the fallback. The whole
// serve composition (ServeApp) runs in process against the fake API server; certificates are
// requested over gRPC + TLS with a CSR made by openssl, and read back with openssl.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { ServeApp } from '../../src/cli/serve/app.js';
import type { ServeFlags } from '../../src/cli/serve/flags.js';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import { systemClock } from '../../src/clock.js';
import { isCastellanError } from '../../src/errors.js';
import { MESH_CONFIGMAP, MESH_CONFIGMAP_KEY } from '../../src/kube/mesh-config-watch.js';
import { ROOT_CERT_CONFIGMAP } from '../../src/kube/configmap-publisher.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  opensslUris,
  policyBundleClient,
  type BundleUpdate,
  clientTls,
} from '../server/support/client.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { opensslText } from '../support/openssl.js';
import { waitFor } from '../support/wait-for.js';
import { capturingLogger } from './helpers.js';

const NS = 'istio-system';
let api: FakeApiServer;
let dir: string;

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS, 'app'] });
  dir = mkdtempSync(join(tmpdir(), 'mesh-trust-domain-'));
  api.putObject('pods', 'app', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: 'app', name: 'web-1', labels: { app: 'web' } },
    spec: { serviceAccountName: 'web', containers: [{ name: 'c', image: 'x' }] },
  });
});
after(async () => {
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

function putMesh(mesh: string): void {
  api.putObject('configmaps', NS, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: MESH_CONFIGMAP, namespace: NS },
    data: { [MESH_CONFIGMAP_KEY]: mesh },
  });
}

async function startApp(
  flags: ServeFlags = {},
): Promise<{ app: ServeApp; grpc: string; lines: ReturnType<typeof capturingLogger>['lines'] }> {
  const { logger, lines } = capturingLogger();
  const options = completeServeOptions(
    {
      kube: true,
      kubeconfig: api.writeKubeconfig(join(dir, 'kubeconfig')),
      dataDir: mkdtempSync(join(dir, 'data-')),
      grpcAddr: '127.0.0.1:0',
      monitoringAddr: '127.0.0.1:0',
      trustDomain: 'flag.example',
      csrThreads: '0',
      ...flags,
    },
    {},
  );
  const app = await ServeApp.create(options, { clock: systemClock, env: {}, logger });
  const summary = await app.start();
  assert.ok(summary, 'serve started with a CA');
  return { app, grpc: `127.0.0.1:${summary.grpc.port}`, lines };
}

const rootPem = (): string =>
  Buffer.from(
    (api.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)[
      'root-cert.pem'
    ]!,
    'base64',
  ).toString();

const webToken = (): Promise<string> =>
  api.issuer.issueToken({ namespace: 'app', serviceAccount: 'web', audiences: ['istio-ca'] });

/** A certificate for app/web by token: its chain (leaf first, roots last) and key. */
async function issueByToken(grpc: string): Promise<{ chain: string[]; keyPem: string }> {
  const client = caClient(grpc, rootPem());
  try {
    const { keyPem, csrPem } = opensslCsr('ec');
    return { chain: await createCertificate(client, { csr: csrPem }, await webToken()), keyPem };
  } finally {
    client.close();
  }
}

/** A renewal presenting `held` as the TLS client certificate, and no token. */
async function renew(grpc: string, held: { chain: string[]; keyPem: string }): Promise<string[]> {
  const client = caClient(
    grpc,
    rootPem(),
    { keyPem: held.keyPem, chainPem: held.chain.slice(0, -1).join('') },
    { 'grpc.use_local_subchannel_pool': 1 },
  );
  try {
    return await createCertificate(client, { csr: opensslCsr('ec').csrPem });
  } finally {
    client.close();
  }
}

const spiffe = (td: string): string => `spiffe://${td}/ns/app/sa/web`;

test('the mesh config trust domain signs, renews and feeds policies, and is followed live', async () => {
  putMesh('trustDomain: old.example\n');
  const { app, grpc, lines } = await startApp();
  try {
    // The first replica's self-signed root is named after the mesh's trust domain, not the flag.
    assert.match(opensslText(rootPem()), /Subject: O\s*=\s*old\.example/);
    const old = await issueByToken(grpc);
    assert.deepEqual(opensslUris(old.chain[0]!), [spiffe('old.example')]);

    // Policies see the same trust domain: the pod's bundle, over the CA port.
    const bundles = policyBundleClient(
      grpc,
      clientTls(grpc, rootPem(), { keyPem: old.keyPem, chainPem: old.chain.slice(0, -1).join('') }),
    );
    const updates: BundleUpdate[] = [];
    const stream = bundles.Watch({ namespace: 'app', pod: 'web-1' });
    stream.on('data', (u: BundleUpdate) => updates.push(u));
    stream.on('error', () => undefined);
    const trustDomainOf = (u: BundleUpdate | undefined): unknown =>
      u && (JSON.parse(u.bundleJson) as { mesh?: { trustDomain?: string } }).mesh?.trustDomain;
    await waitFor('the first bundle', () => updates.length > 0);
    assert.equal(trustDomainOf(updates.at(-1)), 'old.example', updates[0]!.bundleJson);

    // Live: a new trust domain with the old one as an alias, and a MeshConfig field only
    // policies read (the one ConfigMap watch feeds the compiler too).
    putMesh(
      'trustDomain: new.example\ntrustDomainAliases: [old.example]\npathNormalization: {normalization: MERGE_SLASHES}\n',
    );
    await waitFor('the bundle in the new trust domain', () =>
      trustDomainOf(updates.at(-1)) === 'new.example' ? true : undefined,
    );
    assert.equal(
      (JSON.parse(updates.at(-1)!.bundleJson) as { mesh?: { pathNormalization?: string } }).mesh
        ?.pathNormalization,
      'MERGE_SLASHES',
    );
    const change = lines.find((l) => l.msg.startsWith('trust domain changed'));
    assert.deepEqual(
      { from: change?.['from'], to: change?.['to'] },
      { from: 'old.example', to: 'new.example' },
    );
    stream.cancel();
    bundles.close();
    assert.deepEqual(opensslUris((await issueByToken(grpc)).chain[0]!), [spiffe('new.example')]);
    // A certificate of the alias renews, and the renewal is in the current trust domain.
    const renewed = await renew(grpc, old);
    assert.deepEqual(opensslUris(renewed[0]!), [spiffe('new.example')]);

    // Without the alias, the old certificate no longer renews.
    putMesh('trustDomain: new.example\n');
    await waitFor('the alias dropped', async () => {
      try {
        await renew(grpc, old);
        return undefined;
      } catch (e) {
        return (e as ServiceError).code === status.UNAUTHENTICATED ? true : undefined;
      }
    });

    // A mesh config that does not parse is refused: the last good one stays.
    putMesh('trustDomain: Not A Domain\n');
    await waitFor('the refusal logged', () =>
      lines.find((l) => l.msg === 'mesh config refused; keeping the last good one'),
    );
    const refused = lines.find((l) => l.msg === 'mesh config refused; keeping the last good one');
    assert.match(
      String(refused?.['error']),
      /^configmap istio-system\/istio key mesh: trustDomain: invalid trust domain "Not A Domain"/,
    );
    assert.deepEqual(opensslUris((await issueByToken(grpc)).chain[0]!), [spiffe('new.example')]);

    // No mesh config at all: the flag's trust domain.
    api.deleteObject('configmaps', NS, MESH_CONFIGMAP);
    await waitFor('back to --trust-domain', async () =>
      opensslUris((await issueByToken(grpc)).chain[0]!)[0] === spiffe('flag.example')
        ? true
        : undefined,
    );
  } finally {
    await app.stop();
  }
});

test('a mesh config that does not parse at start stops the start, naming the ConfigMap', async () => {
  putMesh('trustDomain: [not, a, string]\n');
  await assert.rejects(
    startApp(),
    (e) =>
      isCastellanError(e, 'invalid-argument') &&
      e.message === 'configmap istio-system/istio key mesh.trustDomain: must be a string',
  );
  api.deleteObject('configmaps', NS, MESH_CONFIGMAP);
});

test('--mesh-config FILE wins over the ConfigMap, as istiod mesh file does: trust domain and discovery selectors (pkg/kube/namespace/filter.go reads them from the same mesh watcher)', async () => {
  putMesh('trustDomain: from-configmap.example\n');
  api.createNamespace('picked', { mesh: 'on' });
  api.createNamespace('skipped', { mesh: 'off' });
  const file = join(dir, 'mesh.yaml');
  writeFileSync(
    file,
    'trustDomain: from-file.example\ndiscoverySelectors:\n  - matchLabels: {mesh: "on"}\n',
  );
  const { app, grpc } = await startApp({ meshConfig: file });
  try {
    assert.deepEqual(opensslUris((await issueByToken(grpc)).chain[0]!), [
      spiffe('from-file.example'),
    ]);
    // The root goes where the file's selectors say; the ConfigMap names none (every namespace).
    // Both namespaces are new to this test (the one before published to the others).
    const rootIn = (ns: string): unknown => api.getObject('configmaps', ns, ROOT_CERT_CONFIGMAP);
    await waitFor('the root ConfigMap in the selected namespace', () => rootIn('picked'));
    assert.equal(rootIn('skipped'), undefined, 'not selected by the file');
  } finally {
    await app.stop();
    api.deleteObject('configmaps', NS, MESH_CONFIGMAP);
  }
});
