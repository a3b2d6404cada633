// The operator's workflow from the README and docs/kubernetes-mode.md: the real
// `castellan serve --kube` against the fake API server, driven with the real `kubectl`
// (Debian's kubernetes-client, installed by scripts/setup-test-deps.sh): a client we did not
// write, which also checks the fake's fidelity (discovery, server-side tables, field selectors,
// Secrets made with --from-file, replace). The documented commands are run as written (bash,
// KUBECONFIG), and the test fails if the docs no longer carry them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { CACERTS_SECRET } from '../../src/kube/cacerts-secret-source.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { normalizeSerial } from '../../src/pki/crl.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  opensslVerify,
} from '../server/support/client.js';
import { startServe, type ServeProcess } from '../server/support/serve-process.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { crlOf, makeCacerts, makeRoot } from '../support/ca-hierarchy.js';
import { makeTempDir } from '../support/openssl.js';
import { projectRoot } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';

const NS = 'istio-system';
const KUBECTL = process.env['KUBECTL'] ?? 'kubectl';
const tmp = makeTempDir();
let api: FakeApiServer;
let kubeconfig: string;
const running: ServeProcess[] = [];

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS, 'app'] });
  kubeconfig = api.writeKubeconfig(join(tmp.dir, 'kubeconfig'));
});
after(async () => {
  for (const s of running) await s.stop();
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

/**
 * Runs one documented command line as written (pipes and quotes included) with bash, kubectl
 * finding the fake through KUBECONFIG, in the folder that holds `cacerts-dir`.
 */
function documented(line: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      // KUBECTL= (another kubectl) applies to the documented lines too.
      [
        '-o',
        'pipefail',
        '-c',
        process.env['KUBECTL'] ? `kubectl() { "$KUBECTL" "$@"; }; ${line}` : line,
      ],
      {
        cwd: tmp.dir,
        encoding: 'utf8',
        env: { ...process.env, HOME: tmp.dir, KUBECONFIG: kubeconfig, PATH: process.env['PATH'] },
        timeout: 60_000,
      },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(error instanceof Error ? error : new Error('exec failed'));
          return;
        }
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      },
    );
  });
}
async function run(line: string): Promise<string> {
  const r = await documented(line);
  assert.equal(r.code, 0, `${line}: ${r.stderr}`);
  return r.stdout;
}

/** The folder the docs call `cacerts-dir`, holding exactly these files. */
function writeCacertsDir(files: ReadonlyMap<string, string>): void {
  const dir = join(tmp.dir, 'cacerts-dir');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  for (const [f, text] of files) writeFileSync(join(dir, f), text);
}

/** The commands docs/kubernetes-mode.md gives the operator, verbatim. */
const DOCS = {
  create: 'kubectl create secret generic cacerts -n istio-system --from-file=cacerts-dir',
  replace:
    'kubectl create secret generic cacerts -n istio-system --from-file=cacerts-dir --dry-run=client -o yaml | kubectl replace -f -',
  root: "kubectl get configmap istio-ca-root-cert -n default -o jsonpath='{.data.root-cert\\.pem}'",
  crl: "kubectl get configmap istio-ca-crl -n default -o jsonpath='{.data.ca-crl\\.pem}'",
  events:
    'kubectl get events -n istio-system --field-selector involvedObject.kind=Secret,involvedObject.name=cacerts',
  describe: 'kubectl describe secret cacerts -n istio-system',
} as const;

test('the docs carry the commands this test runs', () => {
  const guide = readFileSync(join(projectRoot, 'docs', 'kubernetes-mode.md'), 'utf8');
  for (const line of Object.values(DOCS)) assert.ok(guide.includes(line), `docs: ${line}`);
  const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8');
  for (const line of [DOCS.create, DOCS.root, DOCS.crl, DOCS.events]) {
    assert.ok(readme.includes(line), `README: ${line}`);
  }
});

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

