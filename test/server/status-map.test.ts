// The one kind → status map, gRPC and HTTP side by side. The table is a Record over ErrorKind,
// so a new kind fails to compile here as it does in the map.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CastellanError, type ErrorKind } from '../../src/errors.js';
import {
  BUNDLE_TEXTS,
  CA_SERVICE_TEXTS,
  IMPERSONATION_REFUSED_MESSAGE,
  INTERNAL_MESSAGE,
  toGrpcFailure,
  toHttpFailure,
  UNAUTHENTICATED_MESSAGE,
  type OpaqueTexts,
} from '../../src/server/status-map.js';

/** `own`: the caller's fault, answered with the error's message; otherwise an opaque text. */
type Answer = 'own' | keyof OpaqueTexts;

interface Expected {
  readonly grpc: status;
  readonly http: number;
  readonly answer: Answer;
}

const EXPECTED: Record<ErrorKind, Expected> = {
  malformed: { grpc: status.INVALID_ARGUMENT, http: 400, answer: 'own' },
  unsupported: { grpc: status.INVALID_ARGUMENT, http: 400, answer: 'own' },
  'weak-key': { grpc: status.INVALID_ARGUMENT, http: 400, answer: 'own' },
  'bad-signature': { grpc: status.INVALID_ARGUMENT, http: 400, answer: 'own' },
  'invalid-argument': { grpc: status.INVALID_ARGUMENT, http: 400, answer: 'own' },
  'too-large': { grpc: status.INVALID_ARGUMENT, http: 400, answer: 'own' },
  unauthenticated: { grpc: status.UNAUTHENTICATED, http: 401, answer: 'unauthenticated' },
  'impersonation-refused': {
    grpc: status.UNAUTHENTICATED,
    http: 401,
    answer: 'impersonationRefused',
  },
  'permission-denied': { grpc: status.PERMISSION_DENIED, http: 403, answer: 'permissionDenied' },
  unavailable: { grpc: status.UNAVAILABLE, http: 503, answer: 'unavailable' },
  // Admission control's own words: when to retry (src/server/admission.ts).
  'resource-exhausted': { grpc: status.RESOURCE_EXHAUSTED, http: 429, answer: 'own' },
  'encrypted-key': { grpc: status.INTERNAL, http: 500, answer: 'internal' },
  'key-mismatch': { grpc: status.INTERNAL, http: 500, answer: 'internal' },
  'not-a-ca': { grpc: status.INTERNAL, http: 500, answer: 'internal' },
  expired: { grpc: status.INTERNAL, http: 500, answer: 'internal' },
  'not-yet-valid': { grpc: status.INTERNAL, http: 500, answer: 'internal' },
  'chain-invalid': { grpc: status.INTERNAL, http: 500, answer: 'internal' },
  'incomplete-ca': { grpc: status.INTERNAL, http: 500, answer: 'internal' },
  internal: { grpc: status.INTERNAL, http: 500, answer: 'internal' },
};

for (const [surface, texts] of [
  ['CA service', CA_SERVICE_TEXTS],
  ['policy bundles', BUNDLE_TEXTS],
] as const) {
  test(`${surface}: every error kind maps to one gRPC and one HTTP status, with a safe text`, () => {
    for (const [kind, want] of Object.entries(EXPECTED) as [ErrorKind, Expected][]) {
      const error = new CastellanError(kind, `secret detail /etc/cacerts/${kind}`);
      const text = want.answer === 'own' ? error.message : texts[want.answer];
      const grpc = toGrpcFailure(error, texts);
      assert.deepEqual(grpc, { code: want.grpc, details: text }, kind);
      const http = toHttpFailure(error, texts);
      assert.deepEqual(http, { statusCode: want.http, body: `${text}\n` }, kind);
      if (want.answer !== 'own') assert.doesNotMatch(text, /secret|cacerts/, kind);
    }
  });

  test(`${surface}: anything thrown that is not ours is INTERNAL / 500, its message withheld`, () => {
    const bug = new TypeError('cannot read properties of undefined');
    assert.deepEqual(toGrpcFailure(bug, texts), { code: status.INTERNAL, details: texts.internal });
    assert.deepEqual(toHttpFailure(bug, texts), { statusCode: 500, body: `${texts.internal}\n` });
    assert.deepEqual(toGrpcFailure('a string', texts).code, status.INTERNAL);
  });
}

test("the CA service's words are Istio's and have not changed; the bundles' are the kind names", () => {
  // Istio security/pkg/server/ca/server.go, CreateCertificate: "request authenticate failure".
  assert.equal(UNAUTHENTICATED_MESSAGE, 'request authenticate failure');
  // The same file and function, for a refused ImpersonatedIdentity (ambient mode).
  assert.equal(IMPERSONATION_REFUSED_MESSAGE, 'request impersonation authentication failure');
  assert.deepEqual(CA_SERVICE_TEXTS, {
    unauthenticated: UNAUTHENTICATED_MESSAGE,
    impersonationRefused: IMPERSONATION_REFUSED_MESSAGE,
    permissionDenied: 'permission denied',
    unavailable: 'the CA is not ready to sign certificates',
    internal: INTERNAL_MESSAGE,
  });
  assert.equal(INTERNAL_MESSAGE, 'internal error while signing the certificate');
  assert.deepEqual(BUNDLE_TEXTS, {
    unauthenticated: 'unauthenticated',
    impersonationRefused: 'unauthenticated',
    permissionDenied: 'permission-denied',
    unavailable: 'unavailable',
    internal: 'internal error',
  });
});

test("a caller's fault is told in its own words, naming the field", () => {
  const csr = new CastellanError('weak-key', 'RSA key of 1024 bits', { subject: 'csr' });
  assert.equal(toGrpcFailure(csr, CA_SERVICE_TEXTS).details, 'csr: RSA key of 1024 bits');
  assert.equal(toHttpFailure(csr, BUNDLE_TEXTS).body, 'csr: RSA key of 1024 bits\n');
});

test('a kind forged past the type system gets the internal answer, not a throw', () => {
  const forged = new CastellanError('no-such-kind' as ErrorKind, 'x');
  assert.deepEqual(toGrpcFailure(forged, CA_SERVICE_TEXTS), {
    code: status.INTERNAL,
    details: INTERNAL_MESSAGE,
  });
  assert.equal(toHttpFailure(forged, BUNDLE_TEXTS).statusCode, 500);
});
