// Spawns the built CLI (npm run build first).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { cliPath, istioSampleCerts } from '../support/paths.js';
import { makeTempDir, opensslExtensions, opensslText, opensslVerify } from '../support/openssl.js';
import { opensslSigned } from '../support/openssl-certs.js';
import { castellanInProcess } from '../support/cli-in-process.js';

const tmp = makeTempDir();
after(() => tmp.remove());

function castellan(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
/**
 * The same command through the CLI's main() in this process: for setup steps and the many input
 * checks, each of which would cost a process start. Every command keeps a spawned case here
 * (castellan above) that proves the real process's exit code and output.
 */
const inProcess = (...args: string[]) => castellanInProcess(args);
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

test('ca root and ca intermediate never replace a key or cacerts file already in --out (exit 2, nothing written)', async () => {
  const rootDir = join(tmp.dir, 'no-replace-root');
  const out = join(tmp.dir, 'no-replace-cacerts');
  assert.equal(castellan('ca', 'root', '--out', rootDir).code, 0);
  const rootKey = read(rootDir, 'root-key.pem');
  const again = castellan('ca', 'root', '--out', rootDir, '--key-type', 'ec-p256');
  assert.equal(again.code, 2);
  assert.match(
    again.stderr,
    /^castellan: \S*no-replace-root: ca root would replace root-key\.pem, root-cert\.pem here: refusing/,
  );
  assert.equal(read(rootDir, 'root-key.pem'), rootKey, 'the root key is untouched');

  assert.equal(
    (await inProcess('ca', 'intermediate', '--root-dir', rootDir, '--out', out)).code,
    0,
  );
  const before = Object.fromEntries(
    ['ca-key.pem', 'ca-cert.pem', 'cert-chain.pem', 'root-cert.pem'].map((f) => [f, read(out, f)]),
  );
  const r = await inProcess('ca', 'intermediate', '--root-dir', rootDir, '--out', out);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /ca intermediate would replace ca-cert\.pem, ca-key\.pem, cert-chain\.pem, root-cert\.pem here/,
  );
  for (const [f, text] of Object.entries(before)) assert.equal(read(out, f), text, f);

  // A CRL (or key URI) left from an earlier intermediate would not belong to a new one.
  const crlOnly = join(tmp.dir, 'crl-only');
  mkdirSync(crlOnly);
  writeFileSync(join(crlOnly, 'ca-crl.pem'), 'old');
  const c = await inProcess('ca', 'intermediate', '--root-dir', rootDir, '--out', crlOnly);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /crl-only: ca intermediate would replace ca-crl\.pem here/);
  assert.equal(existsSync(join(crlOnly, 'ca-key.pem')), false, 'no key made');

  // A kubernetes.io/tls set (tls.crt wins when served): the new files would never be used.
  const tlsSet = join(tmp.dir, 'tls-set');
  mkdirSync(tlsSet);
  writeFileSync(join(tlsSet, 'tls.crt'), 'old');
  const t = await inProcess('ca', 'intermediate', '--root-dir', rootDir, '--out', tlsSet);
  assert.equal(t.code, 2);
  assert.match(t.stderr, /ca intermediate would replace tls\.crt here/);
});

test('ca check: one-line errors naming the file, non-zero exit', async () => {
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
  r = await inProcess('ca', 'check', '--cacerts-dir', partial);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /missing ca-key\.pem, cert-chain\.pem, root-cert\.pem/);

  r = await inProcess('ca', 'check', '--cacerts-dir', istioSampleCerts);
  assert.equal(r.code, 0, r.stderr);
});