test('the operator workflow with castellan serve --kube: a broken cacerts waits, a good one serves and publishes root and CRL, a bad update is refused, the CRL follows', async () => {
  const { root, ca, files } = await makeCacerts({ root: 'Kubectl Root', ca: 'Kubectl CA' });
  const crl = (await crlOf(ca)) + (await crlOf(root));
  const other = await makeCacerts({ root: 'Other Root', ca: 'Other CA' });

  // 1. A set whose key is another CA's, plugged in as documented, before Castellan starts.
  writeCacertsDir(
    new Map([...files, ['ca-key.pem', other.files.get('ca-key.pem')!], ['ca-crl.pem', crl]]),
  );
  assert.match(await run(DOCS.create), /^secret\/cacerts created$/m);
  assert.match(
    await ok('get', 'secret', CACERTS_SECRET, '-n', NS),
    /^cacerts\s+Opaque\s+5\s+\d+s$/m,
  );
  const s = await startServe(
    [
      '--kube',
      '--kubeconfig',
      kubeconfig,
      '--data-dir',
      join(tmp.dir, 'data'),
      '--lease-duration',
      '2s',
    ],
    undefined,
    { acceptWaiting: true },
  );
  running.push(s);
  // It says why it does not serve, on stdout, in its log and on /ready; no root of its own.
  assert.match(
    s.startLine,
    /^castellan: waiting for a CA, not serving: cacerts does not verify: secret istio-system\/cacerts\/ca-key\.pem: .*; \/ready on 127\.0\.0\.1:\d+ answers 503 until then$/,
  );
  assert.match(s.stderr(), /cacerts does not verify: serving nothing until it does/);
  const ready = async (): Promise<{ status: number; body: string }> => {
    const r = await fetch(`http://127.0.0.1:${s.monitoringPort}/ready`);
    return { status: r.status, body: await r.text() };
  };
  const waiting = await ready();
  assert.equal(waiting.status, 503);
  assert.match(
    waiting.body,
    /^not ready: cacerts does not verify: secret istio-system\/cacerts\/ca-key\.pem: /,
  );
  assert.match(
    await (await fetch(`http://127.0.0.1:${s.monitoringPort}/metrics`)).text(),
    /castellan_ca_load_errors_total\{source="secret istio-system\/cacerts"\} 1/,
  );
  const missing = await documented(`kubectl get secret ${SELF_SIGNED_SECRET} -n istio-system`);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /NotFound.*istio-ca-secret/);
  const firstRefusal = await waitFor(
    'the CALoadFailed Event',
    async () => {
      const out = await run(DOCS.events);
      return /CALoadFailed/.test(out) && out;
    },
    10_000,
  );
  assert.match(firstRefusal, /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE$/m);
  assert.match(
    firstRefusal,
    /Warning\s+CALoadFailed\s+secret\/cacerts\s+refused: .*ca-key\.pem.*serving nothing until it is fixed/,
  );
  // (`kubectl describe secret` shows no Events: kubectl's Secret describer never looks them up.)
  assert.doesNotMatch(await run(DOCS.describe), /CALoadFailed/);

  // 2. Fixed in the folder, replaced as documented: served without a restart, root and CRL
  // published in every namespace.
  writeCacertsDir(new Map([...files, ['ca-crl.pem', crl]]));
  assert.match(await run(DOCS.replace), /^secret\/cacerts replaced$/m);
  const startLine = await s.serving;
  const grpcPort = Number(/serving on [^:]+:(\d+)/.exec(startLine)?.[1]);
  await waitFor('/ready 200', async () => (await ready()).status === 200);
  const publishedRoot = await waitFor('istio-ca-root-cert in default', async () => {
    const r = await documented(DOCS.root);
    return r.code === 0 && r.stdout !== '' && r.stdout;
  });
  assert.equal(publishedRoot, root.pem);
  assert.equal(
    await waitFor('istio-ca-crl in default', async () => {
      const r = await documented(DOCS.crl);
      return r.code === 0 && r.stdout !== '' && r.stdout;
    }),
    crl,
    'the plugged-in bytes, as istiod publishes them',
  );
  assert.match(
    await ok('get', 'configmap', 'istio-ca-crl', '-n', 'app'),
    /^istio-ca-crl\s+1\s+\d+s$/m,
  );
  const token = await api.issuer.issueToken({
    namespace: 'app',
    serviceAccount: 'web',
    audiences: ['istio-ca'],
  });
  const { keyPem, csrPem } = opensslCsr('ec');
  const client = caClient(`127.0.0.1:${grpcPort}`, root.pem);
  const chain = await createCertificate(client, { csr: csrPem }, token);
  client.close();
  opensslVerify(chain, root.pem);

  // 3. A bad update while serving (a CRL of a CA outside the chain): refused, with a second
  // Event; still ready, on the same root and CRL.
  const stranger = await makeRoot('Stranger');
  writeCacertsDir(new Map([...files, ['ca-crl.pem', (await crlOf(ca)) + (await crlOf(stranger))]]));
  await run(DOCS.replace);
  const refusals = await waitFor(
    'the second CALoadFailed Event',
    async () => {
      const out = await run(DOCS.events);
      return (out.match(/CALoadFailed/g) ?? []).length >= 2 && out;
    },
    10_000,
  );
  assert.match(
    refusals,
    /Warning\s+CALoadFailed\s+secret\/cacerts\s+refused: .*ca-crl\.pem: CRL \[1\] is issued by "CN=Stranger".*still serving the last good CA of secret istio-system\/cacerts/,
  );
  assert.equal((await ready()).status, 200);
  assert.equal(await run(DOCS.root), root.pem);
  assert.equal(await run(DOCS.crl), crl);

  // 4. Fixed with a CRL that revokes the workload's certificate: published; it cannot renew.
  const serial = normalizeSerial(new X509Certificate(chain[0]!).serialNumber);
  const revoking =
    (await crlOf(ca, { crlNumber: 2, entries: [{ serial, revocationDate: new Date() }] })) +
    (await crlOf(root));
  writeCacertsDir(new Map([...files, ['ca-crl.pem', revoking]]));
  await run(DOCS.replace);
  await waitFor('the new CRL published', async () => (await run(DOCS.crl)) === revoking);
  const renewal = caClient(`127.0.0.1:${grpcPort}`, root.pem, {
    keyPem,
    chainPem: chain.slice(0, -1).join(''),
  });
  await assert.rejects(
    createCertificate(renewal, { csr: opensslCsr('ec').csrPem }),
    (e: { code?: number }) => e.code === grpcStatus.UNAUTHENTICATED,
  );
  renewal.close();

  // 5. ca-crl.pem taken out of the set: istio-ca-crl is removed from every namespace.
  writeCacertsDir(files);
  await run(DOCS.replace);
  const gone = await waitFor('istio-ca-crl removed', async () => {
    const r = await documented(DOCS.crl);
    return r.code !== 0 && r;
  });
  assert.match(gone.stderr, /NotFound.*istio-ca-crl/);
  assert.equal(await run(DOCS.root), root.pem, 'the root stays');
  assert.equal((await ready()).status, 200);
});
