// ca-crl.pem beside the plugged-in CA files (istiod: pilot/pkg/bootstrap/istio_ca.go reads
// <ROOT_CA_DIR>/ca-crl.pem; security/pkg/pki/util/keycertbundle.go verifies it), in a folder
// and in a Secret's data, in both layouts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../../src/clock.js';
import { isCastellanError, type ErrorKind } from '../../src/errors.js';
import { bundleFromCacerts, CA_CRL_FILE, detectLayout } from '../../src/ca/cacerts-layout.js';
import { updateCaCrl } from '../../src/ca/crl-file.js';
import { loadCacertsFolder } from '../../src/ca/sources/folder.js';
import { normalizeSerial, parseCrls } from '../../src/pki/crl.js';
import { crlOf, makeCacerts, makeLeaf, makeRoot, type TestCa } from '../support/ca-hierarchy.js';
import { makeTempDir } from '../support/openssl.js';

const HOUR = 3_600_000;
const tmp = makeTempDir();
after(() => tmp.remove());
let root: TestCa;
let ca: TestCa;
let files: Map<string, string>;
let fullCrl: string;
before(async () => {
  ({ root, ca, files } = await makeCacerts({ root: 'Layout Root', ca: 'Layout CA' }));
  fullCrl = (await crlOf(ca)) + (await crlOf(root));
});

let n = 0;
function folder(contents: ReadonlyMap<string, string>): string {
  const dir = join(tmp.dir, `f${n++}`);
  mkdirSync(dir);
  for (const [name, text] of contents) writeFileSync(join(dir, name), text);
  return dir;
}
const withCrl = (base: ReadonlyMap<string, string>, crl: string): Map<string, string> =>
  new Map([...base, [CA_CRL_FILE, crl]]);

