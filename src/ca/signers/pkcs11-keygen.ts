import { createPublicKey } from 'node:crypto';
import { CastellanError } from '../../errors.js';
import type { CaKeyType } from '../../pki/key-type.js';
import { describe, Pkcs11Module, type Attribute, type Handle } from './pkcs11-module.js';
import { EC_PARAMS_OF, findPrivateKeys, findSlot, login } from './pkcs11-signer.js';
import { parsePkcs11Uri, readPin, type Pkcs11Uri } from './pkcs11-uri.js';

/** Bytes of an uncompressed point's coordinates on each curve. */
const COORDINATE_BYTES: Record<'ec-p256' | 'ec-p384', number> = { 'ec-p256': 32, 'ec-p384': 48 };
const JWK_CURVE: Record<'ec-p256' | 'ec-p384', string> = { 'ec-p256': 'P-256', 'ec-p384': 'P-384' };

/**
 * Generates a CA key pair inside the token the URI names, under its `object` label (and `id`,
 * when given): the private key with CKA_SENSITIVE true and CKA_EXTRACTABLE false (it can never
 * be read out, even wrapped), CKA_TOKEN (it persists), CKA_PRIVATE (only after login), CKA_SIGN
 * and no other use (decrypt, unwrap, derive false); the public key beside it with the same label and id. Refuses, changing nothing, when
 * a private key already answers to the URI. Returns the public key's SubjectPublicKeyInfo (DER),
 * for the certificate.
 */
export async function generatePkcs11Key(o: {
  readonly uri: string | Pkcs11Uri;
  readonly keyType: CaKeyType;
  readonly env: Readonly<Record<string, string | undefined>>;
}): Promise<Uint8Array> {
  const uri = typeof o.uri === 'string' ? parsePkcs11Uri(o.uri) : o.uri;
  if (uri.object === undefined) {
    throw new CastellanError('invalid-argument', 'a new key needs a label: add object=<name>', {
      subject: uri.text,
    });
  }
  const pin = await readPin(uri, o.env);
  const module = await Pkcs11Module.acquire(uri.modulePath, uri.text);
  try {
    await module.ensureInitialized(uri.text);
    return await module.run(() => {
      const { lib, api: a } = module;
      const slot = findSlot(lib, a, uri);
      const info = lib.C_GetTokenInfo(slot);
      const label = info.label.trim();
      const session = lib.C_OpenSession(slot, a.CKF_SERIAL_SESSION | a.CKF_RW_SESSION);
      try {
        if ((info.flags & a.CKF_LOGIN_REQUIRED) !== 0) {
          if (pin === undefined) {
            throw new CastellanError(
              'invalid-argument',
              `token "${label}" requires a PIN: add pin-source=file:/path or pin-source=env:NAME`,
              { subject: uri.text },
            );
          }
          login(lib, a, session, uri, pin, label);
        }
        if (findPrivateKeys(lib, a, session, uri, 1).length > 0) {
          throw new CastellanError(
            'invalid-argument',
            `token "${label}" already holds a private key answering to this URI: choose another object= (or use that key as it is)`,
            { subject: uri.text },
          );
        }
        const names: Attribute[] = [{ type: a.CKA_LABEL, value: uri.object }];
        if (uri.id !== undefined) names.push({ type: a.CKA_ID, value: Buffer.from(uri.id) });
        const ec = o.keyType === 'ec-p256' || o.keyType === 'ec-p384';
        // The key signs and does nothing else (modules default some of these to true).
        const publicTemplate: Attribute[] = [
          { type: a.CKA_TOKEN, value: true },
          { type: a.CKA_VERIFY, value: true },
          { type: a.CKA_ENCRYPT, value: false },
          { type: a.CKA_WRAP, value: false },
          ...names,
          ...(ec
            ? [{ type: a.CKA_EC_PARAMS, value: EC_PARAMS_OF[o.keyType as 'ec-p256'] }]
            : [
                { type: a.CKA_MODULUS_BITS, value: Number(o.keyType.slice('rsa-'.length)) },
                { type: a.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
              ]),
        ];
        const privateTemplate: Attribute[] = [
          { type: a.CKA_TOKEN, value: true },
          { type: a.CKA_PRIVATE, value: true },
          { type: a.CKA_SENSITIVE, value: true },
          { type: a.CKA_EXTRACTABLE, value: false },
          { type: a.CKA_SIGN, value: true },
          { type: a.CKA_DECRYPT, value: false },
          { type: a.CKA_UNWRAP, value: false },
          { type: a.CKA_DERIVE, value: false },
          ...names,
        ];
        let publicKey: Handle;
        try {
          publicKey = lib.C_GenerateKeyPair(
            session,
            { mechanism: ec ? a.CKM_EC_KEY_PAIR_GEN : a.CKM_RSA_PKCS_KEY_PAIR_GEN },
            publicTemplate,
            privateTemplate,
          ).publicKey;
        } catch (e) {
          throw new CastellanError(
            'unavailable',
            `token "${label}" did not generate a ${o.keyType} key: ${describe(e)}`,
            { subject: uri.text, cause: e },
          );
        }
        return ec
          ? ecSpki(
              lib.C_GetAttributeValue(session, publicKey, [{ type: a.CKA_EC_POINT }]),
              o.keyType,
            )
          : rsaSpki(
              lib.C_GetAttributeValue(session, publicKey, [
                { type: a.CKA_MODULUS },
                { type: a.CKA_PUBLIC_EXPONENT },
              ]),
            );
      } finally {
        try {
          lib.C_CloseSession(session);
        } catch {
          // The key is made (or not) either way.
        }
      }
    });
  } finally {
    module.release();
  }
}

/**
 * CKA_EC_POINT is the DER OCTET STRING around the uncompressed point (PKCS#11 v2.40 §2.3.3);
 * some modules give the bare point, which is accepted too.
 */
function ecSpki(values: Attribute[], keyType: 'ec-p256' | 'ec-p384'): Uint8Array {
  const size = COORDINATE_BYTES[keyType];
  let point = (values[0]?.value as Buffer | undefined) ?? Buffer.alloc(0);
  if (point.length === 2 * size + 3 && point[0] === 0x04 && point[1] === 2 * size + 1) {
    point = point.subarray(2);
  }
  if (point.length !== 2 * size + 1 || point[0] !== 0x04) {
    throw new CastellanError('unsupported', 'the token gave an EC point in an unknown form');
  }
  const key = createPublicKey({
    key: {
      kty: 'EC',
      crv: JWK_CURVE[keyType],
      x: point.subarray(1, 1 + size).toString('base64url'),
      y: point.subarray(1 + size).toString('base64url'),
    },
    format: 'jwk',
  });
  return new Uint8Array(key.export({ format: 'der', type: 'spki' }));
}

function rsaSpki(values: Attribute[]): Uint8Array {
  const [n, e] = values.map((v) => (v.value as Buffer | undefined) ?? Buffer.alloc(0));
  const key = createPublicKey({
    key: {
      kty: 'RSA',
      n: (n as Buffer).toString('base64url'),
      e: (e as Buffer).toString('base64url'),
    },
    format: 'jwk',
  });
  return new Uint8Array(key.export({ format: 'der', type: 'spki' }));
}
