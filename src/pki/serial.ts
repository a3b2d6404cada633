import { randomFillSync } from 'node:crypto';

/**
 * A certificate serial number: 16 random bytes with the top bit cleared (so the DER INTEGER is
 * positive with no leading zero byte) and a non-zero first byte (so it is exactly 16 bytes
 * long, a fixed size the fast signer relies on). About 127 bits of randomness, above CA/B
 * Forum's 64-bit minimum and Istio's practice.
 */
export function randomSerial(): Uint8Array {
  const serial = new Uint8Array(16);
  do {
    randomFillSync(serial);
    serial[0] = (serial[0] as number) & 0x7f;
  } while (serial[0] === 0);
  return serial;
}

export function serialToHex(serial: Uint8Array): string {
  return Buffer.from(serial).toString('hex');
}
