// Sets whose key is named by a URI (serve's --ca-key-uri, or the set's ca-key.uri), with a
// stand-in opener (the PKCS#11 one has its own tests against SoftHSM2), and the cache of
// signers: one per URI, replaced ones closed a grace period after the swap.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleFromCacerts, bundleFromCacertsWithKeys } from '../../../src/ca/cacerts-layout.js';
import {
  KeyUriSigners,
  REPLACED_SIGNER_GRACE_MS,
  type ClosableSigner,
} from '../../../src/ca/signers/key-uri-signers.js';
import { loadCacertsFolder } from '../../../src/ca/sources/folder.js';
import { isCastellanError } from '../../../src/errors.js';
import { keyObjectSigner } from '../../../src/pki/signer.js';
import { makeIntermediate, makeRoot, type TestCa } from '../../support/ca-hierarchy.js';
import { ManualClock } from '../../support/manual-clock.js';

let root: TestCa;
let ca: TestCa;
let other: TestCa;
const clock = new ManualClock(Date.now());

/** Signers for "URIs" `uri:ca` and `uri:other`, counting opens and closes. */
function fakeOpener(): {
  opener: (uri: string) => Promise<ClosableSigner>;
  opened: string[];
  closed: string[];
} {
  const opened: string[] = [];
  const closed: string[] = [];
  return {
    opened,
    closed,
    opener: (uri) => {
      opened.push(uri);
      const key = uri === 'uri:ca' ? ca.key : uri === 'uri:other' ? other.key : undefined;
      if (!key) return Promise.reject(new Error(`no key ${uri}`));
      const inner = keyObjectSigner(key);
      return Promise.resolve({
        keyType: inner.keyType,
        description: uri,
        sign: (d, a) => inner.sign(d, a),
        close: () => {
          closed.push(uri);
          return Promise.resolve();
        },
      });
    },
  };
}

function files(extra: Record<string, string> = {}): Map<string, string> {
  return new Map(
    Object.entries({
      'ca-cert.pem': ca.pem,
      'cert-chain.pem': ca.pem + root.pem,
      'root-cert.pem': root.pem,
      ...extra,
    }),
  );
}

async function refused(p: Promise<unknown>, kind: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isCastellanError(e, kind as never), String(e));
    assert.match((e as Error).message, message);
    return true;
  });
}

before(async () => {
  root = await makeRoot();
  ca = await makeIntermediate(root);
  other = await makeIntermediate(root, 'Other Intermediate');
});

describe('sets with a key URI', () => {
  test("the set's ca-key.uri, or --ca-key-uri: the signer is probed and used", async () => {
    const f = fakeOpener();
    const signers = new KeyUriSigners({ opener: f.opener, clock });
    const a = await bundleFromCacertsWithKeys(
      files({ 'ca-key.uri': 'uri:ca\n' }),
      { source: 'test', signers },
      clock,
    );
    assert.equal(a?.signer.description, 'uri:ca');
    const b = await bundleFromCacertsWithKeys(
      files(),
      { source: 'test', signers, keyUri: 'uri:ca' },
      clock,
    );
    assert.equal(b?.signer, a.signer);
    assert.deepEqual(f.opened, ['uri:ca'], 'one signer per URI');

    const dir = mkdtempSync(join(tmpdir(), 'castellan-keyuri-'));
    for (const [name, text] of files({ 'ca-key.uri': 'uri:ca' }))
      writeFileSync(join(dir, name), text);
    assert.equal((await loadCacertsFolder(dir, clock, { signers }))?.signer.description, 'uri:ca');
  });

  test('a key of another certificate, a key file beside a URI, two URIs: refused', async () => {
    const signers = new KeyUriSigners({ opener: fakeOpener().opener, clock });
    await refused(
      bundleFromCacertsWithKeys(
        files({ 'ca-key.uri': 'uri:other' }),
        { source: 't', signers },
        clock,
      ),
      'key-mismatch',
      /^uri:other: the key does not belong to the certificate in ca-cert\.pem/,
    );
    await refused(
      bundleFromCacertsWithKeys(
        files({ 'ca-key.uri': 'uri:ca', 'ca-key.pem': ca.keyPem }),
        { source: 't', signers, where: '/etc/cacerts' },
        clock,
      ),
      'invalid-argument',
      /^\/etc\/cacerts\/ca-key\.pem: ca-key\.pem is there, and the key is also named by URI \(ca-key\.uri\)/,
    );
    await refused(
      bundleFromCacertsWithKeys(
        files({ 'ca-key.uri': 'uri:ca' }),
        { source: 't', signers, keyUri: 'uri:ca' },
        clock,
      ),
      'invalid-argument',
      /names its key \(ca-key\.uri\) and --ca-key-uri names one too/,
    );
    await refused(
      bundleFromCacertsWithKeys(files({ 'ca-key.uri': ' \n' }), { source: 't', signers }, clock),
      'malformed',
      /ca-key\.uri: empty/,
    );
    // Without any key: the missing file named, as before.
    await refused(
      bundleFromCacertsWithKeys(files(), { source: 't', signers }, clock),
      'incomplete-ca',
      /missing ca-key\.pem/,
    );
    // The synchronous loader (Kubernetes' Secret source) cannot open a token: it says so.
    assert.throws(
      () => bundleFromCacerts(files({ 'ca-key.uri': 'uri:ca' }), { source: 't' }, clock),
      /the CA key is in a PKCS#11 token \(a key URI\), which this CA source cannot open/,
    );
    // A key URI alone is a set, not "nothing plugged in".
    await refused(
      bundleFromCacertsWithKeys(
        new Map([['ca-key.uri', 'uri:ca']]),
        { source: 't', signers },
        clock,
      ),
      'incomplete-ca',
      /key in a token\): missing ca-cert\.pem, cert-chain\.pem, root-cert\.pem/,
    );
  });
});

describe('KeyUriSigners', () => {
  test('a replaced signer is closed after the grace period; one asked for again is kept', async () => {
    const f = fakeOpener();
    const signers = new KeyUriSigners({ opener: f.opener, clock });
    const first = await signers.get('uri:ca');
    const second = await signers.get('uri:other');
    signers.retain(second);
    await clock.advance(REPLACED_SIGNER_GRACE_MS - 1);
    assert.deepEqual(f.closed, []);
    // Back to the first key before the grace ran out: it stays open, the same signer.
    assert.equal(await signers.get('uri:ca'), first);
    signers.retain(first);
    await clock.advance(REPLACED_SIGNER_GRACE_MS);
    assert.deepEqual(f.closed, ['uri:other']);
    assert.notEqual(await signers.get('uri:other'), second, 'reopened after it was closed');
    assert.deepEqual(f.opened, ['uri:ca', 'uri:other', 'uri:other']);
    await signers.close();
    assert.deepEqual(f.closed.sort(), ['uri:ca', 'uri:other', 'uri:other']);
  });

  test('a failed opening is tried again on the next load', async () => {
    const f = fakeOpener();
    const signers = new KeyUriSigners({ opener: f.opener, clock });
    await assert.rejects(signers.get('uri:missing'), /no key uri:missing/);
    await assert.rejects(signers.get('uri:missing'), /no key uri:missing/);
    assert.deepEqual(f.opened, ['uri:missing', 'uri:missing']);
  });
});
