// The root expiry gauges (src/server/metrics.ts). citadel_server_root_cert_expiry_timestamp is
// computed as istiod computes it — security/pkg/server/ca/server.go RecordCertsExpiry, through
// security/pkg/pki/util/keycertbundle.go ExtractRootCertExpiryTimestamp: the NotAfter of the
// first certificate of root-cert.pem — so istiod's dashboards and alerts read the same number.
// During a root change the trust bundle holds old and new roots and the first is not the one
// that expires first: castellan_ca_root_cert_earliest_expiry_timestamp is that one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildKeyCertBundle } from '../../src/ca/build-key-cert-bundle.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import { CaMetrics } from '../../src/server/metrics.js';
import { HOUR, testRoot, window } from '../pki/fixtures.js';
import { ManualClock } from '../support/manual-clock.js';

function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test('root expiry: the first root of the bundle as istiod reports it, and the earliest of all', async () => {
  const now = Date.UTC(2026, 0, 1);
  const clock = new ManualClock(now);
  // The signing root, first in root-cert.pem, lives 1000 h; an older root beside it 10 h.
  const current = await testRoot('ec-p256', window(now - HOUR, 1000), 'Current Root');
  const older = await testRoot('ec-p256', window(now - HOUR, 10), 'Older Root');
  const bundle = buildKeyCertBundle(
    {
      certPem: current.certPem,
      keyPem: current.keyPem,
      rootPem: current.certPem + older.certPem,
      source: 'test',
    },
    clock,
  );
  const metrics = new CaMetrics(clock);
  const before = await metrics.registry.metrics();
  for (const name of [
    'citadel_server_root_cert_expiry_timestamp',
    'castellan_ca_root_cert_earliest_expiry_timestamp',
  ]) {
    assert.equal(sample(before, name), undefined, `${name}: no sample before a CA is loaded`);
  }

  metrics.observeCa(new SwappableCaState().swap(bundle));
  const text = await metrics.registry.metrics();
  const seconds = (d: Date): number => d.getTime() / 1000;
  assert.equal(
    sample(text, 'citadel_server_root_cert_expiry_timestamp'),
    seconds(current.cert.notAfter),
  );
  assert.equal(
    sample(text, 'citadel_server_root_cert_expiry_seconds'),
    seconds(current.cert.notAfter) - now / 1000,
  );
  assert.equal(
    sample(text, 'castellan_ca_root_cert_earliest_expiry_timestamp'),
    seconds(older.cert.notAfter),
  );
  assert.ok(older.cert.notAfter < current.cert.notAfter);
});
