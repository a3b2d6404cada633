// `castellan agent` flags and --once against the real `castellan serve`. Needs a build (dist/).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { dataFile, runCli, startServe, type ServeProcess } from '../agent/support/serve-process.js';
import { castellanInProcess } from '../support/cli-in-process.js';

let dir: string;
let serve: ServeProcess;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'castellan-agent-cli-'));
  serve = await startServe(join(dir, 'data'));
  await writeFile(join(dir, 'token'), await serve.token('jobs', 'nightly'));
  await writeFile(join(dir, 'bad-token'), 'garbage');
});
after(async () => {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when before() failed
  await serve?.stop();
  await rm(dir, { recursive: true, force: true });
});

const base = (out: string) => [
  'agent',
  '--ca-addr',
  serve.address,
  '--root-cert',
  dataFile(serve, 'root-cert.pem'),
  '--out-dir',
  out,
];

test('--once writes one certificate, runs --exec, exits 0; then renews over mTLS without a token', async () => {
  const out = join(dir, 'once');
  const marker = join(dir, 'exec-ran');
  const r = await runCli([
    ...base(out),
    '--token-file',
    join(dir, 'token'),
    '--once',
    '--ttl',
    '1h',
    '--exec',
    `echo "$CASTELLAN_CERT_DIR" > ${marker}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await readFile(marker, 'utf8')).trim(), out);
  const chain = join(out, 'cert-chain.pem');
  assert.match(
    execFileSync(
      'openssl',
      ['verify', '-CAfile', join(out, 'root-cert.pem'), '-untrusted', chain, chain],
      { encoding: 'utf8' },
    ),
    /: OK/,
  );
  const first = new X509Certificate(await readFile(chain, 'utf8'));
  assert.match(first.subjectAltName ?? '', /spiffe:\/\/cluster\.local\/ns\/jobs\/sa\/nightly/);

  // No token: the current certificate authenticates the renewal.
  const renewed = await runCli([...base(out), '--once']);
  assert.equal(renewed.code, 0, renewed.stderr);
  const second = new X509Certificate(await readFile(chain, 'utf8'));
  assert.notEqual(second.serialNumber, first.serialNumber);
  assert.equal(second.subjectAltName, first.subjectAltName);
});

test('--once with a bad token fails at once with the reason (no retries on UNAUTHENTICATED)', async () => {
  const t0 = Date.now();
  const r = await runCli([
    ...base(join(dir, 'bad')),
    '--token-file',
    join(dir, 'bad-token'),
    '--once',
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /UNAUTHENTICATED/);
  assert.ok(Date.now() - t0 < 10_000);
});

test('without a token and without a certificate to renew with, the agent says so', async () => {
  const r = await runCli([...base(join(dir, 'empty'))]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /--token-file: without --token-file the agent renews over mTLS and needs a valid certificate and key/,
  );
});

test('bad flag values are refused before anything starts', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--grace-ratio', '1.5'], /"1\.5" is not a ratio strictly between 0 and 1/],
    [['--grace-ratio', 'half'], /"half" is not a ratio/],
    [['--ttl', '-1h'], /invalid duration/],
    [['--monitoring-addr', 'localhost'], /"localhost" is not HOST:PORT/],
    [['--key-type', 'ed25519'], /Allowed choices are ec-p256, rsa-2048/],
    [['--bogus'], /unknown option '--bogus'/],
  ];
  // Through the CLI's main() in this process (a process start costs ~0.7 s of CPU); the spawned
  // command's exit code and stderr are checked with the missing root below.
  for (const [args, message] of cases) {
    const r = await castellanInProcess([...base(join(dir, 'x')), ...args]);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
  }
  const noRoot = await runCli([
    'agent',
    '--ca-addr',
    serve.address,
    '--root-cert',
    join(dir, 'none.pem'),
    '--out-dir',
    join(dir, 'x'),
    '--token-file',
    join(dir, 'token'),
  ]);
  assert.equal(noRoot.code, 2);
  assert.match(noRoot.stderr, /--root-cert: cannot read .*none\.pem: ENOENT/);
});
