/**
 * The only DER *writing* the hot path does by hand: tag + length headers around contents that
 * are either precomputed (encoded once per CA with the @peculiar/asn1-x509 schemas) or trivial
 * per-request primitives (an INTEGER, a time string, an IA5String SAN). There is no parser here:
 * what the hot path reads goes through src/pki/der.ts (element boundaries, as common-csr.ts
 * walks a CSR) or @peculiar/asn1-schema.
 *
 * DER length (X.690 §8.1.3, §10.1): short form below 128, otherwise 0x80|n followed by n
 * big-endian bytes, with the minimum n.
 */

export const TAG = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
  /** [0] constructed, context-specific: TBSCertificate.version, CertificationRequestInfo.attributes. */
  CONTEXT_0_CONSTRUCTED: 0xa0,
  /** [3] constructed: TBSCertificate.extensions. */
  CONTEXT_3_CONSTRUCTED: 0xa3,
  /** GeneralName implicit tags (RFC 5280 §4.2.1.6), primitive context-specific. */
  SAN_DNS: 0x82,
  SAN_URI: 0x86,
  SAN_IP: 0x87,
} as const;

/** The header (tag + DER length) for contents of `length` bytes. */
export function header(tag: number, length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(tag, length);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Uint8Array.of(tag, 0x80 | bytes.length, ...bytes);
}

function totalLength(parts: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** tag + length + the concatenated parts, in one allocation. */
export function tlv(tag: number, ...parts: readonly Uint8Array[]): Uint8Array {
  const len = totalLength(parts);
  const head = header(tag, len);
  const out = new Uint8Array(head.length + len);
  out.set(head, 0);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The parts concatenated, without a header. */
export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(totalLength(parts));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A non-negative INTEGER from big-endian magnitude bytes: leading zero bytes are dropped (DER
 * minimal encoding) and one 0x00 is prepended when the top bit is set, so the value stays
 * positive.
 */
export function unsignedInteger(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const body = magnitude.subarray(start);
  if (body.length === 0) return Uint8Array.of(TAG.INTEGER, 1, 0);
  return (body[0] as number) & 0x80
    ? tlv(TAG.INTEGER, Uint8Array.of(0), body)
    : tlv(TAG.INTEGER, body);
}

const ascii = new TextEncoder();

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/**
 * RFC 5280 §4.1.2.5 Time: UTCTime (YYMMDDHHMMSSZ) for 1950–2049, GeneralizedTime
 * (YYYYMMDDHHMMSSZ) otherwise; seconds always present, never fractional seconds (milliseconds
 * are dropped, as @peculiar/asn1-x509's Time does).
 */
export function time(date: Date): Uint8Array {
  const y = date.getUTCFullYear();
  const rest =
    pad(date.getUTCMonth() + 1, 2) +
    pad(date.getUTCDate(), 2) +
    pad(date.getUTCHours(), 2) +
    pad(date.getUTCMinutes(), 2) +
    pad(date.getUTCSeconds(), 2) +
    'Z';
  if (y >= 1950 && y <= 2049) return tlv(TAG.UTC_TIME, ascii.encode(pad(y % 100, 2) + rest));
  return tlv(TAG.GENERALIZED_TIME, ascii.encode(pad(y, 4) + rest));
}

export function ia5(tag: number, text: string): Uint8Array {
  return tlv(tag, ascii.encode(text));
}
