// The operator's commands from the README and docs/kubernetes-mode.md, run with the real
// `kubectl` (Debian's kubernetes-client, installed by scripts/setup-test-deps.sh) against the
// fake API server: a client we did not write, which also checks the fake's fidelity
// (discovery, server-side tables, field selectors, Secrets made with --from-file).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { systemClock } from '../../src/clock.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import { EventRecorder } from '../../src/kube/events.js';
import { CACERTS_SECRET, KubeCaSource } from '../../src/kube/cacerts-secret-source.js';
import { ROOT_CERT_CONFIGMAP, RootPublisher } from '../../src/kube/root-publisher.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { crlOf, makeCacerts, makeRoot } from '../support/ca-hierarchy.js';
import { makeTempDir } from '../support/openssl.js';
import { waitFor } from '../support/wait-for.js';
import { kubeConfigFor } from './helpers.js';

const NS = 'istio-system';
const KUBECTL = process.env['KUBECTL'] ?? 'kubectl';
const tmp = makeTempDir();
let api: FakeApiServer;
let kubeconfig: string;
const stops: (() => Promise<void>)[] = [];

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS, 'app'] });
  kubeconfig = api.writeKubeconfig(join(tmp.dir, 'kubeconfig'));
});
after(async () => {
  for (const stop of stops.reverse()) await stop();
  await api.stop();
  tmp.remove();
});

/**
 * Runs kubectl with the test's kubeconfig, its own discovery cache and HOME. Asynchronously:
 * the fake API server answers from this very process.
 */
