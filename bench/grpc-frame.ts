// One CreateCertificate request as bytes on the wire, for load generators that send a fixed
// HTTP/2 body (h2load -d): a gRPC length-prefixed message holding an IstioCertificateRequest.
// Pure (no I/O), so a test can decode it with the proto-loader definition the server uses.

/** A protobuf base-128 varint of a non-negative integer (arithmetic, so above 2^32 works too). */
function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n % 0x80) | 0x80); // low 7 bits, "more follows" bit set
    n = Math.floor(n / 0x80);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

/**
 * `IstioCertificateRequest { string csr = 1; int64 validity_duration = 3; }` (protos/istioca.proto:
 * field 2 is reserved, metadata = 4 is left out), framed as one uncompressed gRPC message.
 */
export function createCertificateFrame(csrPem: string, validitySeconds: number): Buffer {
  if (!Number.isSafeInteger(validitySeconds) || validitySeconds < 0) {
    // Negative int64s take ten bytes of two's complement; no request of ours needs one.
    throw new RangeError(`validitySeconds must be a non-negative integer: ${validitySeconds}`);
  }
  const csr = Buffer.from(csrPem, 'utf8');
  const message = Buffer.concat([
    // A key byte is (field number << 3) | wire type.
    Buffer.from([(1 << 3) | 2]), // field 1 (csr), wire type 2: length-delimited
    varint(csr.length),
    csr,
    Buffer.from([(3 << 3) | 0]), // field 3 (validity_duration), wire type 0: varint
    varint(validitySeconds),
  ]);
  // gRPC framing: 1 byte compressed flag (0 = no), 4 bytes big-endian message length.
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(0, 0);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}
