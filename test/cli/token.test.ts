import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { cliPath } from '../support/paths.js';
import { castellanInProcess } from '../support/cli-in-process.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function castellan(
  args: string[],
  cwd?: string,
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', cwd });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('castellan token prints one verifiable token and reuses the issuer key', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'castellan-token-'));
  dirs.push(parent); // the whole temp dir, not only the data dir the command creates in it
  const dataDir = join(parent, 'data');
  const first = castellan([
    'token',
    '--namespace',
    'shop',
    '--service-account',
    'cart',
    '--ttl',
    '10m',
    '--data-dir',
    dataDir,
  ]);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
  // A new key is said (a new user's wrong --data-dir made one silently, and serve refused its
  // tokens as "request authenticate failure"); stdout stays the token alone.
  assert.equal(
    first.stderr,
    `castellan token: no development issuer key was in ${dataDir}, so a new one was made: only a castellan serve started with --data-dir ${dataDir} accepts this token\n`,
  );
  assert.equal(statSync(join(dataDir, 'dev-issuer-key.pem')).mode & 0o777, 0o600);
  const jwks = createLocalJWKSet(
    JSON.parse(readFileSync(join(dataDir, 'dev-issuer-jwks.json'), 'utf8')) as JSONWebKeySet,
  );
  const { payload } = await jwtVerify(first.stdout.trim(), jwks, { audience: 'istio-ca' });
  assert.equal(payload.sub, 'system:serviceaccount:shop:cart');
  assert.equal((payload.exp as number) - (payload.iat as number), 600);

  const second = castellan([
    'token',
    '--namespace',
    'a',
    '--service-account',
    'b',
    '--audience',
    'x',
    '--audience',
    'y',
    '--data-dir',
    dataDir,
  ]);
  assert.equal(second.status, 0, second.stderr);
  assert.equal(second.stderr, '', 'the key was there: nothing to say');
  const again = await jwtVerify(second.stdout.trim(), jwks); // same key: the first JWKS verifies it
  assert.deepEqual(again.payload.aud, ['x', 'y']);
  assert.equal(
    (again.payload.exp as number) - (again.payload.iat as number),
    3600,
    'default TTL 1h',
  );
});

test('the default data dir is ./.castellan', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'castellan-token-cwd-'));
  dirs.push(cwd);
  const r = castellan(['token', '--namespace', 'ns', '--service-account', 'sa'], cwd);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(statSync(join(cwd, '.castellan', 'dev-issuer-key.pem')).isFile());
});

test('bad names, durations and missing flags are refused with a message and no token', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'castellan-token-bad-'));
  dirs.push(dataDir);
  const cases: [string[], RegExp][] = [
    [
      ['--namespace', 'Bad_NS', '--service-account', 'sa'],
      /invalid namespace "Bad_NS": not a DNS label/,
    ],
    [['--namespace', 'ns', '--service-account', 'a:b'], /invalid service account "a:b"/],
    [['--namespace', 'ns', '--service-account', 'sa', '--ttl', 'soon'], /invalid duration "soon"/],
    [['--service-account', 'sa'], /required option '--namespace <ns>' not specified/],
    [['--namespace', 'ns', '--service-account', 'sa', '--bogus'], /unknown option '--bogus'/],
  ];
  // The first case as the spawned command (its exit status and output); the others through the
  // CLI's main() in this process, which spares a process start (~0.7 s of CPU) each.
  for (const [i, [args, pattern]] of cases.entries()) {
    const argv = ['token', ...args, '--data-dir', dataDir];
    const r =
      i === 0
        ? castellan(argv)
        : await castellanInProcess(argv).then(({ code, ...out }) => ({ status: code, ...out }));
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, pattern);
    assert.equal(r.stdout, '');
  }
});
