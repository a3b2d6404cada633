// Spawns the built CLI (npm run build first).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cliPath, istioSampleCerts } from '../support/paths.js';
import { makeTempDir, opensslExtensions, opensslText, opensslVerify } from '../support/openssl.js';

const tmp = makeTempDir();
after(() => tmp.remove());

function castellan(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const read = (...p: string[]): string => readFileSync(join(...p), 'utf8');

test('ca root + ca intermediate make a strict-valid cacerts folder that ca check accepts', () => {
  const rootDir = join(tmp.dir, 'root');
  const out = join(tmp.dir, 'cluster1');
  let r = castellan(
    'ca',
    'root',
    '--out',
    rootDir,
    '--key-type',
    'ec-p384',
    '--org',
    'Example',
    '--cn',
    'Example Root',
    '--ttl',
    '87600h',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(statSync(join(rootDir, 'root-key.pem')).mode & 0o777, 0o600);
  const rootPem = read(rootDir, 'root-cert.pem');
  assert.ok(opensslVerify({ root: rootPem, leaf: rootPem }).ok);
  assert.match(opensslText(rootPem), /Subject: O = Example, CN = Example Root/);
  assert.match(opensslText(rootPem), /ASN1 OID: secp384r1/);

  r = castellan(
    'ca',
    'intermediate',
    '--root-dir',
    rootDir,
    '--out',
    out,
    '--name',
    'cluster1',
    '--ttl',
    '24h',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(statSync(join(out, 'ca-key.pem')).mode & 0o777, 0o600);
  const caCert = read(out, 'ca-cert.pem');
  assert.equal(read(out, 'cert-chain.pem'), caCert + rootPem);
  assert.equal(read(out, 'root-cert.pem'), rootPem);
  const v = opensslVerify({ root: rootPem, leaf: caCert });
  assert.ok(v.ok, v.output);
  assert.deepEqual(opensslExtensions(caCert).get('X509v3 Basic Constraints'), {
    critical: true,
    value: 'CA:TRUE, pathlen:0',
  });
  assert.match(opensslText(caCert), /L = cluster1/);

  r = castellan('ca', 'check', '--cacerts-dir', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^OK: /);
  assert.match(r.stdout, /ec-p256/);
  assert.match(r.stdout, /root "O=Example, CN=Example Root"/);
});

test('ca check: one-line errors naming the file, non-zero exit', () => {
  const bad = join(tmp.dir, 'bad');
  mkdirSync(bad);
  copyFileSync(join(istioSampleCerts, 'ca-cert-alt-2.pem'), join(bad, 'ca-cert.pem'));
  copyFileSync(join(istioSampleCerts, 'ca-key-alt-2.pem'), join(bad, 'ca-key.pem'));
  copyFileSync(join(istioSampleCerts, 'cert-chain-alt-2.pem'), join(bad, 'cert-chain.pem'));
  copyFileSync(join(istioSampleCerts, 'root-cert-alt.pem'), join(bad, 'root-cert.pem'));
  let r = castellan('ca', 'check', '--cacerts-dir', bad);
  assert.notEqual(r.code, 0);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, new RegExp(`${join(bad, 'ca-key.pem')}: the private key does not belong`));

  const partial = join(tmp.dir, 'partial');
  mkdirSync(partial);
  copyFileSync(join(istioSampleCerts, 'ca-cert.pem'), join(partial, 'ca-cert.pem'));
  r = castellan('ca', 'check', '--cacerts-dir', partial);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /missing ca-key\.pem, cert-chain\.pem, root-cert\.pem/);

  r = castellan('ca', 'check', '--cacerts-dir', istioSampleCerts);
  assert.equal(r.code, 0, r.stderr);
});

test('ca inspect: text and json', () => {
  const file = join(istioSampleCerts, 'cert-chain-alt.pem');
  let r = castellan('ca', 'inspect', file, '--output', 'json');
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout) as { certificates: Record<string, unknown>[] }[];
  assert.equal(json[0]!.certificates.length, 2);
  const first = json[0]!.certificates[0]!;
  assert.match(String(first['subject']), /L=cluster1/);
  assert.deepEqual(first['sans'], ['DNS:istiod.istio-system.svc']);
  assert.equal(first['key'], 'RSA 4096');
  const fp = spawnSync(
    'openssl',
    ['x509', '-noout', '-fingerprint', '-sha256', '-in', join(istioSampleCerts, 'ca-cert-alt.pem')],
    { encoding: 'utf8' },
  ).stdout;
  assert.equal(`sha256 Fingerprint=${String(first['sha256Fingerprint'])}`, fp.trim());
  r = castellan('ca', 'inspect', join(istioSampleCerts, 'root-cert.pem'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /subject: .*CN=Root CA/);
  assert.match(r.stdout, /sha256Fingerprint: ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
});

test('bad flag values are refused', () => {
  let r = castellan('ca', 'root', '--out', join(tmp.dir, 'x'), '--ttl', 'forever');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /invalid duration "forever"/);
  r = castellan('ca', 'root', '--out', join(tmp.dir, 'x'), '--key-type', 'dsa');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /"dsa" is not one of/);
});