async function refusedWith(p: Promise<unknown>, kind: ErrorKind, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isCastellanError(e, kind), `${String(e)} is not ${kind}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('Istio layout folder: ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem + ca-crl.pem loads with its CRL', async () => {
  const dir = folder(withCrl(files, fullCrl));
  const b = await loadCacertsFolder(dir, systemClock);
  assert.ok(b?.crl);
  assert.equal(b.crl.pem, fullCrl, 'the plugged-in bytes, as istiod publishes them');
  assert.equal(b.crl.subject, `${dir}/ca-crl.pem`);
  assert.deepEqual(
    b.crl.crls.map((c) => c.signer.subject),
    ['CN=Layout CA', 'CN=Layout Root'],
  );
  assert.equal(b.crl.expired, false);
  // Without ca-crl.pem: no CRL, as before.
  assert.equal((await loadCacertsFolder(folder(files), systemClock))?.crl, undefined);
});

test('kubernetes.io/tls layout (tls.crt, tls.key, ca.crt) + ca-crl.pem: read too (istiod ignores it there)', async () => {
  const tls = new Map([
    ['tls.crt', ca.pem],
    ['tls.key', ca.keyPem],
    ['ca.crt', root.pem],
    [CA_CRL_FILE, fullCrl],
  ]);
  const b = await loadCacertsFolder(folder(tls), systemClock);
  assert.equal(b?.crl?.crls.length, 2);
  const bad = new Map([...tls, [CA_CRL_FILE, await crlOf(await makeRoot('Stranger'))]]);
  const dir = folder(bad);
  await refusedWith(
    loadCacertsFolder(dir, systemClock),
    'bad-signature',
    new RegExp(`^${dir}/ca-crl\\.pem: CRL \\[0\\] is issued by "CN=Stranger"`),
  );
});

test('a CRL signed by another CA refuses the whole set, naming ca-crl.pem', async () => {
  const stranger = await makeRoot('Layout Root');
  const dir = folder(withCrl(files, (await crlOf(ca)) + (await crlOf(stranger))));
  await refusedWith(
    loadCacertsFolder(dir, systemClock),
    'bad-signature',
    new RegExp(
      `^${dir}/ca-crl\\.pem: the signature of CRL \\[1\\] \\(issuer "CN=Layout Root"\\) does not verify`,
    ),
  );
});

test('a CRL for the signing CA only (no root CRL) is refused as istiod refuses it', async () => {
  const dir = folder(withCrl(files, await crlOf(ca)));
  await refusedWith(
    loadCacertsFolder(dir, systemClock),
    'incomplete-ca',
    /ca-crl\.pem: no CRL signed by "CN=Layout Root"/,
  );
});

test('a truncated ca-crl.pem refuses the set', async () => {
  const dir = folder(withCrl(files, fullCrl.slice(0, fullCrl.length / 3)));
  await refusedWith(loadCacertsFolder(dir, systemClock), 'malformed', /ca-crl\.pem: truncated/);
});

test('an expired CRL is loaded (still published) and flagged expired', async () => {
  const expired = await crlOf(ca, {
    thisUpdate: new Date(Date.now() - 48 * HOUR),
    nextUpdate: new Date(Date.now() - HOUR),
  });
  const b = await loadCacertsFolder(
    folder(withCrl(files, expired + (await crlOf(root)))),
    systemClock,
  );
  assert.equal(b?.crl?.expired, true);
  assert.ok((b.crl.nextUpdate?.getTime() ?? Infinity) < Date.now());
});

test('a Secret or folder with ca-crl.pem only is an incomplete CA, never "nothing plugged in"', () => {
  const only = new Map([[CA_CRL_FILE, fullCrl]]);
  assert.equal(detectLayout(only), 'istio');
  assert.throws(
    () =>
      bundleFromCacerts(only, { source: 's', where: 'secret istio-system/cacerts' }, systemClock),
    (e: unknown) =>
      isCastellanError(e, 'incomplete-ca') &&
      /^secret istio-system\/cacerts: incomplete CA \(Istio cacerts layout\): missing ca-cert\.pem, ca-key\.pem, cert-chain\.pem, root-cert\.pem$/.test(
        e.message,
      ),
  );
});

test('readCrl: false (PILOT_ENABLE_CA_CRL=false) ignores ca-crl.pem, even a bad one', () => {
  const b = bundleFromCacerts(
    withCrl(files, 'not a crl'),
    { source: 's', readCrl: false },
    systemClock,
  );
  assert.ok(b);
  assert.equal(b.crl, undefined);
});

test('updateCaCrl: creates both CRLs, then extends the CA one (entries kept, number + 1) and keeps the root one without its key', async () => {
  const bundle = bundleFromCacerts(files, { source: 's' }, systemClock);
  assert.ok(bundle);
  const leaf = await makeLeaf(ca);
  const now = new Date();
  const first = await updateCaCrl({
    bundle,
    root: { cert: root.cert, key: root.key },
    file: 'ca-crl.pem',
    revoke: [{ certificate: leaf.cert, file: 'leaf.pem' }],
    now,
    nextUpdate: new Date(now.getTime() + 24 * HOUR),
  });
  assert.deepEqual(
    first.crls.map((c) => [c.ca.subject, c.crlNumber, c.entries, c.signed]),
    [
      ['CN=Layout CA', 1, 1, true],
      ['CN=Layout Root', 1, 0, true],
    ],
  );
  const second = await updateCaCrl({
    bundle,
    existingPem: first.pem,
    file: 'ca-crl.pem',
    revoke: [{ serial: '0a:1b' }, { certificate: leaf.cert, file: 'leaf.pem' }],
    now,
    nextUpdate: new Date(now.getTime() + 48 * HOUR),
  });
  const [caCrl, rootCrl] = parseCrls(second.pem, 'ca-crl.pem');
  assert.equal(caCrl?.crlNumber, 2);
  assert.deepEqual(
    caCrl.entries.map((e) => e.serial),
    [normalizeSerial(leaf.cert.serialNumber), 'a1b'],
    'earlier entries first; the leaf revoked twice is listed once',
  );
  assert.equal(rootCrl?.crlNumber, 1, 'the root CRL is kept as it was');
  assert.deepEqual(
    second.crls.map((c) => c.signed),
    [true, false],
  );
  // The result verifies as a set.
  const loaded = bundleFromCacerts(withCrl(files, second.pem), { source: 's' }, systemClock);
  assert.equal(loaded?.crl?.revokedCount, 2);
});