function kubectl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      KUBECTL,
      ['--kubeconfig', kubeconfig, '--cache-dir', join(tmp.dir, 'cache'), ...args],
      { encoding: 'utf8', env: { ...process.env, HOME: tmp.dir }, timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(
            new Error(
              `cannot run ${KUBECTL} (${error.message}): run bash scripts/setup-test-deps.sh`,
            ),
          );
          return;
        }
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      },
    );
  });
}
async function ok(...args: string[]): Promise<string> {
  const r = await kubectl(...args);
  assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A cacerts folder: Istio's four files, plus ca-crl.pem when given. */
function cacertsDir(name: string, files: ReadonlyMap<string, string>): string {
  const dir = join(tmp.dir, name);
  mkdirSync(dir);
  for (const [f, text] of files) writeFileSync(join(dir, f), text);
  return dir;
}

test('kubectl is a real client and talks to the fake: version and discovery', async () => {
  const v = await kubectl('version', '--client');
  assert.equal(v.code, 0, v.stderr);
  // Logged so a run says which kubectl checked the fake.
  console.log(`# ${KUBECTL}: ${v.stdout.trim().split('\n')[0]}`);
  const resources = await ok('api-resources', '-o', 'name');
  for (const r of ['secrets', 'configmaps', 'events', 'namespaces', 'leases.coordination.k8s.io']) {
    assert.match(resources, new RegExp(`^${r.replace('.', '\\.')}$`, 'm'));
  }
  assert.match(
    await ok('get', 'namespaces'),
    /^NAME\s+STATUS\s+AGE\n(.*\n)*istio-system\s+Active\s+\d+s$/m,
  );
});

test('the operator workflow: cacerts with ca-crl.pem from a folder, refusals as Events, the root ConfigMap read back', async () => {
  const { root, ca, files } = await makeCacerts({ root: 'Kubectl Root', ca: 'Kubectl CA' });
  const crl = (await crlOf(ca)) + (await crlOf(root));

  // A Secret holding ca-crl.pem only: an incomplete CA, refused (never "nothing plugged in").
  const crlOnly = cacertsDir('crl-only', new Map([['ca-crl.pem', crl]]));
  await ok(
    'create',
    'secret',
    'generic',
    CACERTS_SECRET,
    '-n',
    NS,
    `--from-file=${join(crlOnly, 'ca-crl.pem')}`,
  );

  const kc = kubeConfigFor(api);
  const core = kc.makeApiClient(CoreV1Api);
  const state = new SwappableCaState();
  const refusals: string[] = [];
  const source = new KubeCaSource({
    kubeConfig: kc,
    core,
    namespace: NS,
    trustDomain: 'cluster.local',
    state,
    clock: systemClock,
    events: new EventRecorder(core, systemClock),
    onLoadError: (_where, e) => refusals.push(e.message),
    retryMs: 50,
  });
  stops.push(() => source.stop());
  await source.start();
  assert.match(
    refusals[0] ?? '',
    /missing ca-cert\.pem, ca-key\.pem, cert-chain\.pem, root-cert\.pem/,
  );

  // The README's command: every file of the folder becomes a key of the Secret.
  await ok('delete', 'secret', CACERTS_SECRET, '-n', NS);
  const good = cacertsDir('good', new Map([...files, ['ca-crl.pem', crl]]));
  assert.match(
    await ok('create', 'secret', 'generic', CACERTS_SECRET, '-n', NS, `--from-file=${good}`),
    /^secret\/cacerts created$/m,
  );
  assert.match(
    await ok('get', 'secret', CACERTS_SECRET, '-n', NS),
    /^cacerts\s+Opaque\s+5\s+\d+s$/m,
  );
  const crlB64 = await ok(
    'get',
    'secret',
    CACERTS_SECRET,
    '-n',
    NS,
    '-o',
    'jsonpath={.data.ca-crl\\.pem}',
  );
  assert.equal(Buffer.from(crlB64, 'base64').toString(), crl);
  const loaded = await waitFor(
    'the plugged-in CA with its CRL',
    () => state.current()?.bundle.crl,
    10_000,
  );
  assert.equal(loaded.pem, crl);
  assert.equal(state.current()?.bundle.signingCert.subject, 'CN=Kubectl CA');

  // A CRL signed by another CA: refused with the file and the reason; the last good set stays.
  await ok('delete', 'secret', CACERTS_SECRET, '-n', NS);
  const stranger = await makeRoot('Stranger');
  const bad = cacertsDir(
    'bad',
    new Map([...files, ['ca-crl.pem', (await crlOf(ca)) + (await crlOf(stranger))]]),
  );
  await ok('create', 'secret', 'generic', CACERTS_SECRET, '-n', NS, `--from-file=${bad}`);
  await waitFor('the refusal', () => refusals.length >= 2, 10_000);
  assert.match(refusals[1] ?? '', /cacerts\/ca-crl\.pem: CRL \[1\] is issued by "CN=Stranger"/);
  assert.equal(state.current()?.bundle.crl?.pem, crl);

  // The Events on the Secret, as an operator lists them. (`kubectl describe secret` shows no
  // Events: kubectl's Secret describer never looks them up, in 1.20 as in 1.32.)
  const selector = `involvedObject.kind=Secret,involvedObject.name=${CACERTS_SECRET}`;
  const events = await waitFor(
    'both CALoadFailed events',
    async () => {
      const out = await ok('get', 'events', '-n', NS, '--field-selector', selector);
      return (out.match(/CALoadFailed/g) ?? []).length >= 2 && out;
    },
    10_000,
  );
  assert.match(events, /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE$/m);
  assert.match(
    events,
    /Warning\s+CALoadFailed\s+secret\/cacerts\s+refused: .*missing ca-cert\.pem/,
  );
  assert.match(
    events,
    /Warning\s+CALoadFailed\s+secret\/cacerts\s+refused: .*ca-crl\.pem: CRL \[1\] is issued by "CN=Stranger"/,
  );
  const messages = await ok(
    'get',
    'events',
    '-n',
    NS,
    '--field-selector',
    `${selector},type=Warning`,
    '-o',
    'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}',
  );
  assert.equal(messages.trim().split('\n').length, 2, messages);
  assert.equal((await ok('get', 'events', '-n', 'app', '--field-selector', selector)).trim(), '');
  assert.doesNotMatch(await ok('describe', 'secret', CACERTS_SECRET, '-n', NS), /CALoadFailed/);

  // istio-ca-root-cert in every namespace, read back as docs/kubernetes-mode.md does.
  const publisher = new RootPublisher({
    kubeConfig: kc,
    core,
    rootBundlePem: state.current()?.bundle.rootBundlePem ?? '',
    clock: systemClock,
    retryMs: 50,
  });
  stops.push(() => publisher.stop());
  publisher.start();
  const published = await waitFor(
    'istio-ca-root-cert in namespace app',
    async () => {
      const r = await kubectl(
        'get',
        'configmap',
        ROOT_CERT_CONFIGMAP,
        '-n',
        'app',
        '-o',
        'jsonpath={.data.root-cert\\.pem}',
      );
      return r.code === 0 && r.stdout !== '' && r.stdout;
    },
    10_000,
  );
  // What the CA serves: the plugged-in root, and any root served before it (kept trusted).
  assert.equal(published, state.current()?.bundle.rootBundlePem);
  assert.ok(published.startsWith(root.pem));
  assert.match(
    await ok('get', 'configmap', ROOT_CERT_CONFIGMAP, '-n', 'app'),
    /^istio-ca-root-cert\s+1\s+\d+s$/m,
  );
});
