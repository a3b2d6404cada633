// Issue 15 item 3: a first start killed at any moment leaves a data dir the next start serves
// from, with no temporary file left behind. A child (support/start-killed-at.ts) runs the local
// runtime's start and SIGKILLs itself just before its N-th filesystem change, for every N; the
// next start must then succeed on that dir, serve one consistent set, and leave no temporaries.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { startLocalRuntime } from '../../src/cli/serve/local-runtime.js';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { removeStaleTemporaries } from '../../src/atomic-write.js';
import { loadOrCreateSelfSignedCa } from '../../src/ca/sources/self-signed.js';
import { isCastellanError } from '../../src/errors.js';
import { makeTempDir } from '../support/openssl.js';
import { projectRoot } from '../support/paths.js';

const tmp = makeTempDir();
after(() => tmp.remove());
const run = promisify(execFile);
const child = join(projectRoot, 'dist', 'test', 'reliability', 'support', 'start-killed-at.js');
const setup = join(projectRoot, 'dist', 'test', 'support', 'setup.js');

/**
 * Runs a first start on `dataDir` killed before its N-th change: whether it was killed (no
 * `changes`), else how many changes it made and the serial of the CA it served.
 */
async function startKilledAt(
  dataDir: string,
  n: number,
): Promise<{ changes?: number; serial?: string }> {
  try {
    const { stdout } = await run(process.execPath, ['--import', setup, child, dataDir, String(n)]);
    return JSON.parse(stdout) as { changes: number; serial: string };
  } catch (e) {
    const { signal } = e as { signal?: string };
    assert.equal(signal, 'SIGKILL', `the child failed otherwise: ${String(e)}`);
    return {};
  }
}

/** Names in `dir` a start leaves only while it runs. */
function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.tmp') || n.startsWith('.self-signed-ca'));
}

test('a first start killed before any one of its filesystem changes: the next start serves, one set, nothing left behind', async () => {
  const counted = join(tmp.dir, 'uninterrupted');
  const { changes } = await startKilledAt(counted, Number.MAX_SAFE_INTEGER);
  assert.ok(changes !== undefined && changes >= 6, `the start makes its changes (${changes})`);
  assert.deepEqual(leftovers(counted), []);

  const crashPoints = Array.from({ length: changes }, (_, i) => i + 1);
  const outcomes: string[] = [];
  // Four at a time: a child spends much of its life waiting on its RSA key and the disk.
  for (let i = 0; i < crashPoints.length; i += 4) {
    await Promise.all(
      crashPoints.slice(i, i + 4).map(async (n) => {
        const dataDir = join(tmp.dir, `killed-at-${n}`);
        const killed = (await startKilledAt(dataDir, n)).changes === undefined;
        assert.ok(killed, `killed before change ${n} of ${changes}`);
        const committed = join(dataDir, '.self-signed-ca.ready', 'ca-cert.pem');
        // A set committed before the kill is the one the next start must serve.
        const committedRoot = existsSync(committed) ? readFileSync(committed, 'utf8') : undefined;
        const onDiskRoot = existsSync(join(dataDir, 'ca-cert.pem'))
          ? readFileSync(join(dataDir, 'ca-cert.pem'), 'utf8')
          : undefined;
        const runtime = await startLocalRuntime(completeServeOptions({ dataDir }), {
          clock: systemClock,
          logger: silentLogger,
          env: {},
        });
        try {
          const served = runtime.caState.current()!.bundle;
          const expected = committedRoot ?? onDiskRoot;
          if (expected !== undefined) {
            assert.equal(
              served.signingCert.serialNumber,
              new X509Certificate(expected).serialNumber.toLowerCase(),
              `killed before change ${n}: the set already written is served, not replaced`,
            );
          }
          outcomes.push(`${n}:${committedRoot ? 'committed' : onDiskRoot ? 'in place' : 'none'}`);
        } finally {
          await runtime.close();
        }
        assert.deepEqual(leftovers(dataDir), [], `killed before change ${n}: nothing left`);
        assert.equal(statSync(join(dataDir, 'ca-key.pem')).mode & 0o777, 0o600);
        assert.equal(
          readFileSync(join(dataDir, 'root-cert.pem'), 'utf8'),
          readFileSync(join(dataDir, 'ca-cert.pem'), 'utf8'),
        );
      }),
    );
  }
  // The kills landed on both sides of the commit: before it (nothing kept) and after it.
  assert.ok(
    outcomes.some((o) => o.endsWith(':none')),
    outcomes.join(' '),
  );
  assert.ok(
    outcomes.some((o) => o.endsWith(':committed')),
    outcomes.join(' '),
  );
});

