// Local mode's CaRuntime (src/cli/serve/local-runtime.ts): the plugged-in folder followed on the
// clock (stepped here, never slept on), refused updates counted, and the trust bundle file
// written at start and after every swap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import {
  KeyUriSigners,
  REPLACED_SIGNER_GRACE_MS,
  type ClosableSigner,
} from '../../src/ca/signers/key-uri-signers.js';
import { loadCacertsFolder, loadCacertsFolderRead } from '../../src/ca/sources/folder.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import { CacertsFolderWatcher, startLocalRuntime } from '../../src/cli/serve/local-runtime.js';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import { systemClock } from '../../src/clock.js';
import { CastellanError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { parsePrivateKeyPem } from '../../src/pki/keys.js';
import { keyObjectSigner } from '../../src/pki/signer.js';
import { ManualClock } from '../support/manual-clock.js';
import { istioSampleCerts } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';
import { tmp } from '../server/support/client.js';

const FILES = ['ca-cert', 'ca-key', 'cert-chain', 'root-cert'] as const;

/** Copies one of Istio's sample sets ('' = the 2018 set, '-alt', '-alt-2') into `dir`. */
function useSampleSet(dir: string, set: '' | '-alt' | '-alt-2'): void {
  mkdirSync(dir, { recursive: true });
  for (const f of FILES) {
    // -alt-2 has no root of its own: its chain ends at root-cert-alt.pem.
    const from = set === '-alt-2' && f === 'root-cert' ? 'root-cert-alt.pem' : `${f}${set}.pem`;
    copyFileSync(join(istioSampleCerts, from), join(dir, `${f}.pem`));
  }
}

/** The folder watcher as the runtime builds it, polling every 2 s, with the refusals it counts. */
function watchFolder(
  dir: string,
  caState: SwappableCaState,
  clock: ManualClock,
  extra: Partial<ConstructorParameters<typeof CacertsFolderWatcher>[0]> = {},
): { watcher: CacertsFolderWatcher; refused: string[] } {
  const refused: string[] = [];
  const watcher = new CacertsFolderWatcher({
    dir,
    caState,
    clock,
    intervalMs: 2000,
    logger: silentLogger,
    onRefused: (source) => refused.push(source),
    ...extra,
  });
  return { watcher, refused };
}

const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

test('the plugged-in folder: a broken set is refused and counted, a good one swapped, on each poll', async () => {
  const dir = join(tmp(), 'cacerts');
  useSampleSet(dir, '-alt');
  const clock = new ManualClock(Date.now());
  const caState = new SwappableCaState();
  caState.swap((await loadCacertsFolder(dir, clock))!);
  const { watcher, refused } = watchFolder(dir, caState, clock);
  await watcher.start(); // the first read: the baseline
  try {
    useSampleSet(dir, '-alt-2'); // its key does not match its certificate
    await clock.advance(1999);
    assert.deepEqual(refused, [], 'not read again before the interval');
    await clock.advance(1);
    await waitFor('the refusal', () => refused.length === 1);
    assert.deepEqual(refused, [`cacerts-dir:${dir}`]);
    assert.equal(caState.current()?.generation, 1, 'still the last good CA');
    await clock.advance(2000);
    await watcher.readNow();
    assert.equal(refused.length, 1, 'the same broken set is not refused again');

    useSampleSet(dir, '');
    await clock.advance(2000);
    const swapped = await waitFor('the swap', () => {
      const s = caState.current();
      return s?.generation === 2 ? s : undefined;
    });
    assert.equal(
      fingerprint(swapped.bundle.rootBundlePem),
      fingerprint(readFileSync(join(istioSampleCerts, 'root-cert.pem'), 'utf8')),
    );

    rmSync(join(dir, 'ca-key.pem'));
    await clock.advance(2000);
    await waitFor('the removal refused', () => refused.length === 2);
    assert.equal(caState.current()?.generation, 2);
  } finally {
    await watcher.stop();
  }
  assert.equal(clock.pending, 0, 'stopped: no timer left');
});

test("the plugged-in folder: a set replaced between the load and the watcher's first read is swapped in at that read (issue 15: load and watch share one fingerprint)", async () => {
  const dir = join(tmp(), 'cacerts');
  useSampleSet(dir, '-alt');
  const clock = new ManualClock(Date.now());
  const caState = new SwappableCaState();
  const loaded = await loadCacertsFolderRead(dir, clock);
  caState.swap(loaded.bundle!);
  // A rotation lands while serve is still starting: after the load, before the first poll.
  useSampleSet(dir, '');
  const { watcher, refused } = watchFolder(dir, caState, clock, {
    loadedFingerprint: loaded.fingerprint,
  });
  try {
    await watcher.start(); // resolves once the first read is done, the swap with it
    assert.equal(caState.current()?.generation, 2, 'swapped at the first read, not left behind');
    assert.equal(
      fingerprint(caState.current()!.bundle.rootBundlePem),
      fingerprint(readFileSync(join(istioSampleCerts, 'root-cert.pem'), 'utf8')),
    );
    assert.deepEqual(refused, []);
    await clock.advance(2000);
    await watcher.readNow();
    assert.equal(caState.current()?.generation, 2, 'unchanged since: not loaded again');
  } finally {
    await watcher.stop();
  }
});

/**
 * One of Istio's sample sets with its key named by URI (`ca-key.uri` = `uri:<set>`) instead of
 * ca-key.pem, as a set whose key is in a token looks.
 */
function useSampleSetByUri(dir: string, set: '' | '-alt'): void {
  useSampleSet(dir, set);
  rmSync(join(dir, 'ca-key.pem'));
  writeFileSync(join(dir, 'ca-key.uri'), `uri:${set}\n`);
}

test('the plugged-in folder, key by URI: a token that did not answer is tried again at the next poll; the replaced signer is closed after the grace period', async () => {
  const dir = join(tmp(), 'cacerts');
  useSampleSetByUri(dir, '-alt');
  const clock = new ManualClock(Date.now());
  // A stand-in for the PKCS#11 opener (that one has its own tests against SoftHSM2): the
  // sample set's key file, or `unavailable` while the "token" is away.
  let tokenAway = false;
  const opened: string[] = [];
  const closed: string[] = [];
  const signers = new KeyUriSigners({
    clock,
    opener: (uri): Promise<ClosableSigner> => {
      if (tokenAway) {
        return Promise.reject(new CastellanError('unavailable', 'the token did not answer'));
      }
      opened.push(uri);
      const keyFile = `ca-key${uri.slice('uri:'.length)}.pem`;
      const inner = keyObjectSigner(
        parsePrivateKeyPem(readFileSync(join(istioSampleCerts, keyFile), 'utf8'), keyFile).key,
      );
      return Promise.resolve({
        keyType: inner.keyType,
        description: uri,
        sign: (data, algorithm) => inner.sign(data, algorithm),
        close: () => {
          closed.push(uri);
          return Promise.resolve();
        },
      });
    },
  });
  const keys = { keyUri: undefined, signers };
  const caState = new SwappableCaState();
  caState.swap((await loadCacertsFolder(dir, clock, keys))!);
  const { watcher, refused } = watchFolder(dir, caState, clock, { keys });
  await watcher.start();
  try {
    tokenAway = true;
    useSampleSetByUri(dir, '');
    await clock.advance(2000);
    await waitFor('the refusal', () => refused.length === 1);
    assert.equal(caState.current()?.generation, 1, 'still the last good CA');

    // The files do not change again: the next poll loads the same set once the token answers.
    tokenAway = false;
    await clock.advance(2000);
    const swapped = await waitFor('the swap', () => {
      const s = caState.current();
      return s?.generation === 2 ? s : undefined;
    });
    assert.equal(swapped.bundle.signer.description, 'uri:');
    assert.deepEqual(opened, ['uri:-alt', 'uri:']);
    assert.equal(refused.length, 1);

    // Requests that took the old snapshot may still sign with its key for a while.
    await clock.advance(REPLACED_SIGNER_GRACE_MS - 1);
    assert.deepEqual(closed, []);
    await clock.advance(1);
    await waitFor('the replaced signer closed', () => closed.length === 1);
    assert.deepEqual(closed, ['uri:-alt']);
  } finally {
    await watcher.stop();
    await signers.close();
  }
  assert.deepEqual(closed, ['uri:-alt', 'uri:'], 'closed with the runtime');
  assert.equal(clock.pending, 0, 'stopped: no timer left');
});

test('local runtime: the trust bundle file follows the CA; token hint and metrics', async () => {
  const dataDir = join(tmp(), 'data');
  const cacerts = join(tmp(), 'cacerts');
  useSampleSet(cacerts, '-alt');
  const clock = new ManualClock(Date.now());
  const options = completeServeOptions({
    dataDir,
    cacertsDir: cacerts,
    cacertsPollInterval: '1s',
  });
  const runtime = await startLocalRuntime(options, { clock, logger: silentLogger, env: {} });
  try {
    const rootFile = resolve(dataDir, 'root-cert.pem');
    assert.equal(runtime.trustBundle, rootFile);
    assert.equal(
      runtime.tokenHint,
      `npx castellan token --namespace default --service-account default --data-dir ${dataDir} > token`,
    );
    assert.deepEqual(
      runtime.tokenAuthenticators.map((a) => a.name),
      ['jwt'],
      'the development issuer',
    );
    assert.ok(!existsSync(rootFile), 'nothing published before publishTrustBundle()');
    await runtime.publishTrustBundle();
    const altRoot = readFileSync(join(istioSampleCerts, 'root-cert-alt.pem'), 'utf8');
    assert.equal(fingerprint(readFileSync(rootFile, 'utf8')), fingerprint(altRoot));

    useSampleSet(cacerts, '');
    await clock.advance(1000);
    const newRoot = readFileSync(join(istioSampleCerts, 'root-cert.pem'), 'utf8');
    await waitFor(
      'root-cert.pem rewritten',
      () =>
        existsSync(rootFile) &&
        readFileSync(rootFile, 'utf8').includes(newRoot.trim().split('\n')[1]!),
    );

    useSampleSet(cacerts, '-alt-2');
    await clock.advance(1000);
    await waitFor('the refusal on /metrics', async () =>
      /castellan_ca_load_errors_total\{source="cacerts-dir:[^"]+"\} 1/.test(
        await runtime.registry.metrics(),
      ),
    );
  } finally {
    await runtime.close();
  }
  assert.equal(clock.pending, 0, 'closed: no timer left');
});

