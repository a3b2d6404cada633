import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey, webcrypto, X509Certificate } from 'node:crypto';
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
  readFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import {
  DATA_LINK,
  checkCertificateFolder,
  readCertificateFiles,
  writeCertificateFiles,
  type CertificateFiles,
} from '../../src/agent/atomic-files.js';
import { ManualClock } from '../support/manual-clock.js';

const clock = new ManualClock(Date.UTC(2026, 0, 2, 3, 4, 5, 6));

async function makePair(i: number): Promise<CertificateFiles> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    { serialNumber: (i + 16).toString(16), name: `CN=pair ${i}`, keys, signingAlgorithm: alg },
    webcrypto,
  );
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  const pem = cert.toString('pem') + '\n';
  return {
    certChainPem: pem,
    keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n',
    rootCertPem: pem,
  };
}

function matches(files: CertificateFiles): boolean {
  const certKey = new X509Certificate(files.certChainPem).publicKey.export({
    type: 'spki',
    format: 'der',
  });
  const key = createPublicKey(createPrivateKey(files.keyPem)).export({
    type: 'spki',
    format: 'der',
  });
  return certKey.equals(key);
}

// A reader in another process that knows nothing of our code: it reads the files the two ways
// the layout supports and checks that the key belongs to the certificate on every read. It
// prints how many reads it has done every 50 rounds, so the writer knows when to stop.
const READER = `
import { readFileSync, realpathSync, writeFileSync, existsSync } from 'node:fs';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
const [dir, stopFile, outFile] = process.argv.slice(2);
const spki = (k) => k.export({ type: 'spki', format: 'der' }).toString('base64');
const check = (cert, key) => spki(new X509Certificate(cert).publicKey) === spki(createPublicKey(createPrivateKey(key)));
const r = { resolved: 0, named: 0, retried: 0, mismatches: 0, errors: [] };
for (let round = 1; !existsSync(stopFile); round++) {
  if (round % 50 === 0) process.stdout.write(String(r.resolved + r.named) + '\\n');
  try {
    const base = realpathSync(join(dir, '..data'));
    const cert = readFileSync(join(base, 'cert-chain.pem'));
    const key = readFileSync(join(base, 'key.pem'));
    if (!check(cert, key)) r.mismatches++;
    r.resolved++;
  } catch (e) { if (e.code !== 'ENOENT') r.errors.push(String(e)); }
  try {
    const c1 = readFileSync(join(dir, 'cert-chain.pem'));
    const key = readFileSync(join(dir, 'key.pem'));
    const c2 = readFileSync(join(dir, 'cert-chain.pem'));
    if (!c1.equals(c2)) { r.retried++; continue; }
    if (!check(c1, key)) r.mismatches++;
    r.named++;
  } catch (e) { r.errors.push(String(e)); }
}
writeFileSync(outFile, JSON.stringify(r));
`;

