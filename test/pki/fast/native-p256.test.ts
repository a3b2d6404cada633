// The native P-256 check (native/p256_verify.c through src/pki/fast/native-p256.ts) against
// node:crypto's verify on real keys and signatures, hostile points and signatures, bad
// arguments, and OpenSSL's error queue; and its loader's refusals. The CSR-level differential
// test (fast-csr.test.ts) holds the parser that uses it to the reference.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  loadNativeP256,
  NATIVE_P256,
  P256_BAD_POINT,
  P256_BAD_SIGNATURE,
  P256_VALID,
  type NativeP256Verify,
} from '../../../src/pki/fast/native-p256.js';
import { projectRoot } from '../../support/paths.js';
import { seededRng } from '../../support/seeded-rng.js';

const ADDON = join(projectRoot, 'native', 'build', 'Release', 'castellan_native.node');
const PRIME = Buffer.from(
  'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff',
  'hex',
);
const ORDER = Buffer.from(
  'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551',
  'hex',
);
const DIGESTS = [
  [256, 'sha256'],
  [384, 'sha384'],
  [512, 'sha512'],
] as const;

function pointOf(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'spki' }).subarray(26);
}

/** A fresh P-256 key's point, and its signature (SHA-256, DER) over `message`. */
function signedBy(message: Buffer): { point: Buffer; signature: Buffer; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { point: pointOf(publicKey), signature: sign('sha256', message, privateKey), privateKey };
}

/** node:crypto's answer for the same inputs: what the reference parser's rule 6 computes. */
function reference(point: Buffer, message: Buffer, signature: Buffer, hash: string): number {
  let key: KeyObject;
  try {
    key = createPublicKey({
      key: Buffer.concat([
        Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'),
        point,
      ]),
      format: 'der',
      type: 'spki',
    });
  } catch {
    return P256_BAD_POINT;
  }
  try {
    return cryptoVerify(hash, message, { key, dsaEncoding: 'der' }, signature)
      ? P256_VALID
      : P256_BAD_SIGNATURE;
  } catch {
    return P256_BAD_SIGNATURE;
  }
}

/** DER INTEGER of a non-negative big-endian value, minimal (or with `pad` extra zero bytes). */
function derInteger(value: Buffer, pad = 0): Buffer {
  let v = value;
  while (v.length > 1 && v[0] === 0 && (v[1]! & 0x80) === 0) v = v.subarray(1);
  if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  v = Buffer.concat([Buffer.alloc(pad), v]);
  return Buffer.concat([Buffer.from([0x02, v.length]), v]);
}

