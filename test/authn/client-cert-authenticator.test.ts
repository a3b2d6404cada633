import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as peculiar from '@peculiar/x509';
import {
  ClientCertAuthenticator,
  type TrustedRoot,
} from '../../src/authn/client-cert-authenticator.js';
import { ManualClock } from '../support/manual-clock.js';
import { isCastellanError } from '../../src/errors.js';
import { opensslSelfSigned, opensslSigned } from '../support/openssl-certs.js';
import { istioSampleCerts } from '../support/paths.js';
import { authRequest, certificateDers, sampleCertDers } from './fixtures.js';
import { formatSerial, verifyCaCrl, type CaCrl } from '../../src/pki/crl.js';
import { crlOf, makeCacerts, makeLeaf } from '../support/ca-hierarchy.js';

const sample = (name: string): string => join(istioSampleCerts, name);

const fooChain = sampleCertDers('workload-foo-cert.pem'); // leaf + 2018 intermediate
const barChain = sampleCertDers('workload-bar-cert.pem');
const root2018 = sampleCertDers('root-cert.pem');
const rootAlt = sampleCertDers('root-cert-alt.pem');
const clock = new ManualClock(Date.UTC(2026, 0, 1));

function authn(
  roots: () => readonly TrustedRoot[],
  trustDomain = 'trust-domain-foo',
  c = clock,
): ClientCertAuthenticator {
  return new ClientCertAuthenticator({ trustDomain, roots, clock: c });
}

async function refused(
  a: ClientCertAuthenticator,
  chain: Uint8Array[],
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(a.authenticate(authRequest({}, chain)), (e: unknown) => {
    assert.ok(isCastellanError(e, 'unauthenticated'), String(e));
    assert.match(e.message, pattern);
    return true;
  });
}

test('no peer certificate: null', async () => {
  assert.equal(await authn(() => root2018).authenticate(authRequest()), null);
});

test("Istio's sample workload leaf authenticates under the 2018 root", async () => {
  const caller = await authn(() => root2018).authenticate(authRequest({}, fooChain));
  assert.deepEqual(caller, {
    authenticator: 'client-certificate',
    namespace: 'foo',
    serviceAccount: 'foo',
    subject: 'spiffe://trust-domain-foo/ns/foo/sa/foo',
  });
  // A client that also sends the root: accepted, the root being one of ours.
  const withRoot = [...fooChain, ...root2018];
  assert.equal(
    (await authn(() => root2018).authenticate(authRequest({}, withRoot)))?.namespace,
    'foo',
  );
  // The leaf-only sample file, with its intermediate sent after it.
  const leafOnly = [
    ...sampleCertDers('leaf-workload-foo-cert.pem'),
    ...sampleCertDers('ca-cert.pem'),
  ];
  assert.equal(
    (await authn(() => root2018).authenticate(authRequest({}, leafOnly)))?.serviceAccount,
    'foo',
  );
});

test('roots may be node certificates, DER bytes or @peculiar/x509 certificates', async () => {
  const pem = readFileSync(sample('root-cert.pem'), 'utf8');
  for (const root of [new X509Certificate(pem), root2018[0]!, new peculiar.X509Certificate(pem)]) {
    assert.equal(
      (await authn(() => [root]).authenticate(authRequest({}, fooChain)))?.namespace,
      'foo',
    );
  }
});

test('the roots function is asked on every request, so rotation is followed', async () => {
  let roots = rootAlt;
  const a = authn(() => roots);
  await refused(a, fooChain, /does not lead to a trusted root/);
  roots = [...rootAlt, ...root2018];
  assert.ok(await a.authenticate(authRequest({}, fooChain)));
  roots = [];
  await refused(a, fooChain, /no trusted roots loaded/);
});

test('another trust domain is refused', async () => {
  await refused(
    authn(() => root2018),
    barChain,
    /spiffe:\/\/trust-domain-bar\/ns\/bar\/sa\/bar is not in trust domain "trust-domain-foo"/,
  );
  await refused(
    authn(() => root2018, 'cluster.local'),
    fooChain,
    /not in trust domain "cluster.local"/,
  );
});