test('separate processes starting first on one data dir at once: every one serves the same root, and one set is left', async () => {
  // One `serve` per data dir is the contract (docs/reliability.md); a second replica on a shared
  // volume breaks it, and must not split the CA. The in-process race (test/ca/sources) covers
  // the interleavings of one event loop; these are separate processes, each with its own loop.
  const dataDir = join(tmp.dir, 'four-processes');
  const starts = await Promise.all(
    Array.from({ length: 4 }, () => startKilledAt(dataDir, Number.MAX_SAFE_INTEGER)),
  );
  const serials = new Set(starts.map((s) => s.serial));
  assert.equal(serials.size, 1, `served: ${[...serials].join(', ')}`);
  const onDisk = new X509Certificate(readFileSync(join(dataDir, 'ca-cert.pem'), 'utf8'));
  assert.equal(onDisk.serialNumber.toLowerCase(), [...serials][0]!.toLowerCase());
  assert.deepEqual(leftovers(dataDir), []);
  assert.equal(statSync(join(dataDir, 'ca-key.pem')).mode & 0o777, 0o600);
  assert.equal(
    readFileSync(join(dataDir, 'root-cert.pem'), 'utf8'),
    readFileSync(join(dataDir, 'ca-cert.pem'), 'utf8'),
  );
});

test("stale temporaries: a dead writer's are removed (a key copy among them), a live writer's kept, others untouched", async () => {
  const dir = join(tmp.dir, 'temporaries');
  mkdirSync(join(dir, '.self-signed-ca.4242.00112233aabbccdd.tmp'), { recursive: true });
  writeFileSync(join(dir, '.self-signed-ca.4242.00112233aabbccdd.tmp', 'ca-key.pem'), 'k');
  writeFileSync(join(dir, 'dev-issuer-key.pem.4242.0123456789abcdef.tmp'), 'key copy');
  writeFileSync(join(dir, 'ca-key.pem.777.fedcba9876543210.tmp'), 'being written');
  writeFileSync(join(dir, 'notes.tmp'), 'not ours');
  writeFileSync(join(dir, 'ca-cert.pem'), 'kept');
  const removed = await removeStaleTemporaries(dir, (pid) => pid === 777);
  assert.deepEqual(removed.sort(), [
    '.self-signed-ca.4242.00112233aabbccdd.tmp',
    'dev-issuer-key.pem.4242.0123456789abcdef.tmp',
  ]);
  assert.deepEqual(readdirSync(dir).sort(), [
    'ca-cert.pem',
    'ca-key.pem.777.fedcba9876543210.tmp',
    'notes.tmp',
  ]);
  assert.deepEqual(await removeStaleTemporaries(join(dir, 'absent')), []);
  // A data dir that is a file: a clear error naming it (serve prints it as `castellan: …`).
  await assert.rejects(
    removeStaleTemporaries(join(dir, 'notes.tmp')),
    (e: unknown) =>
      isCastellanError(e, 'internal') &&
      e.message.endsWith('notes.tmp: not a readable folder (ENOTDIR)'),
  );
});

test('a lone ca-key.pem an earlier version left (killed between its writes) is refused with the way out, never replaced silently', async () => {
  const dataDir = join(tmp.dir, 'lone-key');
  mkdirSync(dataDir);
  writeFileSync(join(dataDir, 'ca-key.pem'), 'whatever', { mode: 0o600 });
  await assert.rejects(
    loadOrCreateSelfSignedCa({ dataDir, trustDomain: 'cluster.local' }, systemClock),
    (e: unknown) =>
      isCastellanError(e, 'incomplete-ca') &&
      /no root of this key was ever written: remove ca-key\.pem to make a new root/.test(e.message),
  );
  assert.equal(readFileSync(join(dataDir, 'ca-key.pem'), 'utf8'), 'whatever', 'untouched');
});
