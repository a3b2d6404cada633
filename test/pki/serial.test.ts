// Certificate serial numbers (src/pki/serial.ts): 17 bytes, positive, minimal DER, never
// repeated — also across the refills of the pool of random bytes they are drawn from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomSerial, SERIAL_LENGTH, serialToHex } from '../../src/pki/serial.js';

test('serials: 17 bytes, leading byte 0x01–0x7f, all distinct over many pool refills', () => {
  // 10,000 serials draw ≈ 42 pools of 4 KiB.
  const seen = new Set<string>();
  const leading = new Set<number>();
  let previous: Uint8Array | undefined;
  for (let i = 0; i < 10_000; i++) {
    const serial = randomSerial();
    assert.equal(serial.length, SERIAL_LENGTH);
    const first = serial[0] as number;
    assert.ok(first >= 0x01 && first <= 0x7f, `leading byte ${first}`);
    leading.add(first);
    const hex = serialToHex(serial);
    assert.ok(!seen.has(hex), `serial ${hex} repeated`);
    seen.add(hex);
    if (previous) {
      // No byte of the pool is handed out twice: consecutive serials share no 16-byte tail.
      assert.notDeepEqual(serial.subarray(1), previous.subarray(1));
    }
    previous = serial;
  }
  // The leading byte takes (nearly) all of its 127 values: it is random too.
  assert.ok(leading.size >= 120, `only ${leading.size} leading byte values`);
});

test('a serial is a copy: changing it changes no other serial', () => {
  const a = randomSerial();
  const copy = Uint8Array.from(a);
  const b = randomSerial();
  b.fill(0);
  assert.deepEqual(a, copy);
  assert.equal(a.buffer === b.buffer, false);
});