test('trust domain aliases renew; the trust domain and aliases are asked on every request', async () => {
  // The mesh config's trustDomain and trustDomainAliases, as the composition root holds them
  // (src/cli/serve/mesh-holder.ts): a change reaches the next request.
  let trustDomain = 'trust-domain-bar';
  let aliases: string[] = ['trust-domain-foo'];
  const a = new ClientCertAuthenticator({
    trustDomain: () => trustDomain,
    trustDomainAliases: () => aliases,
    roots: () => root2018,
    clock,
  });
  // Only the namespace and service account go on: the new certificate is issued in the current
  // trust domain by whoever builds its SPIFFE ID.
  assert.deepEqual(await a.authenticate(authRequest({}, fooChain)), {
    authenticator: 'client-certificate',
    namespace: 'foo',
    serviceAccount: 'foo',
    subject: 'spiffe://trust-domain-foo/ns/foo/sa/foo',
  });
  assert.equal((await a.authenticate(authRequest({}, barChain)))?.namespace, 'bar');
  aliases = [];
  await refused(
    a,
    fooChain,
    /^client certificate SPIFFE ID spiffe:\/\/trust-domain-foo\/ns\/foo\/sa\/foo is not in trust domain "trust-domain-bar"$/,
  );
  aliases = ['old.example', 'older.example'];
  await refused(
    a,
    fooChain,
    /is not in trust domain "trust-domain-bar" nor in its aliases \["old.example","older.example"\]$/,
  );
  trustDomain = 'trust-domain-foo';
  assert.equal((await a.authenticate(authRequest({}, fooChain)))?.namespace, 'foo');
});

test('validity is checked on the injected clock', async () => {
  await refused(
    authn(() => root2018, 'trust-domain-foo', new ManualClock(Date.UTC(2033, 5, 1))),
    fooChain,
    /client certificate \[0\] expired at 2033-01-30T18:20:57.000Z/,
  );
  await refused(
    authn(() => root2018, 'trust-domain-foo', new ManualClock(Date.UTC(2020, 0, 1))),
    fooChain,
    /client certificate \[0\] not valid before 2023-02-02/,
  );
});

test('a broken chain is refused with the reason', async () => {
  const [leaf, intermediate] = fooChain as [Uint8Array, Uint8Array];
  await refused(
    authn(() => root2018),
    [leaf],
    /no issuer for/,
  );
  await refused(
    authn(() => root2018),
    [leaf, barChain[0]!],
    /\[1\] did not issue \[0\]/,
  );
  await refused(
    authn(() => root2018),
    [intermediate],
    /is a CA certificate, not a workload leaf/,
  );
  await refused(
    authn(() => root2018),
    [new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01])],
    /\[0\] is not a DER certificate/,
  );
  await refused(
    authn(() => root2018),
    Array.from({ length: 9 }, () => leaf),
    /9 certificates \(at most 8\)/,
  );
});

// Certificates the samples do not cover, made with the openssl CLI.
let dir: string;
let ca: Uint8Array;
const made: Record<string, Uint8Array[]> = {};

/** A P-256 leaf signed by `signer` (in `dir`), with the signer appended unless it is the root. */
function leaf(name: string, extensions: string, signer = 'ca'): Uint8Array[] {
  opensslSigned(dir, name, { subject: '/O=test', signer, extensions, serial: 7 });
  return [
    ...certificateDers(join(dir, `${name}.pem`)),
    ...(signer === 'ca' ? [] : certificateDers(join(dir, `${signer}.pem`))),
  ];
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'castellan-cc-'));
  opensslSelfSigned(dir, 'ca', {
    subject: '/O=test/CN=root',
    extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'],
  });
  ca = certificateDers(join(dir, 'ca.pem'))[0]!;
  const base = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n';
  made['ok'] = leaf(
    'ok',
    `${base}extendedKeyUsage=clientAuth,serverAuth\nsubjectAltName=critical,URI:spiffe://cluster.local/ns/a/sa/b\n`,
  );
  made['two'] = leaf(
    'two',
    `${base}subjectAltName=critical,URI:spiffe://cluster.local/ns/a/sa/b,URI:spiffe://cluster.local/ns/c/sa/d\n`,
  );
  made['none'] = leaf('none', `${base}subjectAltName=DNS:example.com\n`);
  made['serverOnly'] = leaf(
    'serverOnly',
    `${base}extendedKeyUsage=serverAuth\nsubjectAltName=critical,URI:spiffe://cluster.local/ns/a/sa/b\n`,
  );
  made['badPath'] = leaf(
    'badPath',
    `${base}subjectAltName=critical,URI:spiffe://cluster.local/workload/b\n`,
  );
  // An intermediate that is not a CA signing a leaf.
  opensslSigned(dir, 'notca', {
    subject: '/O=test/CN=notca',
    signer: 'ca',
    extensions: 'basicConstraints=critical,CA:FALSE\n',
    serial: 8,
  });
  made['underNotCa'] = leaf(
    'underNotCa',
    `${base}subjectAltName=critical,URI:spiffe://cluster.local/ns/a/sa/b\n`,
    'notca',
  );
});