test('ca inspect: text and json', async () => {
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
  r = await inProcess('ca', 'inspect', join(istioSampleCerts, 'root-cert.pem'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /subject: .*CN=Root CA/);
  assert.match(r.stdout, /sha256Fingerprint: ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
});

test('bad flag values are refused', async () => {
  let r = castellan('ca', 'root', '--out', join(tmp.dir, 'x'), '--ttl', 'forever');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /invalid duration "forever"/);
  r = await inProcess('ca', 'root', '--out', join(tmp.dir, 'x'), '--key-type', 'dsa');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /"dsa" is not one of/);
  // RFC 5280's DirectoryString is SIZE (1..ub): `--org ''` wrote a zero-length O= (found by a
  // new user, 2026-12-07); its upper bound is 64, a locality's 128.
  for (const [args, message] of [
    [['--org', ''], /an organization must not be empty/],
    [
      ['--org', 'x'.repeat(65)],
      /an organization "x+" is 65 characters long; RFC 5280 allows at most 64/,
    ],
    [['--cn', ' '], /a common name must not be empty/],
  ] as const) {
    r = await inProcess('ca', 'root', '--out', join(tmp.dir, 'x'), ...args);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
  }
  assert.equal(existsSync(join(tmp.dir, 'x')), false, 'nothing made');
  // A root folder that is not there: the file named, in words (it was Node's raw ENOENT text).
  r = await inProcess(
    'ca',
    'intermediate',
    '--root-dir',
    join(tmp.dir, 'none'),
    '--out',
    join(tmp.dir, 'y'),
  );
  assert.equal(r.code, 2);
  assert.equal(r.stderr, `castellan: ${join(tmp.dir, 'none', 'root-cert.pem')}: no such file\n`);
});

