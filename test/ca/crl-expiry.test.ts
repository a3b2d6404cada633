// followCrlExpiry: the warning for an expired CRL (still published), on a manual clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bundleFromCacerts } from '../../src/ca/cacerts-layout.js';
import { followCrlExpiry } from '../../src/ca/crl-expiry.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import type { CaCrl } from '../../src/pki/crl.js';
import { crlOf, makeCacerts } from '../support/ca-hierarchy.js';
import { ManualClock } from '../support/manual-clock.js';

const HOUR = 3_600_000;

test('reported once when loaded expired, once when a loaded CRL expires, never for a fresh one', async () => {
  const clock = new ManualClock(Date.now());
  const { root, ca, files } = await makeCacerts();
  const withCrl = async (nextUpdate: Date): Promise<Map<string, string>> => {
    const thisUpdate = new Date(clock.now() - 2 * HOUR);
    return new Map([
      ...files,
      [
        'ca-crl.pem',
        (await crlOf(ca, { thisUpdate, nextUpdate })) + (await crlOf(root, { thisUpdate })),
      ],
    ]);
  };
  const load = (f: Map<string, string>) => {
    const b = bundleFromCacerts(f, { source: 'test' }, clock);
    assert.ok(b);
    return b;
  };
  const state = new SwappableCaState();
  const reported: CaCrl[] = [];
  const stop = followCrlExpiry(state, clock, (crl) => reported.push(crl));

  const expired = load(await withCrl(new Date(clock.now() - HOUR)));
  state.swap(expired);
  assert.equal(reported.length, 1);
  assert.equal(reported[0]?.pem, expired.crl?.pem);
  state.swap(expired); // the same CRL again (another swap of the same set): not again
  assert.equal(reported.length, 1);

  // Loaded fresh, expires an hour later: reported when nextUpdate passes, not before.
  const soon = load(await withCrl(new Date(clock.now() + HOUR)));
  state.swap(soon);
  await clock.advance(HOUR - 1000);
  assert.equal(reported.length, 1);
  await clock.advance(2000);
  assert.equal(reported.length, 2);
  assert.equal(reported[1]?.pem, soon.crl?.pem);

  // Replaced before it expires: the old CRL's time passes silently; a CA without a CRL has none.
  const later = load(await withCrl(new Date(clock.now() + HOUR)));
  state.swap(later);
  state.swap(load(files));
  await clock.advance(2 * HOUR);
  assert.equal(reported.length, 2);

  // After stop(), nothing more.
  state.swap(load(await withCrl(new Date(clock.now() + HOUR))));
  stop();
  await clock.advance(2 * HOUR);
  assert.equal(reported.length, 2);
});
