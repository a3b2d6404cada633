import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../../../src/clock.js';
import { isCastellanError } from '../../../src/errors.js';
import { bundleFromCacerts, detectLayout } from '../../../src/ca/cacerts-layout.js';
import { loadCacertsFolder } from '../../../src/ca/sources/folder.js';
import { istioSampleCerts } from '../../support/paths.js';
import { makeTempDir } from '../../support/openssl.js';

const tmp = makeTempDir();
after(() => tmp.remove());
let n = 0;
function folder(files: Record<string, string>): string {
  const dir = join(tmp.dir, `f${n++}`);
  mkdirSync(dir);
  for (const [name, from] of Object.entries(files))
    copyFileSync(join(istioSampleCerts, from), join(dir, name));
  return dir;
}
const ALT = {
  'ca-cert.pem': 'ca-cert-alt.pem',
  'ca-key.pem': 'ca-key-alt.pem',
  'cert-chain.pem': 'cert-chain-alt.pem',
  'root-cert.pem': 'root-cert-alt.pem',
};

test('Istio layout folder loads, source names the folder', async () => {
  const dir = folder(ALT);
  const b = await loadCacertsFolder(dir, systemClock);
  assert.ok(b);
  assert.equal(b.source, `cacerts-dir:${dir}`);
  assert.equal(b.signingKeyType, 'rsa-4096');
});

test('kubernetes.io/tls layout loads; tls.crt wins over Istio files', async () => {
  const dir = folder({
    'tls.crt': 'cert-chain-alt.pem',
    'tls.key': 'ca-key-alt.pem',
    'ca.crt': 'root-cert-alt.pem',
    'ca-cert.pem': 'ca-cert.pem',
    'ca-key.pem': 'ca-key.pem',
  });
  const b = await loadCacertsFolder(dir, systemClock);
  assert.ok(b);
  assert.equal(b.signingKeyType, 'rsa-4096');
  assert.equal(b.responseChainPem.length, 2);
});

test('an empty folder is "nothing plugged in"', async () => {
  assert.equal(await loadCacertsFolder(folder({}), systemClock), undefined);
});

test('a folder that does not exist is an error naming it, not "nothing plugged in"', async () => {
  const missing = join(tmp.dir, 'no-such-folder');
  await assert.rejects(
    loadCacertsFolder(missing, systemClock),
    (e: unknown) =>
      isCastellanError(e, 'invalid-argument') && e.message === `${missing}: no such folder`,
  );
});

test('a partial set is incomplete-ca naming the missing files, in both layouts', async () => {
  for (const [files, missing] of [
    [
      { 'ca-cert.pem': 'ca-cert.pem', 'ca-key.pem': 'ca-key.pem' },
      /missing cert-chain\.pem, root-cert\.pem/,
    ],
    [{ 'tls.crt': 'ca-cert.pem' }, /missing tls\.key, ca\.crt/],
    [{ 'tls.key': 'ca-key.pem' }, /missing tls\.crt, ca\.crt/],
  ] as const) {
    const dir = folder(files);
    await assert.rejects(loadCacertsFolder(dir, systemClock), (e: unknown) => {
      assert.ok(isCastellanError(e, 'incomplete-ca'), String(e));
      assert.match(e.message, missing);
      assert.ok(e.message.startsWith(dir));
      return true;
    });
  }
});

test('a bad file is refused with its path', async () => {
  const dir = folder(ALT);
  writeFileSync(join(dir, 'root-cert.pem'), 'not a certificate');
  await assert.rejects(
    loadCacertsFolder(dir, systemClock),
    (e: unknown) =>
      isCastellanError(e, 'malformed') && e.message.startsWith(join(dir, 'root-cert.pem')),
  );
});

test('the pure layout picks the same way from a map (as a Secret feeds it)', () => {
  const files = new Map(
    Object.entries(ALT).map(([k, v]) => [k, readFileSync(join(istioSampleCerts, v), 'utf8')]),
  );
  assert.equal(detectLayout(files), 'istio');
  const b = bundleFromCacerts(
    files,
    { source: 'secret:istio-system/cacerts', where: 'secret istio-system/cacerts' },
    systemClock,
  );
  assert.equal(b?.source, 'secret:istio-system/cacerts');
  assert.equal(detectLayout(new Map()), undefined);
});
