import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs, {
  copyFileSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { ManualClock } from '../../support/manual-clock.js';
import { istioSampleCerts } from '../../support/paths.js';
import { isCastellanError } from '../../../src/errors.js';
import { loadOrCreateSelfSignedCa, reissueRoot } from '../../../src/ca/sources/self-signed.js';
import {
  makeTempDir,
  opensslExtensions,
  opensslText,
  opensslVerify,
} from '../../support/openssl.js';

const tmp = makeTempDir();
after(() => tmp.remove());
const clock = new ManualClock(Date.now());

test('created once (0600 key), strict-valid, reused on restart', async () => {
  const dir = join(tmp.dir, 'data');
  const b1 = await loadOrCreateSelfSignedCa({ dataDir: dir, trustDomain: 'cluster.local' }, clock);
  assert.equal(b1.signingKeyType, 'ec-p256');
  assert.equal(statSync(join(dir, 'ca-key.pem')).mode & 0o777, 0o600);
  const certPem = readFileSync(join(dir, 'ca-cert.pem'), 'utf8');
  assert.equal(readFileSync(join(dir, 'root-cert.pem'), 'utf8'), certPem);
  assert.ok(opensslVerify({ root: certPem, leaf: certPem }).ok);
  const text = opensslText(certPem);
  assert.match(text, /Subject: O = cluster.local\n/);
  assert.equal(opensslExtensions(certPem).get('X509v3 Basic Constraints')?.critical, true);
  const b2 = await loadOrCreateSelfSignedCa({ dataDir: dir, trustDomain: 'cluster.local' }, clock);
  assert.equal(b2.signingCert.serialNumber, b1.signingCert.serialNumber);
  assert.equal(readFileSync(join(dir, 'ca-cert.pem'), 'utf8'), certPem);
});

test('RSA-2048 on request; 10 years by default', async () => {
  const b = await loadOrCreateSelfSignedCa(
    { dataDir: join(tmp.dir, 'rsa'), trustDomain: 'td', keyType: 'rsa-2048' },
    clock,
  );
  assert.equal(b.signingKeyType, 'rsa-2048');
  const years = (b.signingCert.notAfter.getTime() - clock.now()) / (365 * 24 * 3_600_000);
  assert.ok(years > 9.99 && years < 10.01, String(years));
});

test('never silently replaced: corrupt or half sets are errors', async () => {
  const dir = join(tmp.dir, 'corrupt');
  await loadOrCreateSelfSignedCa({ dataDir: dir, trustDomain: 'td' }, clock);
  const before = readFileSync(join(dir, 'ca-cert.pem'), 'utf8');
  writeFileSync(join(dir, 'ca-key.pem'), 'corrupt');
  await assert.rejects(
    loadOrCreateSelfSignedCa({ dataDir: dir, trustDomain: 'td' }, clock),
    (e: unknown) => isCastellanError(e, 'malformed') && e.message.includes('ca-key.pem'),
  );
  assert.equal(readFileSync(join(dir, 'ca-cert.pem'), 'utf8'), before);
  rmSync(join(dir, 'ca-key.pem'));
  await assert.rejects(
    loadOrCreateSelfSignedCa({ dataDir: dir, trustDomain: 'td' }, clock),
    (e: unknown) =>
      isCastellanError(e, 'incomplete-ca') && e.message.includes('ca-key.pem is missing'),
  );
});

/** loadOrCreateSelfSignedCa on a data dir (trust domain td), keeping what it says of foreign roots. */
function loaderTellingForeignRoots() {
  const said: string[] = [];
  const load = (dir: string) =>
    loadOrCreateSelfSignedCa(
      { dataDir: dir, trustDomain: 'td', onForeignRoots: (m) => said.push(m) },
      clock,
    );
  return { said, load };
}

test("a root-cert.pem another CA's run left in the data dir (serve --cacerts-dir publishes there) is set aside, said, and never a failed start", async () => {
  const foreign = readFileSync(join(istioSampleCerts, 'root-cert.pem'), 'utf8');
  const { said, load } = loaderTellingForeignRoots();

  // Self-signed first, then a run on a plugged-in CA, then self-signed again: the same root.
  const dir = join(tmp.dir, 'flip');
  const first = await load(dir);
  writeFileSync(join(dir, 'root-cert.pem'), foreign);
  const again = await load(dir);
  assert.equal(again.signingCert.serialNumber, first.signingCert.serialNumber);
  assert.equal(again.rootBundlePem, first.rootBundlePem);
  assert.equal(said.length, 1);
  assert.match(said[0]!, /flip\/root-cert\.pem holds the roots of another CA .*--cacerts-dir/);

  // A data dir first used with --cacerts-dir: the new self-signed set serves its own root.
  const fresh = join(tmp.dir, 'plugged-first');
  mkdirSync(fresh);
  writeFileSync(join(fresh, 'root-cert.pem'), foreign);
  const made = await load(fresh);
  const certPem = readFileSync(join(fresh, 'ca-cert.pem'), 'utf8');
  assert.equal(made.rootBundlePem.trim(), certPem.trim());
  assert.ok(opensslVerify({ root: made.rootBundlePem, leaf: certPem }).ok);
  assert.equal(said.length, 2);
  // The next start reads the same set (still warned: nothing here rewrites root-cert.pem; serve
  // publishes the bundle right after).
  assert.equal((await load(fresh)).signingCert.serialNumber, made.signingCert.serialNumber);

  // Old and new root of a rotation (one key) are this CA's own: kept, nothing said.
  const rotated = join(tmp.dir, 'rotated-roots');
  const b = await load(rotated);
  const root2 = await reissueRoot(b, b.signer, clock, 20 * 3_600_000);
  writeFileSync(join(rotated, 'root-cert.pem'), b.rootBundlePem + root2.toString('pem') + '\n');
  said.length = 0;
  assert.equal((await load(rotated)).roots.length, 2);
  assert.deepEqual(said, []);

  // A root-cert.pem that does not parse is still refused, as before.
  writeFileSync(join(rotated, 'root-cert.pem'), 'corrupt');
  await assert.rejects(load(rotated), (e: unknown) => isCastellanError(e, 'malformed'));
});

test('a self-signed root whose key and certificate are gone is never replaced silently (workloads may still trust it)', async () => {
  const { said, load } = loaderTellingForeignRoots();
  // ca-key.pem and ca-cert.pem deleted (or a partial restore); root-cert.pem is still there.
  const dir = join(tmp.dir, 'lost-key');
  await load(dir);
  const oldRoot = readFileSync(join(dir, 'root-cert.pem'), 'utf8');
  rmSync(join(dir, 'ca-key.pem'));
  rmSync(join(dir, 'ca-cert.pem'));
  await assert.rejects(
    load(dir),
    (e: unknown) =>
      isCastellanError(e, 'incomplete-ca') &&
      /root-cert\.pem holds a self-signed CA root \("O=td"\) but ca-key\.pem and ca-cert\.pem are gone/.test(
        e.message,
      ),
  );
  assert.deepEqual(readdirSync(dir).sort(), ['root-cert.pem'], 'no new key or root made');
  assert.equal(readFileSync(join(dir, 'root-cert.pem'), 'utf8'), oldRoot);

  // Another self-signed set's root next to this set's files: refused too, not set aside.
  const other = join(tmp.dir, 'other-self-signed');
  await load(other);
  copyFileSync(join(dir, 'root-cert.pem'), join(other, 'root-cert.pem'));
  await assert.rejects(
    load(other),
    (e: unknown) =>
      isCastellanError(e, 'chain-invalid') &&
      /holds a self-signed CA root \("O=td"\) of another key than ca-cert\.pem/.test(e.message),
  );
  assert.deepEqual(said, []);
});

test('reissueRoot keeps key and subject, moves the validity', async () => {
  const dir = join(tmp.dir, 'rotate');
  const b = await loadOrCreateSelfSignedCa({ dataDir: dir, trustDomain: 'cluster.local' }, clock);
  const later = new ManualClock(clock.now() + 1000 * 3_600_000);
  const root2 = await reissueRoot(b, b.signer, later, 20 * 3_600_000);
  assert.equal(root2.subject, b.signingCert.subject);
  assert.equal(root2.notAfter.getTime(), Math.floor((later.now() + 20 * 3_600_000) / 1000) * 1000);
  assert.notEqual(root2.serialNumber, b.signingCert.serialNumber);
  assert.deepEqual(
    new Uint8Array(root2.publicKey.rawData),
    new Uint8Array(b.signingCert.publicKey.rawData),
  );
});

test('first starts racing on one data dir end with one root, on disk and in every bundle (one commit wins, the others read it)', async () => {
  const dir = join(tmp.dir, 'race');
  const bundles = await Promise.all(
    Array.from({ length: 4 }, () =>
      loadOrCreateSelfSignedCa({ dataDir: dir, trustDomain: 'cluster.local' }, clock),
    ),
  );
  const onDisk = readFileSync(join(dir, 'ca-cert.pem'), 'utf8');
  for (const b of bundles) assert.equal(b.rootBundlePem.trim(), onDisk.trim());
  assert.equal(new Set(bundles.map((b) => b.signingCert.serialNumber)).size, 1);
  assert.deepEqual(readdirSync(dir).sort(), ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem']);
});

/**
 * Runs `work` while the first `times` reads of the folder `committed` find nothing (ENOENT), as
 * when another process commits its set just after we looked; returns how many were hidden.
 */
async function hidingCommittedSet(
  committed: string,
  times: number,
  work: () => Promise<void>,
): Promise<number> {
  const promises = fs.promises as unknown as Record<string, (...args: unknown[]) => unknown>;
  const readdir = promises.readdir!;
  let hidden = 0;
  promises.readdir = (...args: unknown[]) => {
    if (hidden < times && args[0] === committed) {
      hidden++;
      return Promise.reject(Object.assign(new Error('ENOENT'), { code: 'ENOENT' }));
    }
    return readdir.apply(fs.promises, args);
  };
  syncBuiltinESMExports();
  try {
    await work();
  } finally {
    promises.readdir = readdir;
    syncBuiltinESMExports();
  }
  return hidden;
}

/**
 * Start A's set, made elsewhere, caught midway into start B's data dir: `inCommitted` still in
 * A's committed folder, the third file already linked into place. `bServesAsSet` runs start B
 * and checks it serves A's set, whole.
 */
async function startAMidway(
  name: string,
  inCommitted: readonly string[],
): Promise<{ committed: string; bServesAsSet: () => Promise<void> }> {
  const made = join(tmp.dir, `made-by-${name}`);
  const a = await loadOrCreateSelfSignedCa({ dataDir: made, trustDomain: 'cluster.local' }, clock);
  const dir = join(tmp.dir, `b-meets-${name}`);
  const committed = join(dir, '.self-signed-ca.ready');
  mkdirSync(committed, { recursive: true });
  for (const f of inCommitted) copyFileSync(join(made, f), join(committed, f));
  const linked = ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem'].find(
    (f) => !inCommitted.includes(f),
  );
  copyFileSync(join(made, linked!), join(dir, linked!)); // A's first link
  const bServesAsSet = async (): Promise<void> => {
    const b = await loadOrCreateSelfSignedCa({ dataDir: dir, trustDomain: 'cluster.local' }, clock);
    assert.equal(b.signingCert.serialNumber, a.signingCert.serialNumber);
    assert.deepEqual(readdirSync(dir).sort(), ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem']);
  };
  return { committed, bServesAsSet };
}

test("a start that sees another process's root arrive before its key and certificate serves that set, not 'root without its key'", async () => {
  // Start A links its root-cert.pem into place first; its key and certificate are still in the
  // committed folder. Start B's first two looks for a committed set came before A's commit, so B
  // finds a self-signed root and no key: the refusal of a lost root must look once more (and find
  // A's set) before refusing.
  const { committed, bServesAsSet } = await startAMidway('a2', ['ca-cert.pem', 'ca-key.pem']);
  const looks = await hidingCommittedSet(committed, 2, bServesAsSet);
  assert.equal(looks, 2, 'both early looks found nothing');
});

test('a start that meets another process moving its committed set into place serves that set', async () => {
  // Separate processes first-starting on one data dir (test/reliability/crash-safe-state.test.ts
  // caught this once in four processes): start B finds no committed set, then start A commits its
  // set and links ca-key.pem into place, and B reads ca-cert.pem (not there yet) and ca-key.pem.
  // B then saw half a set and refused with `incomplete-ca`; it must finish A's set and serve it.
  const { committed, bServesAsSet } = await startAMidway('a1', ['ca-cert.pem', 'root-cert.pem']);
  // B's first look for a committed set happened before A's commit: it found none.
  const looks = await hidingCommittedSet(committed, 1, bServesAsSet);
  assert.equal(looks, 1, 'the first look was the one that found nothing');
});
