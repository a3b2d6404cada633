import { CastellanError } from '../errors.js';

/**
 * DER element boundaries — only the tag-length header, never the contents (contents are
 * parsed with the @peculiar/asn1-* schemas, or compared byte for byte by the hot path's CSR
 * recogniser, src/pki/fast/common-csr.ts). Jobs the schema parser does not do: refuse trailing
 * bytes after the outer element, and hand back an element's bytes verbatim (the CSR's
 * SubjectPublicKeyInfo is copied into the certificate as it was signed).
 */
export interface DerElement {
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset just past the element. */
  readonly end: number;
}

/** Reads the element starting at `offset`; definite lengths only (DER), no high tag numbers. */
export function readDerElement(der: Uint8Array, offset = 0, subject?: string): DerElement {
  const fail = (why: string): CastellanError =>
    new CastellanError('malformed', `bad DER: ${why}`, subject ? { subject } : {});
  if (offset + 2 > der.length) throw fail('truncated element');
  const tag = der[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw fail('high tag numbers are not used here');
  const first = der[offset + 1] as number;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = offset + 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw fail('indefinite length (BER) is not DER');
    if (n > 4) throw fail('length too large');
    if (offset + 2 + n > der.length) throw fail('truncated length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (der[offset + 2 + i] as number);
    if (length < 0x80 || (n > 1 && der[offset + 2] === 0)) throw fail('non-minimal length');
    contentStart = offset + 2 + n;
  }
  const end = contentStart + length;
  if (end > der.length) throw fail('truncated element');
  return { start: offset, contentStart, end };
}

/** The direct children of a constructed element (e.g. the fields of a SEQUENCE). */
export function derChildren(der: Uint8Array, parent: DerElement, subject?: string): DerElement[] {
  const out: DerElement[] = [];
  let at = parent.contentStart;
  while (at < parent.end) {
    const el = readDerElement(der, at, subject);
    if (el.end > parent.end) {
      throw new CastellanError(
        'malformed',
        'bad DER: child overruns its parent',
        subject ? { subject } : {},
      );
    }
    out.push(el);
    at = el.end;
  }
  return out;
}

/** Checks `der` is exactly one element with nothing after it; returns that element. */
export function requireSingleDerElement(der: Uint8Array, subject?: string): DerElement {
  const el = readDerElement(der, 0, subject);
  if (el.end !== der.length) {
    throw new CastellanError(
      'malformed',
      `${der.length - el.end} trailing byte(s) after the DER structure`,
      subject ? { subject } : {},
    );
  }
  return el;
}

/** Whether the element's bytes, header included, are `expected` exactly. */
export function derElementEquals(der: Uint8Array, el: DerElement, expected: Uint8Array): boolean {
  if (el.end - el.start !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (der[el.start + i] !== expected[i]) return false;
  return true;
}

/** rsaEncryption's AlgorithmIdentifier as DER: SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }. */
export const RSA_ENCRYPTION_ALGORITHM = Uint8Array.from(
  Buffer.from('300d06092a864886f70d0101010500', 'hex'),
);
