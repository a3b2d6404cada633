import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCastellanError, type ErrorKind } from '../../src/errors.js';
import {
  formatSerial,
  normalizeSerial,
  parseCrls,
  revokedEntry,
  verifyCaCrl,
} from '../../src/pki/crl.js';
import { ManualClock } from '../support/manual-clock.js';
import {
  crlOf,
  makeIntermediate,
  makeLeaf,
  makeRoot,
  type TestCa,
} from '../support/ca-hierarchy.js';
import { makeTempDir, openssl } from '../support/openssl.js';

const HOUR = 3_600_000;
let root: TestCa;
let ca: TestCa;
let other: TestCa;
before(async () => {
  root = await makeRoot('CRL Root');
  ca = await makeIntermediate(root, 'CRL Intermediate');
  other = await makeRoot('Someone Else');
});
const clock = new ManualClock(Date.now());

function refusedWith(f: () => unknown, kind: ErrorKind, pattern: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isCastellanError(e, kind), `${String(e)} is not ${kind}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('a created CRL verifies with openssl and reads back: issuer, AKI, number, entries, dates', async () => {
  const leaf = await makeLeaf(ca);
  const thisUpdate = new Date(Math.floor(Date.now() / 1000) * 1000 - HOUR);
  const nextUpdate = new Date(thisUpdate.getTime() + 48 * HOUR);
  const pem = await crlOf(ca, {
    thisUpdate,
    nextUpdate,
    crlNumber: 7,
    // A high-bit serial must stay a positive INTEGER (three octets, 00 FF 01).
    entries: [
      { serial: normalizeSerial(leaf.cert.serialNumber), revocationDate: thisUpdate },
      { serial: 'ff01', revocationDate: thisUpdate },
    ],
  });
  const t = makeTempDir();
  try {
    writeFileSync(join(t.dir, 'crl.pem'), pem);
    writeFileSync(join(t.dir, 'ca.pem'), ca.pem);
    const r = spawnSync(
      'openssl',
      ['crl', '-in', join(t.dir, 'crl.pem'), '-CAfile', join(t.dir, 'ca.pem'), '-noout', '-verify'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr + r.stdout, /verify OK/);
    const text = openssl(['crl', '-in', join(t.dir, 'crl.pem'), '-noout', '-text']);
    assert.match(text, /X509v3 CRL Number: \s*7/);
    assert.match(text, /X509v3 Authority Key Identifier/);
    assert.match(text, /Serial Number: FF01\n/);
    assert.match(
      openssl(['asn1parse', '-in', join(t.dir, 'crl.pem')]),
      /hl=2 l= {3}3 prim: INTEGER {11}:FF01/,
    );
    assert.match(text, new RegExp(`Serial Number: ${formatSerial(leaf.cert.serialNumber)}`));
  } finally {
    t.remove();
  }
  const [crl] = parseCrls(pem, 'crl.pem');
  assert.ok(crl);
  assert.equal(crl.issuer, ca.cert.subject);
  assert.equal(crl.crlNumber, 7);
  assert.equal(crl.thisUpdate.getTime(), thisUpdate.getTime());
  assert.equal(crl.nextUpdate?.getTime(), nextUpdate.getTime());
  assert.deepEqual(
    crl.entries.map((e) => e.serial),
    [normalizeSerial(leaf.cert.serialNumber), 'ff01'],
  );
  assert.ok(revokedEntry(crl, leaf.cert.serialNumber));
  assert.ok(revokedEntry(crl, '00:FF:01'));
  assert.equal(revokedEntry(crl, 'ff02'), undefined);
});

test('serials: the forms openssl prints are accepted; anything else is refused', () => {
  assert.equal(normalizeSerial('0A1B'), 'a1b');
  assert.equal(normalizeSerial('0a:1b'), 'a1b');
  assert.equal(normalizeSerial('serial=0A1B'), 'a1b');
  assert.equal(normalizeSerial('0x0a1b'), 'a1b');
  assert.equal(normalizeSerial('00'), '0');
  assert.equal(formatSerial('a1b'), '0A1B');
  for (const bad of ['', 'xyz', '12-34', '0a::1b', 'serial=', '1.5']) {
    refusedWith(() => normalizeSerial(bad), 'invalid-argument', /is not a certificate serial/);
  }
  refusedWith(() => normalizeSerial('01'.repeat(21)), 'invalid-argument', /longer than 20 octets/);
});

test('verifyCaCrl: a CRL for each CA of the chain verifies; counts and the earliest nextUpdate', async () => {
  const leaf = await makeLeaf(ca);
  const soon = new Date(Date.now() + 24 * HOUR);
  const pem =
    (await crlOf(ca, {
      entries: [{ serial: leaf.cert.serialNumber, revocationDate: new Date() }],
    })) + (await crlOf(root, { nextUpdate: soon }));
  const v = verifyCaCrl(pem, [ca.cert, root.cert], clock, 'dir/ca-crl.pem');
  assert.equal(v.pem, pem);
  assert.equal(v.crls.length, 2);
  assert.equal(v.crls[0]?.signer, ca.cert);
  assert.equal(v.crls[1]?.signer, root.cert);
  assert.equal(v.revokedCount, 1);
  assert.equal(v.nextUpdate?.getTime(), Math.floor(soon.getTime() / 1000) * 1000);
  assert.equal(v.expired, false);
  assert.equal(v.subject, 'dir/ca-crl.pem');
});

test('verifyCaCrl: an expired CRL is accepted and flagged', async () => {
  const pem = await crlOf(ca, {
    thisUpdate: new Date(Date.now() - 10 * HOUR),
    nextUpdate: new Date(Date.now() - HOUR),
  });
  const v = verifyCaCrl(pem, [ca.cert], clock, 'ca-crl.pem');
  assert.equal(v.expired, true);
});

test('verifyCaCrl refuses: another CA, a forged signer of the same name, a partial set, truncated or foreign PEM', async () => {
  refusedWith(
    () => verifyCaCrl('', [ca.cert], clock, 'x/ca-crl.pem'),
    'malformed',
    /^x\/ca-crl\.pem: no PEM block found/,
  );
  const byOther = await crlOf(other);
  refusedWith(
    () => verifyCaCrl(byOther, [ca.cert, root.cert], clock, 'x/ca-crl.pem'),
    'bad-signature',
    /^x\/ca-crl\.pem: CRL \[0\] is issued by "CN=Someone Else", which is none of the CAs of the chain/,
  );
  // Same subject as the intermediate, another key: the name matches, the signature does not.
  const impostor = await makeIntermediate(other, 'CRL Intermediate');
  const forged = await crlOf(impostor);
  refusedWith(
    () => verifyCaCrl(forged, [ca.cert], clock, 'ca-crl.pem'),
    'bad-signature',
    /signature of CRL \[0\] \(issuer "CN=CRL Intermediate"\) does not verify/,
  );
  const caOnly = await crlOf(ca);
  refusedWith(
    () => verifyCaCrl(caOnly, [ca.cert, root.cert], clock, 'ca-crl.pem'),
    'incomplete-ca',
    /no CRL signed by "CN=CRL Root": every CA of the chain needs one/,
  );
  const lines = caOnly.trimEnd().split('\n');
  refusedWith(
    () => verifyCaCrl(lines.slice(0, -3).join('\n'), [ca.cert], clock, 'ca-crl.pem'),
    'malformed',
    /truncated PEM block/,
  );
  // A whole PEM block whose DER is cut short.
  const b64 = lines.slice(1, -1).join('');
  const cut = Buffer.from(b64, 'base64').subarray(0, 60).toString('base64');
  refusedWith(
    () =>
      verifyCaCrl(
        `-----BEGIN X509 CRL-----\n${cut}\n-----END X509 CRL-----\n`,
        [ca.cert],
        clock,
        'ca-crl.pem',
      ),
    'malformed',
    /CRL \[0\] does not parse/,
  );
  refusedWith(
    () => verifyCaCrl(ca.pem, [ca.cert], clock, 'ca-crl.pem'),
    'malformed',
    /expected PEM "X509 CRL" blocks, found "CERTIFICATE"/,
  );
});
