// `castellan serve --kube` with the plugged-in CA's key in SoftHSM2: the `cacerts` Secret holds
// ca-cert.pem, cert-chain.pem, root-cert.pem and names the key by URI (its ca-key.uri, or
// --ca-key-uri), never ca-key.pem. Against the in-test fake API server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { certificatePem } from '../../src/ca/build-key-cert-bundle.js';
import { generatePkcs11Key } from '../../src/ca/signers/pkcs11-keygen.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { makeRoot, type TestCa } from '../support/ca-hierarchy.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { makeSoftHsm, type SoftHsm } from '../support/softhsm.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  opensslUris,
  opensslVerify,
} from '../server/support/client.js';
import { scrapeMetrics, type ServeProcess } from '../server/support/serve-process.js';
import { waitFor } from '../support/wait-for.js';
import { putCacerts, startKubeServe } from './helpers.js';

const NS = 'istio-system';
const HOUR = 3_600_000;
let api: FakeApiServer;
let hsm: SoftHsm;
let dir: string;
let root: TestCa;
const procs: ServeProcess[] = [];
const intermediates = new Map<string, string>();
const uris = new Map<string, string>();

async function serve(user: string, ...extra: string[]): Promise<ServeProcess> {
  const p = await startKubeServe(api, dir, user, ...extra);
  procs.push(p);
  return p;
}

async function issue(p: ServeProcess): Promise<string[]> {
  const token = await api.issuer.issueToken({
    namespace: 'app',
    serviceAccount: 'web',
    audiences: ['istio-ca'],
  });
  return createCertificate(
    caClient(`127.0.0.1:${p.grpcPort}`, root.pem),
    { csr: opensslCsr('ec').csrPem },
    token,
  );
}

const cacerts = (key: string, withUri: boolean): Record<string, string> => ({
  'ca-cert.pem': intermediates.get(key)!,
  'cert-chain.pem': intermediates.get(key)! + root.pem,
  'root-cert.pem': root.pem,
  ...(withUri ? { 'ca-key.uri': `${uris.get(key)!}\n` } : {}),
});

before(async () => {
  hsm = makeSoftHsm({ thisProcess: true });
  hsm.addToken('k8s-ca');
  api = await FakeApiServer.start({
    namespaces: [NS, 'app'],
    users: { 'token-a': 'replica-a', 'token-b': 'replica-b', 'token-c': 'replica-c' },
  });
  dir = mkdtempSync(join(tmpdir(), 'serve-kube-hsm-'));
  root = await makeRoot('Kube HSM Root');
  for (const key of ['one', 'two']) {
    const uri = hsm.uri('k8s-ca', key);
    const spki = await generatePkcs11Key({ uri, keyType: 'ec-p256', env: hsm.env });
    const cert = await issueCertificate({
      profile: { kind: 'intermediate', subject: [['CN', `Kube HSM Intermediate ${key}`]] },
      publicKey: spki,
      issuer: { cert: root.cert, key: root.key },
      notBefore: new Date(Date.now() - HOUR),
      notAfter: new Date(Date.now() + 100 * HOUR),
    });
    intermediates.set(key, certificatePem(cert));
    uris.set(key, uri);
    if (key === 'one') {
      // The same key certified anew, for a renewal while the token is away.
      const renewed = await issueCertificate({
        profile: { kind: 'intermediate', subject: [['CN', 'Kube HSM Intermediate one, renewed']] },
        publicKey: spki,
        issuer: { cert: root.cert, key: root.key },
        notBefore: new Date(Date.now() - HOUR),
        notAfter: new Date(Date.now() + 100 * HOUR),
      });
      intermediates.set('one-renewed', certificatePem(renewed));
    }
  }
});
after(async () => {
  for (const p of procs) await p.stop();
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
  hsm.remove();
});

test('cacerts naming its key by URI: served from the token, no self-signed root made', async () => {
  putCacerts(api, NS, cacerts('one', true));
  const a = await serve('a');
  const chain = await issue(a);
  assert.equal(chain[1], intermediates.get('one'));
  opensslVerify(chain, root.pem);
  assert.deepEqual(opensslUris(chain[0]!), ['spiffe://cluster.local/ns/app/sa/web']);
  assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined);

  // A new key URI in the watched Secret, with its certificate: swapped in after its probe.
  putCacerts(api, NS, cacerts('two', true));
  await waitFor('the new key served', async () => (await issue(a))[1] === intermediates.get('two'));

  // A URI whose key does not belong to the certificate: refused, still serving the last good.
  putCacerts(api, NS, { ...cacerts('two', false), 'ca-key.uri': uris.get('one')! });
  await waitFor('the refused update counted', async () =>
    /castellan_ca_load_errors_total\{[^}]*\} [1-9]/.test(await scrapeMetrics(a.monitoringPort)),
  );
  assert.equal((await issue(a))[1], intermediates.get('two'));
});

let b: ServeProcess;

test('--ca-key-uri with a cacerts of three files', async () => {
  putCacerts(api, NS, cacerts('one', false));
  b = await serve('b', '--ca-key-uri', uris.get('one')!);
  await waitFor(
    'the flag key served',
    async () => (await issue(b))[1] === intermediates.get('one'),
  );
  opensslVerify(await issue(b), root.pem);
});

test('the token away: no replica starts on a self-signed root; a running one retries the Secret', async () => {
  hsm.takeTokensAway();
  try {
    const e = await serve('c', '--ca-key-uri', uris.get('one')!).then(
      () => assert.fail('a replica started while its token was away'),
      (err: unknown) => (err as Error).message,
    );
    assert.match(e, /unavailable|no token matches|did not initialize|the HSM could not sign/);
    assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined);

    // A renewal of the running replica's certificate arrives while the token is away.
    const refusals = (): number => (b.stderr().match(/refused a CA update/g) ?? []).length;
    const before = refusals();
    putCacerts(api, NS, {
      'ca-cert.pem': intermediates.get('one-renewed')!,
      'cert-chain.pem': intermediates.get('one-renewed')! + root.pem,
      'root-cert.pem': root.pem,
    });
    await waitFor('the renewal refused for now', () => refusals() > before);
  } finally {
    hsm.putTokensBack();
  }
  await waitFor(
    'the renewal swapped in once the token is back, the Secret unchanged',
    async () => (await issue(b))[1] === intermediates.get('one-renewed'),
    20_000,
  );
});
