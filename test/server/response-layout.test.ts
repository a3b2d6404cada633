// The CreateCertificate response layout istiod sends (security/pkg/server/ca/server.go,
// CreateCertificate): the leaf, each certificate of the chain one per element, then every root
// as ONE last element. ztunnel (src/tls/certificate.rs, WorkloadCertificate::new) and pilot-agent
// take that last element as their whole trust bundle, so with two roots in root-cert.pem it must
// hold both. Checked with the real `castellan serve --cacerts-dir` and `castellan request`, and
// with openssl. Needs a build (dist/).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataFile, runCli, startServe, type ServeProcess } from '../agent/support/serve-process.js';
import { sample } from '../kube/helpers.js';
import { opensslVerify } from '../support/openssl.js';
import { caClient, createCertificate, opensslCsr } from './support/client.js';

const CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
/** Each certificate of a PEM text, as DER hex: comparable whatever the line breaks. */
const certsOf = (pem: string): string[] =>
  (pem.match(CERT) ?? []).map((p) => new X509Certificate(p).raw.toString('hex'));

// Istio's alt sample set, its root-cert.pem replaced by two roots (Istio's 2018 root and the alt
// root): the trust bundle during a root change. cert-chain-alt.pem ends with the alt root, which
// must not be sent twice (Istio's issue #39001).
const TWO_ROOTS = sample('root-cert-combined.pem');
let dir: string;
let serve: ServeProcess;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'castellan-layout-'));
  const cacerts = join(dir, 'cacerts');
  await mkdir(cacerts);
  await writeFile(join(cacerts, 'ca-cert.pem'), sample('ca-cert-alt.pem'));
  await writeFile(join(cacerts, 'ca-key.pem'), sample('ca-key-alt.pem'));
  await writeFile(join(cacerts, 'cert-chain.pem'), sample('cert-chain-alt.pem'));
  await writeFile(join(cacerts, 'root-cert.pem'), TWO_ROOTS);
  serve = await startServe(join(dir, 'data'), ['--cacerts-dir', cacerts]);
  await writeFile(join(dir, 'token'), await serve.token('shop', 'cart'));
});
after(async () => {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when before() failed
  await serve?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('two roots: the last element holds both, once each, and openssl verifies the leaf against it alone', async () => {
  assert.equal(certsOf(TWO_ROOTS).length, 2, 'the test data has two roots');
  const client = caClient(serve.address, TWO_ROOTS);
  try {
    const chain = await createCertificate(
      client,
      { csr: opensslCsr('ec').csrPem },
      (await serve.token('shop', 'cart')).trim(),
    );
    assert.equal(chain.length, 3, 'leaf, intermediate, roots');
    assert.deepEqual(certsOf(chain[0]!).length, 1);
    assert.deepEqual(certsOf(chain[1]!), certsOf(sample('ca-cert-alt.pem')));
    const roots = chain[2]!;
    assert.deepEqual(
      certsOf(roots).sort(),
      certsOf(TWO_ROOTS).sort(),
      'every root, in one element',
    );
    const everyCert = chain.flatMap(certsOf);
    assert.equal(new Set(everyCert).size, everyCert.length, 'no certificate is sent twice');

    const verified = opensslVerify({ root: roots, untrusted: chain[1]!, leaf: chain[0]! });
    assert.ok(verified.ok, verified.output);
    // Without the bundle's alt root, the same leaf does not verify: the element is what trusts it.
    const other = opensslVerify({
      root: sample('root-cert.pem'),
      untrusted: chain[1]!,
      leaf: chain[0]!,
      strict: false,
    });
    assert.ok(!other.ok, other.output);
  } finally {
    client.close();
  }
});

test('castellan request writes both roots to root-cert.pem and the chain verifies against it', async () => {
  const out = join(dir, 'out');
  const r = await runCli([
    'request',
    '--addr',
    serve.address,
    '--root-cert',
    dataFile(serve, 'root-cert.pem'),
    '--token-file',
    join(dir, 'token'),
    '--out',
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const rootFile = await readFile(join(out, 'root-cert.pem'), 'utf8');
  assert.deepEqual(certsOf(rootFile).sort(), certsOf(TWO_ROOTS).sort());
  const chainFile = await readFile(join(out, 'cert-chain.pem'), 'utf8');
  assert.equal(certsOf(chainFile).length, 4, 'leaf, intermediate, then the two roots');
  const verified = opensslVerify({ root: rootFile, untrusted: chainFile, leaf: chainFile });
  assert.ok(verified.ok, verified.output);
});
