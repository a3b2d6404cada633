import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { istioCaPackageDefinition, type IstioCertificateRequest } from '../../src/api/istioca.js';
import { createCertificateFrame } from '../../bench/grpc-frame.js';

/** The server's own decoder: proto-loader's definition, as grpc-js deserializes requests. */
function requestDeserialize(): (bytes: Buffer) => IstioCertificateRequest {
  const pkg = grpc.loadPackageDefinition(istioCaPackageDefinition()) as unknown as {
    istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
  };
  const method = pkg.istio.v1.auth.IstioCertificateService.service['CreateCertificate']!;
  return method.requestDeserialize as (bytes: Buffer) => IstioCertificateRequest;
}

/** Checks the gRPC prefix (uncompressed, exact length) and returns the message bytes. */
function unframe(frame: Buffer): Buffer {
  assert.equal(frame[0], 0, 'compressed flag');
  assert.equal(frame.readUInt32BE(1), frame.length - 5, 'length prefix');
  return frame.subarray(5);
}

const PEM = [
  '-----BEGIN CERTIFICATE REQUEST-----',
  ...Array.from({ length: 8 }, (_, i) => 'MIIB'.padEnd(64, String.fromCharCode(65 + i))),
  '-----END CERTIFICATE REQUEST-----',
  '',
].join('\n');

test('createCertificateFrame round-trips csr and validityDuration through the server decoder', () => {
  const decode = requestDeserialize();
  const cases: [string, number][] = [
    [PEM, 3600], // the bench's request: a CSR longer than 127 bytes (two-byte length varint)
    ['x', 0],
    ['', 1],
    ['é — not ASCII', 127], // length counts UTF-8 bytes, not characters
    [PEM.repeat(40), 128], // a length above 2^14: three-byte varint
    ['csr', 2 ** 40 + 5], // above 32 bits
  ];
  for (const [csr, validity] of cases) {
    const decoded = decode(unframe(createCertificateFrame(csr, validity)));
    assert.equal(decoded.csr, csr);
    assert.equal(decoded.validityDuration, validity);
  }
});

test('validity_duration is field 3 (field 2 is reserved and would be dropped)', () => {
  const decode = requestDeserialize();
  // The same request with the duration under field 2 (key 0x10): the decoder skips it.
  const wrong = Buffer.from([0x0a, 1, 0x78, 0x10, 0x90, 0x1c]); // csr "x", field 2 = 3600
  assert.equal(decode(wrong).validityDuration, 0);
  const right = unframe(createCertificateFrame('x', 3600));
  assert.deepEqual([...right], [0x0a, 1, 0x78, 0x18, 0x90, 0x1c]);
});

test('createCertificateFrame refuses a duration it cannot encode as a plain varint', () => {
  for (const bad of [-1, 1.5, Number.NaN, 2 ** 53]) {
    assert.throws(() => createCertificateFrame('x', bad), RangeError);
  }
});
