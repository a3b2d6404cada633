import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CaSnapshot, KeyCertBundle } from '../../src/ca/key-cert-bundle.js';
import { bundleFromCacerts, CA_CRL_FILE } from '../../src/ca/cacerts-layout.js';
import { normalizeSerial } from '../../src/pki/crl.js';
import { CaMetrics } from '../../src/server/metrics.js';
import { crlOf, makeCacerts, makeLeaf } from '../support/ca-hierarchy.js';
import { ManualClock } from '../support/manual-clock.js';

const HOUR = 3_600_000;

/** observeCa reads only the bundle; the signer is not involved. */
const snapshotOf = (bundle: KeyCertBundle): CaSnapshot =>
  ({ bundle, generation: 1 }) as unknown as CaSnapshot;

async function sample(m: CaMetrics, name: string): Promise<number | undefined> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (metric?.values[0] as { value: number } | undefined)?.value;
}

test('CRL gauges follow the loaded CA: nextUpdate timestamp, revoked entries, expired; absent without a CRL', async () => {
  const { root, ca, files } = await makeCacerts();
  const clock = new ManualClock(Date.now());
  const m = new CaMetrics(clock);
  const plain = bundleFromCacerts(files, { source: 's' }, clock);
  assert.ok(plain);
  m.observeCa(snapshotOf(plain));
  assert.equal(await sample(m, 'castellan_ca_crl_next_update_timestamp'), undefined);
  assert.equal(await sample(m, 'castellan_ca_crl_revoked_certificates'), undefined);
  assert.equal(await sample(m, 'castellan_ca_crl_expired'), undefined);

  const leaves = [await makeLeaf(ca), await makeLeaf(ca)];
  const nextUpdate = new Date(Math.floor((clock.now() + 2 * HOUR) / 1000) * 1000);
  const pem =
    (await crlOf(ca, {
      nextUpdate,
      entries: leaves.map((l) => ({
        serial: normalizeSerial(l.cert.serialNumber),
        revocationDate: new Date(),
      })),
    })) + (await crlOf(root, { nextUpdate: new Date(clock.now() + 24 * HOUR) }));
  const withCrl = bundleFromCacerts(
    new Map([...files, [CA_CRL_FILE, pem]]),
    { source: 's' },
    clock,
  );
  assert.ok(withCrl?.crl);
  m.observeCa(snapshotOf(withCrl));
  assert.equal(
    await sample(m, 'castellan_ca_crl_next_update_timestamp'),
    nextUpdate.getTime() / 1000,
  );
  assert.equal(await sample(m, 'castellan_ca_crl_revoked_certificates'), 2);
  assert.equal(await sample(m, 'castellan_ca_crl_expired'), 0);
  // Read when scraped: the same CRL is expired once the clock passes its nextUpdate.
  await clock.advance(3 * HOUR);
  assert.equal(await sample(m, 'castellan_ca_crl_expired'), 1);
  // A CA without a CRL again: no samples.
  m.observeCa(snapshotOf(plain));
  assert.equal(await sample(m, 'castellan_ca_crl_revoked_certificates'), undefined);
});