after(() => rmSync(dir, { recursive: true, force: true }));

test("a leaf signed by an impostor with the intermediate's name is refused by signature", async () => {
  // Same subject and key type (RSA) as Istio's 2018 intermediate, different key.
  opensslSelfSigned(dir, 'impostor', {
    subject: '/C=US/ST=California/L=Sunnyvale/O=Istio/CN=Istio CA',
    keyType: 'rsa-2048',
    extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign'],
  });
  const forged = leaf(
    'forged',
    'basicConstraints=critical,CA:FALSE\nauthorityKeyIdentifier=none\nsubjectAltName=critical,URI:spiffe://trust-domain-foo/ns/kube-system/sa/admin\n',
    'impostor',
  );
  const realIntermediate = fooChain[1]!;
  await refused(
    authn(() => root2018, 'trust-domain-foo', new ManualClock(Date.now())),
    [forged[0]!, realIntermediate],
    /\[0\] signature does not verify with \[1\]'s key/,
  );
  await refused(
    authn(() => root2018, 'trust-domain-foo', new ManualClock(Date.now())),
    forged,
    /does not lead to a trusted root/,
  );
});

test('an openssl-made leaf with one SPIFFE URI under an in-test root authenticates', async () => {
  const caller = await authn(() => [ca], 'cluster.local', new ManualClock(Date.now())).authenticate(
    authRequest({}, made['ok']),
  );
  assert.equal(caller?.subject, 'spiffe://cluster.local/ns/a/sa/b');
});

test('exactly one SPIFFE URI, a Kubernetes-shaped path, client auth usage, CA issuers', async () => {
  const a = authn(() => [ca], 'cluster.local', new ManualClock(Date.now()));
  await refused(a, made['two']!, /2 SPIFFE URI SANs \(exactly one is required\)/);
  await refused(a, made['none']!, /0 SPIFFE URI SANs/);
  await refused(a, made['serverOnly']!, /not for TLS client authentication/);
  await refused(a, made['badPath']!, /client certificate SAN: .*is not a SPIFFE ID of the form/);
  await refused(a, made['underNotCa']!, /\[1\] is not a CA/);
});

test('a certificate revoked by the CRL of the current CA cannot renew; the reason names the serial and the CRL', async () => {
  const { root, ca } = await makeCacerts({ root: 'Revoking Root', ca: 'Revoking CA' });
  const revokedLeaf = await makeLeaf(ca, 'spiffe://cluster.local/ns/app/sa/gone');
  const goodLeaf = await makeLeaf(ca, 'spiffe://cluster.local/ns/app/sa/kept');
  const now = new Date();
  const caCrlPem = await crlOf(ca, {
    entries: [{ serial: revokedLeaf.cert.serialNumber, revocationDate: now }],
  });
  const rootCrlPem = await crlOf(root);
  let current: CaCrl | undefined = verifyCaCrl(
    caCrlPem + rootCrlPem,
    [ca.cert, root.cert],
    clock,
    'secret istio-system/cacerts/ca-crl.pem',
  );
  const a = new ClientCertAuthenticator({
    trustDomain: 'cluster.local',
    roots: () => [root.cert],
    revocations: () => current,
  });
  const chainOf = (leaf: { der: Uint8Array }): Uint8Array[] => [
    leaf.der,
    new Uint8Array(ca.cert.rawData),
  ];
  await refused(
    a,
    chainOf(revokedLeaf),
    new RegExp(
      `client certificate \\[0\\] \\(serial ${formatSerial(revokedLeaf.cert.serialNumber)}\\) is revoked by the CRL of "CN=Revoking CA" \\(secret istio-system/cacerts/ca-crl\\.pem\\)`,
    ),
  );
  assert.equal((await a.authenticate(authRequest({}, chainOf(goodLeaf))))?.serviceAccount, 'kept');

  // The root's CRL revokes the intermediate: every leaf under it is refused.
  current = verifyCaCrl(
    caCrlPem +
      (await crlOf(root, { entries: [{ serial: ca.cert.serialNumber, revocationDate: now }] })),
    [ca.cert, root.cert],
    clock,
    'ca-crl.pem',
  );
  await refused(
    a,
    chainOf(goodLeaf),
    /client certificate \[1\] .* revoked by the CRL of "CN=Revoking Root"/,
  );

  // The CRL is asked on every request: once the CA state has none, the leaf renews again.
  current = undefined;
  assert.equal(
    (await a.authenticate(authRequest({}, chainOf(revokedLeaf))))?.serviceAccount,
    'gone',
  );
});