test('local runtime without a folder: the self-signed root in the data dir', async () => {
  const dataDir = join(tmp(), 'data');
  const runtime = await startLocalRuntime(completeServeOptions({ dataDir }), {
    clock: systemClock,
    logger: silentLogger,
    env: {},
  });
  try {
    assert.match(runtime.caState.current()!.bundle.source, /^self-signed:/);
    await runtime.publishTrustBundle();
    assert.equal(
      readFileSync(join(dataDir, 'root-cert.pem'), 'utf8'),
      runtime.caState.current()!.bundle.rootBundlePem,
    );
  } finally {
    await runtime.close();
  }
});

test('local runtime: a ca-crl.pem left in the data dir by an earlier plugged-in CA goes when the CA has no CRL', async () => {
  const dataDir = join(tmp(), 'data');
  mkdirSync(dataDir, { recursive: true });
  const stale = join(dataDir, 'ca-crl.pem');
  writeFileSync(stale, '-----BEGIN X509 CRL-----\nMQ==\n-----END X509 CRL-----\n');
  const runtime = await startLocalRuntime(completeServeOptions({ dataDir }), {
    clock: systemClock,
    logger: silentLogger,
    env: {},
  });
  try {
    await runtime.publishTrustBundle();
    assert.ok(!existsSync(stale), 'removed: the CA being served has no CRL');
  } finally {
    await runtime.close();
  }
  // PILOT_ENABLE_CA_CRL=false: the file is not managed at all, as istiod leaves istio-ca-crl.
  writeFileSync(stale, 'left as it is');
  const off = await startLocalRuntime(
    completeServeOptions({ dataDir }, { PILOT_ENABLE_CA_CRL: 'false' }),
    { clock: systemClock, logger: silentLogger, env: {} },
  );
  try {
    await off.publishTrustBundle();
    assert.equal(readFileSync(stale, 'utf8'), 'left as it is');
  } finally {
    await off.close();
  }
});