// A new user's 0644 ca-key.pem passed `ca check` without a word. Warned, not refused: a Secret
// mounted in a pod is 0644 unless its defaultMode says otherwise.
test('ca check and ca intermediate warn about a private key others may read', async () => {
  const rootDir = join(tmp.dir, 'perm-root');
  const caDir = join(tmp.dir, 'perm-ca');
  assert.equal((await inProcess('ca', 'root', '--out', rootDir, '--key-type', 'ec-p256')).code, 0);
  chmodSync(join(rootDir, 'root-key.pem'), 0o644);
  let r = await inProcess('ca', 'intermediate', '--root-dir', rootDir, '--out', caDir);
  assert.equal(r.code, 0, r.stderr);
  const rootKey = join(rootDir, 'root-key.pem');
  assert.equal(
    r.stderr,
    `castellan: warning: ${rootKey} is readable by every user (mode 0644): chmod 600 ${rootKey}\n`,
  );
  r = await inProcess('ca', 'check', '--cacerts-dir', caDir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', 'ca intermediate wrote its key 0600');
  chmodSync(join(caDir, 'ca-key.pem'), 0o640);
  r = await inProcess('ca', 'check', '--cacerts-dir', caDir);
  assert.equal(r.code, 0, 'a warning, not a failure');
  assert.match(r.stdout, /^OK: /);
  assert.match(r.stderr, /ca-key\.pem is readable by its group \(mode 0640\): chmod 600 /);
});

// Istio's alt sample intermediate ends 49 s after its root: accepted (Istio loads it), but said.
test('ca check warns about a CA certificate that outlives its root', async () => {
  const dir = join(tmp.dir, 'alt-set');
  mkdirSync(dir);
  for (const [from, to] of [
    ['ca-cert-alt.pem', 'ca-cert.pem'],
    ['ca-key-alt.pem', 'ca-key.pem'],
    ['cert-chain-alt.pem', 'cert-chain.pem'],
    ['root-cert-alt.pem', 'root-cert.pem'],
  ]) {
    copyFileSync(join(istioSampleCerts, from!), join(dir, to!));
  }
  chmodSync(join(dir, 'ca-key.pem'), 0o600);
  const r = await inProcess('ca', 'check', '--cacerts-dir', dir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stderr,
    'castellan: warning: "O=Istio, CN=Intermediate CA, L=cluster1" expires on 2033-12-08T16:25:25.000Z, after its root (2033-12-08T16:24:36.000Z): what it signs after the root\'s end will not verify\n',
  );
  // Old and new roots of one subject in root-cert.pem (a rotation): the chain's root is the one
  // that signed it, not the first of that name (found in review: a false warning).
  const oldRoot = join(tmp.dir, 'rot-old');
  const newRoot = join(tmp.dir, 'rot-new');
  const rotated = join(tmp.dir, 'rot-ca');
  for (const [dirName, ttl] of [
    [oldRoot, '100h'],
    [newRoot, '1000h'],
  ] as const) {
    assert.equal(
      (await inProcess('ca', 'root', '--out', dirName, '--key-type', 'ec-p256', '--ttl', ttl)).code,
      0,
    );
  }
  assert.equal(
    (
      await inProcess(
        'ca',
        'intermediate',
        '--root-dir',
        newRoot,
        '--out',
        rotated,
        '--ttl',
        '500h',
      )
    ).code,
    0,
  );
  writeFileSync(
    join(rotated, 'root-cert.pem'),
    read(oldRoot, 'root-cert.pem') + read(newRoot, 'root-cert.pem'),
  );
  const both = await inProcess('ca', 'check', '--cacerts-dir', rotated);
  assert.equal(both.code, 0, both.stderr);
  assert.equal(both.stderr, '');
});

test('ca root makes --out 0700 whatever the umask; ca intermediate says when the root cuts its --ttl short', async () => {
  const rootDir = join(tmp.dir, 'umask-root');
  const previous = process.umask(0);
  try {
    assert.equal(
      (await inProcess('ca', 'root', '--out', rootDir, '--key-type', 'ec-p256', '--ttl', '48h'))
        .code,
      0,
    );
  } finally {
    process.umask(previous);
  }
  assert.equal(statSync(rootDir).mode & 0o777, 0o700);
  const out = join(tmp.dir, 'umask-ca');
  const r = await inProcess(
    'ca',
    'intermediate',
    '--root-dir',
    rootDir,
    '--out',
    out,
    '--ttl',
    '72h',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(statSync(out).mode & 0o777, 0o700);
  assert.match(
    r.stderr,
    /^castellan: note: --ttl would end on \S+, after the root's notAfter: the intermediate ends with the root\n$/,
  );
  const within = await inProcess(
    'ca',
    'intermediate',
    '--root-dir',
    rootDir,
    '--out',
    join(out, 'b'),
    '--ttl',
    '24h',
  );
  assert.equal(within.stderr, '', 'nothing to say when --ttl fits');
});

/** A root dir and a cacerts dir made by the CLI, and a leaf the CA issued (made with openssl). */
async function crlSetup(name: string): Promise<{ rootDir: string; caDir: string; work: string }> {
  const rootDir = join(tmp.dir, `${name}-root`);
  const caDir = join(tmp.dir, `${name}-ca`);
  const work = join(tmp.dir, `${name}-work`);
  mkdirSync(work);
  assert.equal((await inProcess('ca', 'root', '--out', rootDir, '--key-type', 'ec-p256')).code, 0);
  assert.equal(
    (await inProcess('ca', 'intermediate', '--root-dir', rootDir, '--out', caDir)).code,
    0,
  );
  copyFileSync(join(caDir, 'ca-cert.pem'), join(work, 'ca.pem'));
  copyFileSync(join(caDir, 'ca-key.pem'), join(work, 'ca.key'));
  for (const [leaf, serial] of [
    ['revoked', 4097],
    ['kept', 4098],
  ] as const) {
    opensslSigned(work, leaf, {
      subject: '/O=test',
      signer: 'ca',
      serial,
      extensions:
        'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=URI:spiffe://cluster.local/ns/default/sa/default\n',
    });
  }
  return { rootDir, caDir, work };
}

/** `openssl verify -crl_check_all` of a leaf against the folder's chain and its ca-crl.pem. */
function verifyWithCrl(caDir: string, leaf: string): { ok: boolean; output: string } {
  const r = spawnSync(
    'openssl',
    [
      'verify',
      '-crl_check_all',
      '-CAfile',
      join(caDir, 'root-cert.pem'),
      '-untrusted',
      join(caDir, 'ca-cert.pem'),
      '-CRLfile',
      join(caDir, 'ca-crl.pem'),
      leaf,
    ],
    { encoding: 'utf8' },
  );
  return { ok: r.status === 0, output: r.stdout + r.stderr };
}

test('ca crl: creates ca-crl.pem that openssl verifies; a revoked leaf fails openssl verify -crl_check', async () => {
  const { rootDir, caDir, work } = await crlSetup('crl1');
  const r = castellan(
    'ca',
    'crl',
    '--ca-dir',
    caDir,
    '--root-dir',
    rootDir,
    '--revoke',
    join(work, 'revoked.pem'),
    '--next-update',
    '7d',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /CN=Intermediate CA, L=cluster1": CRL number 1, 1 revoked \(added 1001\)/);
  assert.match(r.stdout, /CN=Root CA": CRL number 1, 0 revoked/);
  const crlFile = join(caDir, 'ca-crl.pem');
  // The folder's CA CRL comes first: `openssl crl` reads the first one.
  const v = spawnSync(
    'openssl',
    ['crl', '-in', crlFile, '-CAfile', join(caDir, 'ca-cert.pem'), '-noout', '-verify'],
    { encoding: 'utf8' },
  );
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stderr + v.stdout, /verify OK/);
  const crlText = spawnSync('openssl', ['crl', '-in', crlFile, '-noout', '-text'], {
    encoding: 'utf8',
  }).stdout;
  assert.match(crlText, /X509v3 CRL Number: \s*1\n/);
  assert.match(crlText, /X509v3 Authority Key Identifier/);
  assert.match(crlText, /Serial Number: 1001\n/);
  const days =
    (Date.parse(/Next Update: (.*)\n/.exec(crlText)?.[1] ?? '') - Date.now()) / 86_400_000;
  assert.ok(days > 6.9 && days <= 7, `nextUpdate in ${days} days`);

  const revoked = verifyWithCrl(caDir, join(work, 'revoked.pem'));
  assert.equal(revoked.ok, false, revoked.output);
  assert.match(revoked.output, /certificate revoked/);
  const kept = verifyWithCrl(caDir, join(work, 'kept.pem'));
  assert.ok(kept.ok, kept.output);

  // ca check reports the CRL and accepts it.
  const c = await inProcess('ca', 'check', '--cacerts-dir', caDir);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /crl: .*ca-crl\.pem verified: 2 CRL\(s\), 1 revoked in all/);
  assert.match(
    c.stdout,
    /crl: "O=Castellan, CN=Intermediate CA, L=cluster1" number 1, 1 revoked, .*nextUpdate \S+ \(in 16[78]h/,
  );
});

test('ca crl: extending keeps old entries, increments the number and keeps the root CRL without its key', async () => {
  const { rootDir, caDir, work } = await crlSetup('crl2');
  assert.equal(
    (await inProcess('ca', 'crl', '--ca-dir', caDir, '--root-dir', rootDir, '--revoke', '0A:BC'))
      .code,
    0,
  );
  const r = await inProcess('ca', 'crl', '--ca-dir', caDir, '--revoke', join(work, 'revoked.pem'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /CRL number 2, 2 revoked \(added 1001\)/);
  assert.match(r.stdout, /"O=Castellan, CN=Root CA": kept as it was \(CRL number 1/);
  const crlText = spawnSync(
    'openssl',
    ['crl', '-in', join(caDir, 'ca-crl.pem'), '-noout', '-text'],
    {
      encoding: 'utf8',
    },
  ).stdout;
  assert.match(crlText, /X509v3 CRL Number: \s*2\n/);
  assert.match(crlText, /Serial Number: 0ABC\n[\s\S]*Serial Number: 1001\n/);
  assert.equal(verifyWithCrl(caDir, join(work, 'revoked.pem')).ok, false);
  assert.ok(verifyWithCrl(caDir, join(work, 'kept.pem')).ok);
});

test('ca crl: bad inputs give one clear error and write nothing', async () => {
  const { rootDir, caDir, work } = await crlSetup('crl3');
  const crlFile = join(caDir, 'ca-crl.pem');
  const refused = async (pattern: RegExp, ...args: string[]): Promise<void> => {
    const r = await inProcess('ca', 'crl', ...args);
    assert.notEqual(r.code, 0, r.stdout);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, pattern);
    assert.equal(existsSync(crlFile), false, 'nothing written');
  };
  await refused(
    /the CRL's next update would be .*after 9999-12-31T23:59:59Z/,
    '--ca-dir',
    caDir,
    '--root-dir',
    rootDir,
    '--next-update',
    '3000000d',
  );
  await refused(
    /"xyz!" is not a certificate serial/,
    '--ca-dir',
    caDir,
    '--root-dir',
    rootDir,
    '--revoke',
    'xyz!',
  );
  await refused(
    /no such certificate file/,
    '--ca-dir',
    caDir,
    '--root-dir',
    rootDir,
    '--revoke',
    join(work, 'missing.pem'),
  );
  await refused(
    /revoked\.key: expected PEM "CERTIFICATE" blocks, found "PRIVATE KEY"/,
    '--ca-dir',
    caDir,
    '--root-dir',
    rootDir,
    '--revoke',
    join(work, 'revoked.key'),
  );
  await refused(
    /no CRL for "O=Castellan, CN=Root CA" and no key to sign one: .*--root-dir/,
    '--ca-dir',
    caDir,
  );
  const usage = await inProcess('ca', 'crl', '--ca-dir', caDir, '--next-update', 'soon');
  assert.notEqual(usage.code, 0);
  assert.match(usage.stderr, /invalid duration "soon"/);
  assert.equal(existsSync(crlFile), false);
  // A folder without its key (the spawned command: its exit code and stderr).
  const keyless = join(tmp.dir, 'crl3-keyless');
  mkdirSync(keyless);
  for (const f of ['ca-cert.pem', 'cert-chain.pem', 'root-cert.pem']) {
    copyFileSync(join(caDir, f), join(keyless, f));
  }
  const r = castellan('ca', 'crl', '--ca-dir', keyless, '--root-dir', rootDir);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /incomplete CA \(Istio cacerts layout\): missing ca-key\.pem/);
  assert.equal(existsSync(join(keyless, 'ca-crl.pem')), false);
  // A certificate another CA issued.
  const otherRoot = join(tmp.dir, 'crl3-other');
  assert.equal(
    (await inProcess('ca', 'root', '--out', otherRoot, '--key-type', 'ec-p256')).code,
    0,
  );
  await refused(
    /root-cert\.pem: the certificate "O=Castellan, CN=Root CA" was not issued by any CA of this folder/,
    '--ca-dir',
    caDir,
    '--root-dir',
    rootDir,
    '--revoke',
    join(otherRoot, 'root-cert.pem'),
  );
  await refused(/is not the root of this CA's chain/, '--ca-dir', caDir, '--root-dir', otherRoot);
});

test('ca check: fails on a CRL that expired, expires within --crl-warn-within, or does not verify', async () => {
  const { rootDir, caDir } = await crlSetup('crl4');
  assert.equal(
    (await inProcess('ca', 'crl', '--ca-dir', caDir, '--root-dir', rootDir, '--next-update', '12h'))
      .code,
    0,
  );
  let r = await inProcess('ca', 'check', '--cacerts-dir', caDir);
  assert.equal(r.code, 1);
  // Not "OK" on stdout when the check fails (a new operator's cron job read "OK"), but the
  // summary is still printed.
  assert.match(
    r.stdout,
    /^NOT OK: \S+ is a usable CA, but its ca-crl\.pem is due\nsigning certificate: /,
  );
  // The root's CRL is due too: only the root's key renews it, so the advice names --root-dir
  // (it advised --ca-dir alone, which keeps the root's CRL as it was).
  assert.match(
    r.stderr,
    /ca-crl\.pem: the CRL expires on \S+, within 24h: re-sign it with castellan ca crl --ca-dir \S+ --root-dir <the folder of "O=Castellan, CN=Root CA", holding root-cert\.pem and root-key\.pem>/,
  );
  r = await inProcess('ca', 'check', '--cacerts-dir', caDir, '--crl-warn-within', '6h');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^OK: /);
  // Only the intermediate's CRL due: --ca-dir alone renews it.
  for (const args of [
    ['--root-dir', rootDir, '--next-update', '30d'],
    ['--next-update', '12h'],
  ]) {
    assert.equal((await inProcess('ca', 'crl', '--ca-dir', caDir, ...args)).code, 0);
  }
  r = await inProcess('ca', 'check', '--cacerts-dir', caDir);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /re-sign it with castellan ca crl --ca-dir \S+\n?$/);
  assert.doesNotMatch(r.stderr, /--root-dir/);

  // nextUpdate in the past: openssl makes one (castellan refuses to write a CRL born expired).
  const crlFile = join(caDir, 'ca-crl.pem');
  const rootCrl = read(crlFile).split(/(?=-----BEGIN X509 CRL-----)/)[1] ?? '';
  const expired = opensslExpiredCrl(caDir);
  writeFileSync(crlFile, expired + rootCrl);
  r = await inProcess('ca', 'check', '--cacerts-dir', caDir);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /EXPIRED/);
  assert.match(r.stderr, /ca-crl\.pem: the CRL expired on /);

  // Signed by another CA: refused like any bad file.
  writeFileSync(crlFile, rootCrl.replace('MII', 'MIJ'));
  r = await inProcess('ca', 'check', '--cacerts-dir', caDir);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ca-crl\.pem: /);
  assert.doesNotMatch(r.stdout, /^OK/);
});

