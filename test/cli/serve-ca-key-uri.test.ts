import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseServeConfig } from '../../src/cli/serve-config.js';

const URI =
  'pkcs11:token=ca;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/pin';

test('--ca-key-uri: checked at parse time, errors never show a PIN', () => {
  assert.equal(parseServeConfig({ cacertsDir: '/c', caKeyUri: URI }).caKeyUri, URI);
  assert.equal(parseServeConfig({}).caKeyUri, undefined);
  assert.throws(
    () =>
      parseServeConfig({
        cacertsDir: '/c',
        caKeyUri: 'pkcs11:object=k?module-path=/m.so&pin-value=hunter2',
      }),
    (e: Error) =>
      e.message.startsWith(
        '--ca-key-uri: pkcs11:object=k?module-path=/m.so&pin-value=(hidden): ',
      ) && !e.message.includes('hunter2'),
  );
});