function derSignature(r: Buffer, s: Buffer, padR = 0): Buffer {
  const body = Buffer.concat([derInteger(r, padR), derInteger(s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

/** r and s of a DER ECDSA signature (short form lengths: P-256 signatures always are). */
function rsOf(signature: Buffer): { r: Buffer; s: Buffer } {
  const rLength = signature[3]!;
  const r = signature.subarray(4, 4 + rLength);
  const s = signature.subarray(6 + rLength, 6 + rLength + signature[5 + rLength]!);
  return { r, s };
}

describe('the native P-256 check', () => {
  test('is built and loaded here (linux, OpenSSL 3): otherwise the CA silently pays node:crypto', () => {
    if (process.platform !== 'linux' || !process.versions.openssl.startsWith('3.')) return;
    assert.equal(NATIVE_P256.reason, undefined);
    assert.equal(typeof NATIVE_P256.verify, 'function');
  });

  const native = NATIVE_P256.verify as NativeP256Verify;
  const skip = NATIVE_P256.verify ? false : `not loaded: ${NATIVE_P256.reason}`;

  test('answers as node:crypto on real keys and signatures, each digest', { skip }, () => {
    const message = Buffer.from('a CertificationRequestInfo stands here, '.repeat(8));
    for (let i = 0; i < 24; i++) {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const other = pointOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
      const point = pointOf(publicKey);
      for (const [bits, hash] of DIGESTS) {
        const signature = sign(hash, message, { key: privateKey, dsaEncoding: 'der' });
        assert.equal(native(point, message, signature, bits), P256_VALID, `key ${i} ${hash}`);
        const flipped = Buffer.from(signature);
        flipped[flipped.length - 1]! ^= 1;
        const cases: [string, Buffer, Buffer, Buffer, number][] = [
          ['flipped signature bit', point, message, flipped, bits],
          ['another message', point, Buffer.concat([message, Buffer.from([0])]), signature, bits],
          ['another key', other, message, signature, bits],
          ['another digest', point, message, signature, bits === 256 ? 384 : 256],
        ];
        for (const [label, p, m, s, b] of cases) {
          const expected = reference(
            p,
            m,
            s,
            b === 256 ? 'sha256' : b === 384 ? 'sha384' : 'sha512',
          );
          assert.equal(expected, P256_BAD_SIGNATURE, label);
          assert.equal(
            native(p, m, s, b as 256 | 384 | 512),
            expected,
            `${label}, key ${i} ${hash}`,
          );
        }
      }
    }
  });

  test('refuses what is not a point of P-256, as the DER import does', { skip }, () => {
    const message = Buffer.from('tbs');
    const { point, signature } = signedBy(message);
    const r = seededRng(11);
    let offCurve = 0;
    for (let i = 0; i < 200; i++) {
      const p = Buffer.from(point);
      p[1 + Math.floor(r() * 64)]! ^= 1 << Math.floor(r() * 8);
      const expected = reference(p, message, signature, 'sha256');
      assert.equal(native(p, message, signature, 256), expected, `flip ${i}`);
      if (expected === P256_BAD_POINT) offCurve++;
    }
    assert.ok(offCurve > 190, `off-curve points refused (${offCurve})`);
    const x = point.subarray(1, 33);
    const y = point.subarray(33);
    for (const [label, p] of [
      ['x = p', Buffer.concat([Buffer.from([4]), PRIME, y])],
      ['y = p', Buffer.concat([Buffer.from([4]), x, PRIME])],
      ['x + p', Buffer.concat([Buffer.from([4]), Buffer.alloc(32, 0xff), y])],
      ['zeros', Buffer.concat([Buffer.from([4]), Buffer.alloc(64)])],
      ['compressed form, 65 bytes', Buffer.concat([Buffer.from([2]), x, y])],
      ['hybrid form', Buffer.concat([Buffer.from([6 | (y[31]! & 1)]), x, y])],
      ['64 bytes', point.subarray(0, 64)],
      ['66 bytes', Buffer.concat([point, Buffer.from([0])])],
      ['compressed, 33 bytes', Buffer.concat([Buffer.from([2 | (y[31]! & 1)]), x])],
      ['empty', Buffer.alloc(0)],
    ] as const) {
      assert.equal(native(p, message, signature, 256), P256_BAD_POINT, label);
    }
  });

  test(
    'takes only DER signatures node:crypto takes: non-minimal, out of range, trailing bytes',
    { skip },
    () => {
      const message = Buffer.from('tbs');
      const { point, signature } = signedBy(message);
      const { r, s } = rsOf(signature);
      const negS = Buffer.from(ORDER);
      // n - s: the other valid s for the same r (ECDSA is malleable; OpenSSL accepts both).
      let borrow = 0;
      for (let i = 31; i >= 0; i--) {
        const si = i - (32 - s.length) >= 0 ? s[i - (32 - s.length)]! : 0;
        let d = ORDER[i]! - si - borrow;
        borrow = d < 0 ? 1 : 0;
        if (d < 0) d += 256;
        negS[i] = d;
      }
      const cases: [string, Buffer][] = [
        ['as signed', signature],
        ['n - s', derSignature(r, negS)],
        ['r padded with a zero byte', derSignature(r, s, 1)],
        ['trailing byte', Buffer.concat([signature, Buffer.from([0])])],
        ['truncated', signature.subarray(0, signature.length - 1)],
        ['r = 0', derSignature(Buffer.from([0]), s)],
        ['s = n', derSignature(r, ORDER)],
        ['r = n + r', derSignature(Buffer.concat([Buffer.from([1]), r]), s)],
        ['raw r || s (IEEE P1363)', Buffer.concat([r, s])],
        ['empty', Buffer.alloc(0)],
        [
          'long-form length',
          Buffer.concat([Buffer.from([0x30, 0x81, signature[1]!]), signature.subarray(2)]),
        ],
      ];
      const answers: Record<string, number> = {};
      for (const [label, sig] of cases) {
        const expected = reference(point, message, sig, 'sha256');
        answers[label] = expected;
        assert.equal(native(point, message, sig, 256), expected, label);
      }
      // The corpus reaches both answers.
      assert.equal(answers['as signed'], P256_VALID);
      assert.equal(answers['n - s'], P256_VALID);
      assert.equal(answers['r padded with a zero byte'], P256_BAD_SIGNATURE);
    },
  );

  test(
    'throws TypeError on arguments of the wrong type, and reads typed-array views exactly',
    { skip },
    () => {
      const message = Buffer.from('tbs');
      const { point, signature } = signedBy(message);
      const call = native as unknown as (...args: unknown[]) => number;
      for (const [label, args] of [
        ['no arguments', []],
        ['three arguments', [point, message, signature]],
        ['a string point', [point.toString('hex'), message, signature, 256]],
        ['an Int8Array message', [point, new Int8Array(message), signature, 256]],
        ['an ArrayBuffer signature', [point, message, signature.buffer, 256]],
        ['SHA-1', [point, message, signature, 160]],
        ['digest as a string', [point, message, signature, '256']],
      ] as const) {
        assert.throws(() => call(...args), TypeError, label);
      }
      // A view into a larger buffer is read at its offset and length, nothing around it.
      const framed = (b: Buffer) => {
        const whole = new Uint8Array(b.length + 12).fill(0xee);
        whole.set(b, 7);
        return whole.subarray(7, 7 + b.length);
      };
      assert.equal(native(framed(point), framed(message), framed(signature), 256), P256_VALID);
      assert.equal(native(point, new Uint8Array(0), signature, 256), P256_BAD_SIGNATURE);
    },
  );

  test(
    "leaves nothing on OpenSSL's error queue for node:crypto's next error to report",
    { skip },
    () => {
      const nodeCryptoError = (): string => {
        try {
          // A PKCS#8 import's message comes from OpenSSL's queue on Node 20 and on Node 24.
          createPrivateKey({ key: Buffer.from('3003020100', 'hex'), format: 'der', type: 'pkcs8' });
        } catch (e) {
          return (e as Error).message;
        }
        return 'no error';
      };
      const before = nodeCryptoError();
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const message = Buffer.from('tbs');
      const offCurve = pointOf(publicKey);
      offCurve[64]! ^= 1;
      const signature = sign('sha256', message, privateKey);
      assert.equal(native(offCurve, message, signature, 256), P256_BAD_POINT);
      assert.equal(
        native(pointOf(publicKey), message, Buffer.from([0x30, 0x00]), 256),
        P256_BAD_SIGNATURE,
      );
      // node:crypto reports the first error on the queue: a left-over would show up here.
      assert.equal(nodeCryptoError(), before);
    },
  );

  test('loads and answers in a worker thread (the crypto thread)', { skip }, async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const message = Buffer.from('tbs');
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const { verifyP256 } = require(workerData.addon);
       parentPort.postMessage(verifyP256(workerData.point, workerData.message, workerData.signature, 256));`,
      {
        eval: true,
        workerData: {
          addon: ADDON,
          point: pointOf(publicKey),
          message,
          signature: sign('sha256', message, privateKey),
        },
      },
    );
    const answer = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    assert.equal(answer, P256_VALID);
    await worker.terminate();
  });

  test(
    'answers right while the event loop and a worker call it at the same time',
    { skip },
    async () => {
      const message = Buffer.from('tbs');
      const { point, signature } = signedBy(message);
      const bad = Buffer.from(signature);
      bad[bad.length - 1]! ^= 1;
      const offCurve = Buffer.from(point);
      offCurve[64]! ^= 1;
      const ROUNDS = 3000;
      // Each side alternates a valid signature, a bad one and a bad point, and counts wrong answers.
      const worker = new Worker(
        `const { parentPort, workerData: w } = require('node:worker_threads');
       const { verifyP256 } = require(w.addon);
       parentPort.postMessage('ready');
       let wrong = 0;
       for (let i = 0; i < w.rounds; i++) {
         const k = i % 3;
         const answer = verifyP256(k === 2 ? w.offCurve : w.point, w.message, k === 1 ? w.bad : w.signature, 256);
         if (answer !== [1, 0, -1][k]) wrong++;
       }
       parentPort.postMessage(wrong);`,
        {
          eval: true,
          workerData: { addon: ADDON, point, message, signature, bad, offCurve, rounds: ROUNDS },
        },
      );
      const answers: unknown[] = [];
      const workerDone = new Promise<unknown>((resolve, reject) => {
        worker.on('message', (m) => {
          answers.push(m);
          if (answers.length === 2) resolve(m);
        });
        worker.once('error', reject);
      });
      await new Promise<void>((resolve) => worker.once('message', () => resolve()));
      let wrong = 0;
      for (let i = 0; i < ROUNDS; i++) {
        const k = i % 3;
        const answer = native(k === 2 ? offCurve : point, message, k === 1 ? bad : signature, 256);
        if (answer !== [P256_VALID, P256_BAD_SIGNATURE, P256_BAD_POINT][k]) wrong++;
      }
      assert.equal(wrong, 0, 'wrong answers on the event loop');
      assert.equal(await workerDone, 0, 'wrong answers in the worker');
      await worker.terminate();
    },
  );
});

describe('loadNativeP256', () => {
  const openssl3 = { opensslVersion: '3.0.19', fips: false };

  test('refuses an OpenSSL other than 3.x, and FIPS mode, without loading anything', () => {
    const load = () => assert.fail('loaded');
    const reason = (opensslVersion: string, fips = false) =>
      loadNativeP256({ opensslVersion, fips }, ADDON, load).reason ?? '';
    assert.match(reason('1.1.1w'), /OpenSSL 3.*1\.1\.1w/);
    assert.match(reason('4.0.0'), /4\.0\.0/);
    assert.match(reason(''), /OpenSSL \?/);
    assert.match(reason('3.0.19', true), /FIPS mode/);
  });

  test('says why when the addon was not built, does not load, or is not ours', () => {
    const missing = loadNativeP256(openssl3, join(projectRoot, 'native', 'no-such.node'));
    assert.match(missing.reason ?? '', /no-such\.node was not built \(npm run build/);
    assert.equal(missing.verify, undefined);
    const broken = loadNativeP256(openssl3, ADDON, () => {
      throw new Error('undefined symbol: ECDSA_verify');
    });
    assert.match(broken.reason ?? '', /did not load: undefined symbol: ECDSA_verify/);
    assert.match(loadNativeP256(openssl3, ADDON, () => ({})).reason ?? '', /has no verifyP256/);
    assert.match(loadNativeP256(openssl3, ADDON, () => null).reason ?? '', /has no verifyP256/);
  });

  test('uses the addon only once it passes its self-test', () => {
    const selfTested = (verifyP256: unknown) =>
      loadNativeP256(openssl3, ADDON, () => ({ verifyP256 }));
    // Always valid, never valid, blind to bad points, throwing: all refused.
    for (const [label, fake] of [
      ['always valid', () => P256_VALID],
      ['never valid', () => P256_BAD_SIGNATURE],
      ['no point check', (p: Uint8Array) => (p[64] === 0x2f ? P256_VALID : P256_BAD_SIGNATURE)],
      [
        'throws',
        () => {
          throw new Error('boom');
        },
      ],
    ] as const) {
      assert.match(selfTested(fake).reason ?? '', /failed its self-test/, label);
    }
    // The real one passes.
    if (NATIVE_P256.verify) {
      assert.equal(selfTested(NATIVE_P256.verify).verify, NATIVE_P256.verify);
    }
  });

  test(
    'the built addon binds every symbol at load (-z now): a missing one refuses the load, not a call',
    {
      skip:
        process.platform !== 'linux' || !NATIVE_P256.verify
          ? 'Linux, built'
          : spawnSync('readelf', ['--version']).error
            ? 'no readelf (binutils)'
            : false,
    },
    () => {
      const dynamic = spawnSync('readelf', ['-d', ADDON], { encoding: 'utf8' });
      assert.equal(dynamic.status, 0, dynamic.stderr);
      assert.match(dynamic.stdout, /\(FLAGS\)\s+BIND_NOW|Flags: NOW/);
    },
  );
});