function utcTime(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
}

/** A CRL of the folder's CA whose nextUpdate has passed, made with `openssl ca -gencrl`. */
function opensslExpiredCrl(caDir: string): string {
  const d = join(tmp.dir, `ossl-ca-${Math.random().toString(16).slice(2)}`);
  mkdirSync(d);
  writeFileSync(join(d, 'index.txt'), '');
  writeFileSync(
    join(d, 'ca.cnf'),
    `[ca]\ndefault_ca=c\n[c]\ndatabase=${join(d, 'index.txt')}\ndefault_md=sha256\ncrl_extensions=ext\n[ext]\nauthorityKeyIdentifier=keyid\n`,
  );
  const r = spawnSync(
    'openssl',
    [
      'ca',
      '-gencrl',
      '-config',
      join(d, 'ca.cnf'),
      '-cert',
      join(caDir, 'ca-cert.pem'),
      '-keyfile',
      join(caDir, 'ca-key.pem'),
      // A day-long CRL that lapsed yesterday (ASN.1 UTCTime, as openssl ca takes it).
      '-crl_lastupdate',
      utcTime(Date.now() - 2 * 86_400_000),
      '-crl_nextupdate',
      utcTime(Date.now() - 86_400_000),
    ],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('ca root refuses a CN longer than RFC 5280 allows (64 characters), before making a key', () => {
  const out = join(tmp.dir, 'long-cn');
  const cn = 'R'.repeat(65);
  const r = castellan('ca', 'root', '--out', out, '--cn', cn);
  assert.notEqual(r.code, 0);
  assert.match(
    r.stderr,
    new RegExp(`common name "${cn}" is 65 characters long; RFC 5280 allows at most 64`),
  );
  assert.equal(existsSync(out), false, 'nothing written');
});

test('ca root refuses a lifetime past 9999-12-31T23:59:59Z, the last time X.509 can express, before making a key', async () => {
  const out = join(tmp.dir, 'far-future');
  const r = await inProcess('ca', 'root', '--out', out, '--ttl', '3000000d');
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /valid until .*after 9999-12-31T23:59:59Z, the last time X\.509 can express/,
  );
  assert.equal(existsSync(join(out, 'root-key.pem')), false, 'no key written');
});