test('a concurrent reader never sees a half-written file or a certificate with the wrong key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'castellan-atomic-'));
  try {
    const out = join(dir, 'out');
    const pairs = await Promise.all(Array.from({ length: 8 }, (_, i) => makePair(i)));
    await writeCertificateFiles(out, pairs[0]!, clock);
    const script = join(dir, 'reader.mjs');
    await writeFile(script, READER);
    const stopFile = join(dir, 'stop');
    const result = join(dir, 'result.json');
    const child = spawn(process.execPath, [script, out, stopFile, result], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let childReads = 0;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      const last = d.trim().split('\n').at(-1);
      if (last) childReads = Number(last);
    });

    // Our own reader too, in this process, interleaved with the writes.
    let inProcess = 0;
    let inProcessMismatch = 0;
    let writing = true;
    const ownReader = (async () => {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- cleared by the writer below while this loop awaits: TypeScript keeps a let narrowed across awaits (microsoft/TypeScript#9998)
      while (writing) {
        const files = await readCertificateFiles(out);
        assert.ok(files);
        if (!matches(files)) inProcessMismatch++;
        inProcess++;
      }
    })();
    // Rotate until both readers have read while the files changed as often as the assertions
    // below ask (bounded by those counts, not by a fixed number of rotations: 120 took 10 s,
    // most of it after the counts were reached), and every pair has been written twice.
    let rotations = 0;
    while (rotations < 2 * pairs.length || childReads <= 1000 || inProcess <= 50) {
      assert.ok(rotations < 5000, `readers stalled: ${childReads} and ${inProcess} reads`);
      rotations++;
      await writeCertificateFiles(out, pairs[rotations % pairs.length]!, clock);
    }
    writing = false;
    await ownReader;
    await writeFile(stopFile, '');
    assert.equal(await exited, 0);
    const r = JSON.parse(await readFile(result, 'utf8')) as {
      resolved: number;
      named: number;
      retried: number;
      mismatches: number;
      errors: string[];
    };
    console.log(
      `rotations=${rotations} reader=${JSON.stringify({ ...r, errors: r.errors.length })} inProcess=${inProcess}`,
    );
    assert.deepEqual(r.errors, []);
    assert.equal(r.mismatches, 0);
    assert.equal(inProcessMismatch, 0);
    assert.ok(r.resolved + r.named > 1000, 'thousands of reads happened');
    assert.ok(inProcess > 50);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('layout: stable names are symlinks through ..data, key is 0600, old versions are pruned', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'castellan-atomic-'));
  try {
    const a = await makePair(1);
    const b = await makePair(2);
    // A provisioned regular file is replaced (by the agent), not written through.
    await writeFile(join(dir, 'key.pem'), 'old');
    const v1 = await writeCertificateFiles(dir, a, clock, 'provisioned');
    const v2 = await writeCertificateFiles(dir, b, clock);
    const v3 = await writeCertificateFiles(dir, a, clock);
    assert.equal(await readlink(join(dir, DATA_LINK)), v3);
    assert.match(v1, /^\.\.2026-01-02T03-04-05-006Z-[0-9a-f]{8}$/, 'stamped with the clock');
    for (const name of ['cert-chain.pem', 'key.pem', 'root-cert.pem']) {
      assert.ok((await lstat(join(dir, name))).isSymbolicLink(), name);
      assert.equal(await readlink(join(dir, name)), join(DATA_LINK, name));
    }
    assert.equal((await stat(join(dir, 'key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'cert-chain.pem'))).mode & 0o777, 0o644);
    const versions = (await readdir(dir)).filter((e) => e.startsWith('..') && e !== DATA_LINK);
    assert.deepEqual(versions.sort(), [v2, v3].sort(), `v1 ${v1} pruned, previous kept`);
    assert.equal(await readFile(join(dir, 'key.pem'), 'utf8'), a.keyPem);
    const read = await readCertificateFiles(dir);
    assert.deepEqual(read, a);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('reading: plain files are read by name; an empty directory reads as nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'castellan-atomic-'));
  try {
    assert.equal(await readCertificateFiles(dir), undefined);
    assert.equal(await readCertificateFiles(join(dir, 'missing')), undefined);
    const a = await makePair(3);
    await writeFile(join(dir, 'cert-chain.pem'), a.certChainPem);
    await writeFile(join(dir, 'key.pem'), a.keyPem);
    await writeFile(join(dir, 'root-cert.pem'), a.rootCertPem);
    assert.deepEqual(await readCertificateFiles(dir), a);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a write into an unusable directory is a typed error naming it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'castellan-atomic-'));
  try {
    const file = join(dir, 'not-a-dir');
    await writeFile(file, '');
    await assert.rejects(
      writeCertificateFiles(join(file, 'sub'), await makePair(4), clock),
      (e: unknown) => {
        assert.equal((e as { kind?: string }).kind, 'internal');
        assert.match(
          (e as Error).message,
          /not-a-dir\/sub: cannot write certificate files: ENOTDIR/,
        );
        return true;
      },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// Found by a new user (2026-12-07): `castellan request --out` pointed at a cacerts folder replaced
// its cert-chain.pem and root-cert.pem with links into ..data, and that CA no longer loaded; a
// key.pem of the user's own was replaced too. Files castellan did not write are now refused.
test('files castellan did not write are never written over; its own, and a provisioned set for the agent, are', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'castellan-atomic-'));
  const refused = (p: Promise<unknown>, message: RegExp) =>
    assert.rejects(p, (e: unknown) => {
      assert.equal((e as { kind?: string }).kind, 'invalid-argument');
      assert.match((e as Error).message, message);
      return true;
    });
  try {
    // A cacerts folder: refused for request and agent alike, and left as it was.
    const cacerts = join(dir, 'cacerts');
    await mkdir(cacerts);
    for (const f of ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']) {
      await writeFile(join(cacerts, f), `${f}\n`);
    }
    const pair = await makePair(5);
    const caRefusal =
      /^.*cacerts: holds a CA \(ca-key\.pem, ca-cert\.pem\): certificates are never written into a CA's folder \(choose another folder\)$/;
    await refused(writeCertificateFiles(cacerts, pair, clock), caRefusal);
    await refused(checkCertificateFolder(cacerts, 'provisioned'), caRefusal);
    assert.deepEqual((await readdir(cacerts)).sort(), [
      'ca-cert.pem',
      'ca-key.pem',
      'cert-chain.pem',
      'root-cert.pem',
    ]);
    assert.equal(await readFile(join(cacerts, 'root-cert.pem'), 'utf8'), 'root-cert.pem\n');

    // A CA folder in Kubernetes' own layout (a copy of a mounted Secret): its `..data` links
    // look like ours, and a second write would have pruned the version holding its key.
    const projected = join(dir, 'projected');
    await mkdir(join(projected, '..2026_01_01'), { recursive: true });
    for (const f of ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']) {
      await writeFile(join(projected, '..2026_01_01', f), `${f}\n`);
    }
    await symlink('..2026_01_01', join(projected, DATA_LINK));
    for (const f of ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']) {
      await symlink(join(DATA_LINK, f), join(projected, f));
    }
    await refused(writeCertificateFiles(projected, pair, clock, 'provisioned'), /holds a CA/);
    assert.equal(await readFile(join(projected, 'ca-key.pem'), 'utf8'), 'ca-key.pem\n');

    // A key of the user's own: refused for request, kept.
    const own = join(dir, 'own');
    await mkdir(own);
    await writeFile(join(own, 'key.pem'), 'mine\n');
    await refused(
      writeCertificateFiles(own, pair, clock),
      /own: would replace key\.pem, which castellan did not write here: refusing/,
    );
    assert.equal(await readFile(join(own, 'key.pem'), 'utf8'), 'mine\n');

    // A workload set put there by hand: the agent (renewing over mTLS) may replace it.
    const provisioned = join(dir, 'provisioned');
    await mkdir(provisioned);
    const old = await makePair(6);
    await writeFile(join(provisioned, 'cert-chain.pem'), old.certChainPem);
    await writeFile(join(provisioned, 'key.pem'), old.keyPem);
    await writeFile(join(provisioned, 'root-cert.pem'), old.rootCertPem);
    await refused(writeCertificateFiles(provisioned, pair, clock), /would replace cert-chain/);
    await writeCertificateFiles(provisioned, pair, clock, 'provisioned');
    assert.deepEqual(await readCertificateFiles(provisioned), pair);

    // What castellan wrote itself: written over by either, again and again.
    await writeCertificateFiles(provisioned, old, clock);
    await checkCertificateFolder(provisioned, 'ours');
    assert.deepEqual(await readCertificateFiles(provisioned), old);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
