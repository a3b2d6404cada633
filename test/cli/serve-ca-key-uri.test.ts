// serve's --ca-key-uri as completeServeOptions takes it: checked before anything starts (the
// token is opened only when the CA loads), never echoing a PIN, and refused without the
// certificates of the key (a folder, or Kubernetes mode's `cacerts`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import { isCastellanError } from '../../src/errors.js';

const URI =
  'pkcs11:token=ca;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/pin';

/** The refusal's text, after checking it is an invalid-argument naming --ca-key-uri. */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.ok(isCastellanError(e, 'invalid-argument'), String(e));
    assert.equal(e.subject, '--ca-key-uri');
    return e.message;
  }
  return assert.fail('accepted');
}

test('--ca-key-uri: goes to CaOptions in both modes; absent, none', () => {
  assert.equal(completeServeOptions({ cacertsDir: '/c', caKeyUri: URI }).ca.caKeyUri, URI);
  assert.equal(completeServeOptions({ kube: true, caKeyUri: ` ${URI} ` }).ca.caKeyUri, URI);
  assert.equal(completeServeOptions({}).ca.caKeyUri, undefined);
});

test('--ca-key-uri: a bad URI is refused before anything starts, its PIN never shown', () => {
  const message = refusal(() =>
    completeServeOptions({
      cacertsDir: '/c',
      caKeyUri: 'pkcs11:object=k?module-path=/m.so&pin-value=hunter2',
    }),
  );
  assert.ok(
    message.startsWith('--ca-key-uri: pkcs11:object=k?module-path=/m.so&pin-value=(hidden): '),
    message,
  );
  assert.ok(!message.includes('hunter2'), message);
});

test('--ca-key-uri without --cacerts-dir or --kube: refused (the key alone is no CA)', () => {
  assert.equal(
    refusal(() => completeServeOptions({ caKeyUri: URI })),
    '--ca-key-uri: goes with --cacerts-dir, or --kube (the certificates of the key)',
  );
  // The folder may come from istiod's ROOT_CA_DIR instead of the flag.
  assert.equal(completeServeOptions({ caKeyUri: URI }, { ROOT_CA_DIR: '/c' }).ca.caKeyUri, URI);
  // In a pod, Kubernetes mode is on without --kube: the URI then goes with `cacerts`.
  assert.equal(
    completeServeOptions({ caKeyUri: URI }, { KUBERNETES_SERVICE_HOST: '10.0.0.1' }).ca.caKeyUri,
    URI,
  );
});
