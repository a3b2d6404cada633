import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePkcs11Uri, readPin, redactPkcs11Uri } from '../../../src/ca/signers/pkcs11-uri.js';
import { isCastellanError } from '../../../src/errors.js';

const MODULE = 'module-path=/usr/lib/softhsm/libsofthsm2.so';

test('RFC 7512 attributes: percent-decoding, id as bytes, token selectors, PIN sources', () => {
  const u = parsePkcs11Uri(
    `pkcs11:token=Mesh%20CA;manufacturer=SoftHSM%20project;serial=ddb6b403b773441a;model=SoftHSM%20v2;slot-id=930300954;object=intermediate;id=%01%a0%FF;type=private?${MODULE}&pin-source=file:/run/secrets/pin`,
  );
  assert.equal(u.modulePath, '/usr/lib/softhsm/libsofthsm2.so');
  assert.equal(u.token, 'Mesh CA');
  assert.equal(u.manufacturer, 'SoftHSM project');
  assert.equal(u.serial, 'ddb6b403b773441a');
  assert.equal(u.model, 'SoftHSM v2');
  assert.equal(u.slotId, 930300954);
  assert.equal(u.object, 'intermediate');
  assert.deepEqual([...(u.id ?? [])], [0x01, 0xa0, 0xff]);
  assert.deepEqual(u.pinSource, { kind: 'file', path: '/run/secrets/pin' });
  // RFC 7512 §3's forms: `;` inside the query, `&` inside the path, file:/// URIs.
  const v = parsePkcs11Uri(
    `pkcs11:object=a&b;id=%02?${MODULE}&pin-source=file:///etc/pin;x&module-name=softhsm2`,
  );
  assert.equal(v.object, 'a&b');
  assert.deepEqual(v.pinSource, { kind: 'file', path: '/etc/pin;x' });
  assert.deepEqual(parsePkcs11Uri(`pkcs11:object=k?${MODULE}&pin-source=env:HSM_PIN`).pinSource, {
    kind: 'env',
    name: 'HSM_PIN',
  });
  assert.equal(parsePkcs11Uri(`pkcs11:object=k?${MODULE}`).pinSource, undefined);
  assert.equal(parsePkcs11Uri(`  pkcs11:object=k?${MODULE}\n`).object, 'k');
});

test('every refusal is invalid-argument, names the problem and never shows a pin-value', () => {
  const cases: [string, RegExp][] = [
    ['pkcs12:object=k', /starts with "pkcs11:"/],
    [`pkcs11:object=k`, /module-path=\/path\/to\/the\/pkcs11\/module\.so is required/],
    [`pkcs11:object=k?module-path=lib.so`, /must be absolute/],
    [`pkcs11:object=k?module-name=softhsm2`, /module-name is not searched for/],
    [`pkcs11:token=t?${MODULE}`, /name the key: object=<label> and\/or id=/],
    [`pkcs11:object=k;type=cert?${MODULE}`, /type=cert: the CA key is a private key/],
    [`pkcs11:object=k;object=j?${MODULE}`, /"object" is given twice/],
    [`pkcs11:object=k;colour=red?${MODULE}`, /unknown attribute "colour" in the path/],
    [`pkcs11:object=k?${MODULE}&pin=1`, /unknown attribute "pin" in the query/],
    [`pkcs11:object=k;x-vendor=1?${MODULE}`, /"x-vendor" is not supported here/],
    [`pkcs11:object=k;library-version=2?${MODULE}`, /"library-version" is not supported here/],
    [`pkcs11:object=a b?${MODULE}`, /object: " " must be percent-encoded/],
    [`pkcs11:object=a%2?${MODULE}`, /"%2\?m" is not a percent-encoded byte|"%2" is not/],
    [`pkcs11:object=%ff%fe?${MODULE}`, /object is not UTF-8/],
    [`pkcs11:object=k;slot-id=one?${MODULE}`, /slot-id "one" is not a number/],
    [`pkcs11:object=k;token?${MODULE}`, /"token" has no value/],
    [`pkcs11:object=k?${MODULE}&pin-source=https://x/pin`, /use file:\/path or env:NAME/],
    [`pkcs11:object=k?${MODULE}&pin-source=file:pin`, /pin-source file "pin" must be absolute/],
    [`pkcs11:object=k?${MODULE}&pin-source=env:1X`, /not an environment variable name/],
    [`pkcs11:object=k?${MODULE}&pin-value=s3cr3t-1234`, /pin-value puts the PIN where ps/],
  ];
  for (const [uri, message] of cases) {
    assert.throws(
      () => parsePkcs11Uri(uri),
      (e: unknown) => {
        assert.ok(isCastellanError(e, 'invalid-argument'), `${uri}: ${String(e)}`);
        assert.match(e.message, message, uri);
        assert.ok(!e.message.includes('s3cr3t'), e.message);
        return true;
      },
    );
  }
  assert.equal(
    redactPkcs11Uri('pkcs11:object=k?pin-value=s3cr3t&module-path=/m.so'),
    'pkcs11:object=k?pin-value=(hidden)&module-path=/m.so',
  );
});

test('readPin: a file without its trailing newline, or the environment; errors never hold it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-pin-'));
  writeFileSync(join(dir, 'pin'), '12 34\n');
  writeFileSync(join(dir, 'crlf'), '5678\r\n');
  writeFileSync(join(dir, 'empty'), '\n');
  const uri = (source: string): ReturnType<typeof parsePkcs11Uri> =>
    parsePkcs11Uri(`pkcs11:object=k?${MODULE}&pin-source=${source}`);
  assert.equal(await readPin(uri(`file:${join(dir, 'pin')}`), {}), '12 34');
  assert.equal(await readPin(uri(`file:${join(dir, 'crlf')}`), {}), '5678');
  assert.equal(await readPin(uri('env:HSM_PIN'), { HSM_PIN: '0000' }), '0000');
  assert.equal(await readPin(parsePkcs11Uri(`pkcs11:object=k?${MODULE}`), {}), undefined);
  await assert.rejects(readPin(uri(`file:${join(dir, 'empty')}`), {}), /the PIN file .* is empty/);
  await assert.rejects(readPin(uri(`file:${join(dir, 'none')}`), {}), /cannot read the PIN file/);
  await assert.rejects(readPin(uri('env:HSM_PIN'), {}), /HSM_PIN is not set/);
});
