// Interop: a CreateCertificate client we did not write — Debian's python3-grpcio, with messages
// compiled at test time from protos/istioca.proto by grpc_tools.protoc — against `castellan serve`,
// in local mode and, asked as ztunnel asks (a google.protobuf.Struct built by python3-protobuf),
// in Kubernetes mode against the fake API server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { opensslVerify as verifyWith } from '../support/openssl.js';
import { projectRoot } from '../support/paths.js';
import { opensslUris, opensslVerify, tmp } from '../server/support/client.js';
import { startServe, type ServeProcess } from '../server/support/serve-process.js';
import { compileIstioCaStubs, PYTHON } from '../support/python.js';

// Debian's interpreter, never whatever `python3` is first on PATH (scripts/setup-test-deps.sh).
const SCRIPT = join(projectRoot, 'test', 'interop', 'create_certificate.py');
const CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g;

let serve: ServeProcess;
let dataDir: string;
/** istioca_pb2*.py, compiled once by grpc_tools.protoc. */
let gen: string;

before(async () => {
  dataDir = join(tmp(), 'data');
  gen = join(tmp(), 'gen');
  compileIstioCaStubs(gen);
  serve = await startServe(['--data-dir', dataDir]);
});
after(async () => {
  serve.child.kill('SIGTERM');
  await serve.exited;
});

/**
 * Runs the Python client; resolves with its exit code and output, and the folder it wrote.
 * Asynchronously: the fake API server it reaches through serve answers from this process.
 */
function python(
  target: string,
  rootFile: string,
  token: string,
  extra: string[] = [],
): Promise<{ status: number | null; stdout: string; stderr: string; work: string }> {
  const work = tmp();
  writeFileSync(join(work, 'token'), token);
  return new Promise((resolve) => {
    execFile(
      PYTHON,
      [SCRIPT, gen, target, rootFile, join(work, 'token'), work, ...extra],
      { encoding: 'utf8', timeout: 60_000 },
      (err, stdout, stderr) => {
        const status = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ status, stdout, stderr, work });
      },
    );
  });
}

test('python3-grpcio gets a certificate for the caller, whatever SAN its CSR asked for', async () => {
  const token = await (
    await DevTokenIssuer.open(dataDir)
  ).mintToken({ namespace: 'payments', serviceAccount: 'ledger', ttlMs: 3_600_000 });
  const root = join(dataDir, 'root-cert.pem');
  const r = await python(`localhost:${serve.grpcPort}`, root, token);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+ certificates/m);
  const pem = readFileSync(join(r.work, 'cert-chain.pem'), 'utf8');
  const certs = pem.match(CERT) ?? [];
  assert.ok(certs.length >= 2, 'leaf and root');
  const rootPem = readFileSync(root, 'utf8');
  assert.match(opensslVerify(certs, rootPem), /OK/);
  assert.deepEqual(opensslUris(certs[0]!), ['spiffe://cluster.local/ns/payments/sa/ledger']);
  assert.doesNotMatch(
    execFileSync('openssl', ['x509', '-text', '-noout'], { input: certs[0], encoding: 'utf8' }),
    /bogus/,
  );
});

test("ztunnel's request from python3-grpcio (Struct metadata ImpersonatedIdentity, clusterid): the SAN is the workload's", async () => {
  const NS = 'istio-system';
  const api = await FakeApiServer.start({ namespaces: [NS, 'app'] });
  let kube: ServeProcess | undefined;
  try {
    const pod = (ns: string, name: string, sa: string, node: string) =>
      api.putObject('pods', ns, {
        metadata: { name },
        spec: { serviceAccountName: sa, nodeName: node, containers: [{ name: 'c', image: 'i' }] },
        status: { phase: 'Running' },
      });
    const ztunnel = pod(NS, 'ztunnel-n1', 'ztunnel', 'n1');
    pod('app', 'reviews-v1', 'reviews', 'n1');
    pod('app', 'ratings-v1', 'ratings', 'n2');
    const work = tmp();
    kube = await startServe([
      '--kube',
      '--kubeconfig',
      api.writeKubeconfig(join(work, 'kubeconfig')),
      '--data-dir',
      join(work, 'data'),
      '--trusted-node-account',
      `${NS}/ztunnel`,
    ]);
    const rootFile = join(work, 'root-cert.pem');
    writeFileSync(
      rootFile,
      Buffer.from(
        (api.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)[
          'root-cert.pem'
        ]!,
        'base64',
      ),
    );
    const token = await api.issuer.issueToken({
      namespace: NS,
      serviceAccount: 'ztunnel',
      audiences: ['istio-ca'],
      pod: { name: 'ztunnel-n1', uid: ztunnel.metadata.uid as string },
    });
    const target = `localhost:${kube.grpcPort}`;
    const asZtunnel = (id: string) =>
      python(target, rootFile, token, ['--impersonate', id, '--clusterid', 'Kubernetes']);

    const ok = await asZtunnel('spiffe://cluster.local/ns/app/sa/reviews');
    assert.equal(ok.status, 0, ok.stderr);
    const leaf = readFileSync(join(ok.work, 'element-0.pem'), 'utf8');
    const text = execFileSync('openssl', ['x509', '-text', '-noout'], {
      input: leaf,
      encoding: 'utf8',
    });
    // The one SAN, as ztunnel checks it (caclient.rs: the certificate's identity == requested).
    assert.match(
      text,
      /X509v3 Subject Alternative Name: critical\n\s+URI:spiffe:\/\/cluster\.local\/ns\/app\/sa\/reviews\n/,
    );
    assert.doesNotMatch(text, /ztunnel|bogus/);
    // The last element is the trust bundle (server.go's layout): it alone verifies the leaf.
    const elements = ok.stdout.match(/^(\d+) certificates/m)![1]!;
    const last = readFileSync(join(ok.work, `element-${Number(elements) - 1}.pem`), 'utf8');
    const verified = verifyWith({ root: last, leaf });
    assert.ok(verified.ok, verified.output);

    // A workload with no pod on ztunnel's node: istiod's opaque refusal, no certificate.
    const refused = await asZtunnel('spiffe://cluster.local/ns/app/sa/ratings');
    assert.equal(refused.status, 3);
    assert.match(
      refused.stderr,
      /rpc failed: StatusCode\.UNAUTHENTICATED request impersonation authentication failure/,
    );
  } finally {
    await kube?.stop();
    await api.stop();
  }
});
