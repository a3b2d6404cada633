import { randomFillSync } from 'node:crypto';

/** Bytes in a serial: a leading byte in 0x01–0x7f, then 16 fully random bytes. */
export const SERIAL_LENGTH = 17;

/**
 * A certificate serial number with at least 128 bits of randomness (the bar, and
 * Istio's `rand.Int(2^128)`): 16 fully random bytes behind a random leading byte in 0x01–0x7f,
 * which keeps the DER INTEGER positive, free of a leading zero byte, and of a fixed 17-byte
 * length (RFC 5280 allows up to 20). About 134.8 random bits in all.
 */
export function randomSerial(): Uint8Array {
  const serial = new Uint8Array(SERIAL_LENGTH);
  randomFillSync(serial);
  serial[0] = 1 + ((serial[0] as number) % 0x7f);
  return serial;
}

export function serialToHex(serial: Uint8Array): string {
  return Buffer.from(serial).toString('hex');
}
