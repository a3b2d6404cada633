import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CastellanError, type ErrorKind } from '../../src/errors.js';
import {
  IMPERSONATION_REFUSED_MESSAGE,
  INTERNAL_MESSAGE,
  toGrpcFailure,
  UNAUTHENTICATED_MESSAGE,
} from '../../src/server/grpc-status.js';

const EXPECTED: Record<ErrorKind, status> = {
  malformed: status.INVALID_ARGUMENT,
  unsupported: status.INVALID_ARGUMENT,
  'weak-key': status.INVALID_ARGUMENT,
  'bad-signature': status.INVALID_ARGUMENT,
  'invalid-argument': status.INVALID_ARGUMENT,
  'too-large': status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  'impersonation-refused': status.UNAUTHENTICATED,
  'permission-denied': status.PERMISSION_DENIED,
  unavailable: status.UNAVAILABLE,
  'encrypted-key': status.INTERNAL,
  'key-mismatch': status.INTERNAL,
  'not-a-ca': status.INTERNAL,
  expired: status.INTERNAL,
  'not-yet-valid': status.INTERNAL,
  'chain-invalid': status.INTERNAL,
  'incomplete-ca': status.INTERNAL,
  internal: status.INTERNAL,
};

test('every error kind maps to one gRPC status, never UNKNOWN', () => {
  for (const [kind, code] of Object.entries(EXPECTED) as [ErrorKind, status][]) {
    const f = toGrpcFailure(new CastellanError(kind, `secret detail /etc/cacerts/${kind}`));
    assert.equal(f.code, code, kind);
    assert.notEqual(f.code, status.UNKNOWN);
  }
});

test('the client never sees internal or authentication details', () => {
  const authn = toGrpcFailure(new CastellanError('unauthenticated', 'jwt: token expired at X'));
  assert.equal(authn.details, UNAUTHENTICATED_MESSAGE);
  const node = toGrpcFailure(
    new CastellanError('impersonation-refused', 'no pod of app/web runs on node "n2"'),
  );
  // istiod's exact text (security/pkg/server/ca/server.go, CreateCertificate).
  assert.equal(node.details, 'request impersonation authentication failure');
  assert.equal(node.details, IMPERSONATION_REFUSED_MESSAGE);
  const internal = toGrpcFailure(new CastellanError('key-mismatch', '/etc/cacerts/ca-key.pem'));
  assert.equal(internal.details, INTERNAL_MESSAGE);
  const bug = toGrpcFailure(new TypeError('cannot read properties of undefined'));
  assert.equal(bug.code, status.INTERNAL);
  assert.equal(bug.details, INTERNAL_MESSAGE);
  const csr = toGrpcFailure(
    new CastellanError('weak-key', 'RSA key of 1024 bits', { subject: 'csr' }),
  );
  assert.equal(csr.details, 'csr: RSA key of 1024 bits');
});
