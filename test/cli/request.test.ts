// `castellan request` against the real `castellan serve`. Needs a build (dist/).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { dataFile, runCli, startServe, type ServeProcess } from '../agent/support/serve-process.js';
import { castellanInProcess } from '../support/cli-in-process.js';

let dir: string;
let serve: ServeProcess;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'castellan-request-'));
  serve = await startServe(join(dir, 'data'));
  await writeFile(join(dir, 'token'), await serve.token('shop', 'cart'));
  await writeFile(join(dir, 'bad-token'), 'not.a.jwt');
});
after(async () => {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when before() failed
  await serve?.stop();
  await rm(dir, { recursive: true, force: true });
});

const base = () => [
  'request',
  '--addr',
  serve.address,
  '--root-cert',
  dataFile(serve, 'root-cert.pem'),
];

test('writes a chain openssl verifies (-x509_strict), a 0600 key, and the root; the SPIFFE ID is the caller', async () => {
  for (const keyType of ['ec-p256', 'rsa-2048']) {
    const out = join(dir, `out-${keyType}`);
    const r = await runCli([
      ...base(),
      '--token-file',
      join(dir, 'token'),
      '--out',
      out,
      '--key-type',
      keyType,
      '--ttl',
      '2h',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart/);
    const chain = join(out, 'cert-chain.pem');
    const verified = execFileSync(
      'openssl',
      ['verify', '-x509_strict', '-CAfile', join(out, 'root-cert.pem'), '-untrusted', chain, chain],
      { encoding: 'utf8' },
    );
    assert.match(verified, /: OK/);
    assert.equal((await stat(join(out, 'key.pem'))).mode & 0o777, 0o600);
    const leaf = new X509Certificate(await readFile(chain, 'utf8'));
    assert.ok(leaf.checkPrivateKey(createPrivateKey(await readFile(join(out, 'key.pem'), 'utf8'))));
    assert.equal(
      createPrivateKey(await readFile(join(out, 'key.pem'), 'utf8')).asymmetricKeyType,
      keyType.startsWith('ec') ? 'ec' : 'rsa',
    );
    const hours = (Date.parse(leaf.validTo) - Date.now()) / 3_600_000;
    assert.ok(hours > 1.9 && hours <= 2, `${hours}`);
    assert.equal(
      await readFile(join(out, 'root-cert.pem'), 'utf8'),
      await readFile(dataFile(serve, 'root-cert.pem'), 'utf8'),
    );
  }
});

test('a bad token: exit 1 with UNAUTHENTICATED, nothing written', async () => {
  const out = join(dir, 'out-bad');
  const r = await runCli([...base(), '--token-file', join(dir, 'bad-token'), '--out', out]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /castellan: CreateCertificate at 127\.0\.0\.1:\d+ failed: UNAUTHENTICATED/,
  );
  await assert.rejects(stat(out));
});

test('flags are checked before any call: missing, unreadable, malformed', async () => {
  // The unreadable root as the spawned command (its exit code and stderr); the other cases
  // through the CLI's main() in this process (a process start costs ~0.7 s of CPU).
  const missing = await castellanInProcess([
    'request',
    '--addr',
    serve.address,
    '--root-cert',
    'x',
    '--out',
    'y',
  ]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /required option '--token-file <file>' not specified/);
  const noRoot = await runCli([
    'request',
    '--addr',
    serve.address,
    '--root-cert',
    join(dir, 'nope.pem'),
    '--token-file',
    join(dir, 'token'),
    '--out',
    join(dir, 'o'),
  ]);
  assert.equal(noRoot.code, 2);
  assert.match(noRoot.stderr, /--root-cert: cannot read .*nope\.pem: ENOENT/);
  const badAddr = await castellanInProcess([
    ...base().slice(0, 1),
    '--addr',
    'nohost',
    '--root-cert',
    'x',
    '--token-file',
    'y',
    '--out',
    'z',
  ]);
  assert.equal(badAddr.code, 2);
  assert.match(badAddr.stderr, /"nohost" is not HOST:PORT/);
  const badKey = await castellanInProcess([
    ...base(),
    '--token-file',
    join(dir, 'token'),
    '--out',
    'z',
    '--key-type',
    'rsa-1024',
  ]);
  assert.match(badKey.stderr, /--key-type.*rsa-1024.*Allowed choices are ec-p256, rsa-2048/);
  const badTtl = await castellanInProcess([
    ...base(),
    '--token-file',
    join(dir, 'token'),
    '--out',
    'z',
    '--ttl',
    'soon',
  ]);
  assert.match(badTtl.stderr, /invalid duration "soon"/);
});

test('a TTL above the server maximum is INVALID_ARGUMENT', async () => {
  const r = await runCli([
    ...base(),
    '--token-file',
    join(dir, 'token'),
    '--out',
    join(dir, 'o-ttl'),
    '--ttl',
    '100d',
  ]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /INVALID_ARGUMENT/);
});
