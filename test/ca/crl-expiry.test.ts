// followCrlExpiry: the warning for an expired CRL (still published), on a manual clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bundleFromCacerts } from '../../src/ca/cacerts-layout.js';
import { certificatePem } from '../../src/ca/build-key-cert-bundle.js';
import { crlRenewalCommand, followCrlExpiry } from '../../src/ca/crl-expiry.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { generateKeyPair, privateKeyToPem } from '../../src/pki/keys.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import type { CaCrl } from '../../src/pki/crl.js';
import {
  crlOf,
  makeCacerts,
  makeIntermediate,
  makeRoot,
  type TestCa,
} from '../support/ca-hierarchy.js';
import { ManualClock } from '../support/manual-clock.js';

const HOUR = 3_600_000;

test('reported once when loaded expired, once when a loaded CRL expires, never for a fresh one', async () => {
  const clock = new ManualClock(Date.now());
  const { root, ca, files } = await makeCacerts();
  const withCrl = async (nextUpdate: Date): Promise<Map<string, string>> => {
    const thisUpdate = new Date(clock.now() - 2 * HOUR);
    return new Map([
      ...files,
      [
        'ca-crl.pem',
        (await crlOf(ca, { thisUpdate, nextUpdate })) + (await crlOf(root, { thisUpdate })),
      ],
    ]);
  };
  const load = (f: Map<string, string>) => {
    const b = bundleFromCacerts(f, { source: 'test' }, clock);
    assert.ok(b);
    return b;
  };
  const state = new SwappableCaState();
  const reported: CaCrl[] = [];
  const stop = followCrlExpiry(state, clock, (crl) => reported.push(crl));

  const expired = load(await withCrl(new Date(clock.now() - HOUR)));
  state.swap(expired);
  assert.equal(reported.length, 1);
  assert.equal(reported[0]?.pem, expired.crl?.pem);
  state.swap(expired); // the same CRL again (another swap of the same set): not again
  assert.equal(reported.length, 1);

  // Loaded fresh, expires an hour later: reported when nextUpdate passes, not before.
  const soon = load(await withCrl(new Date(clock.now() + HOUR)));
  state.swap(soon);
  await clock.advance(HOUR - 1000);
  assert.equal(reported.length, 1);
  await clock.advance(2000);
  assert.equal(reported.length, 2);
  assert.equal(reported[1]?.pem, soon.crl?.pem);

  // Replaced before it expires: the old CRL's time passes silently; a CA without a CRL has none.
  const later = load(await withCrl(new Date(clock.now() + HOUR)));
  state.swap(later);
  state.swap(load(files));
  await clock.advance(2 * HOUR);
  assert.equal(reported.length, 2);

  // After stop(), nothing more.
  state.swap(load(await withCrl(new Date(clock.now() + HOUR))));
  stop();
  await clock.advance(2 * HOUR);
  assert.equal(reported.length, 2);
});

// The command `ca check`, the CACRLExpired Event and serve's log advise for the CRLs due: a new
// user ran the advised `--ca-dir` alone on a root's CRL, which `ca crl` keeps as it was; and a
// middle CA's CRL (a three-level chain, found in review) is renewed by neither flag.
test("crlRenewalCommand: --ca-dir for the CA, --root-dir for the root, that CA's own key for one between", async () => {
  const clock = new ManualClock(Date.now());
  const root = await makeRoot('Renew Root');
  const { privateKey } = await generateKeyPair('ec-p256');
  const middleCert = await issueCertificate({
    profile: { kind: 'intermediate', subject: [['CN', 'Renew Middle']], pathLength: 1 },
    publicKey: privateKey,
    issuer: { cert: root.cert, key: root.key },
    notBefore: new Date(clock.now() - HOUR),
    notAfter: new Date(clock.now() + 900 * HOUR),
  });
  const middle: TestCa = {
    cert: middleCert,
    key: privateKey,
    pem: certificatePem(middleCert),
    keyPem: privateKeyToPem(privateKey),
  };
  const ca = await makeIntermediate(middle, 'Renew CA');
  const soon = new Date(clock.now() + HOUR);
  const crlOfEach = async (due: TestCa[]): Promise<string> =>
    (
      await Promise.all(
        [ca, middle, root].map((c) =>
          crlOf(
            c,
            due.includes(c)
              ? { nextUpdate: soon }
              : { nextUpdate: new Date(clock.now() + 500 * HOUR) },
          ),
        ),
      )
    ).join('');
  const files = (crl: string) =>
    new Map([
      ['ca-cert.pem', ca.pem],
      ['ca-key.pem', ca.keyPem],
      ['cert-chain.pem', ca.pem + middle.pem + root.pem],
      ['root-cert.pem', root.pem],
      ['ca-crl.pem', crl],
    ]);
  const advice = async (due: TestCa[]): Promise<string> => {
    const b = bundleFromCacerts(files(await crlOfEach(due)), { source: 'test' }, clock);
    assert.ok(b?.crl);
    return crlRenewalCommand(b.crl, 'dir', clock.now() + 2 * HOUR, b.signingCert);
  };
  assert.equal(await advice([ca]), 'castellan ca crl --ca-dir dir');
  assert.equal(
    await advice([ca, root]),
    'castellan ca crl --ca-dir dir --root-dir <the folder of "CN=Renew Root", holding root-cert.pem and root-key.pem>',
  );
  assert.equal(
    await advice([middle]),
    'castellan ca crl --ca-dir dir, and re-sign the CRL of "CN=Renew Middle" with that CA\'s own key (castellan ca crl signs only with the folder\'s CA and the root)',
  );
});
