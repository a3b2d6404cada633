import { webcrypto } from 'node:crypto';
import { Pkcs10CertificateRequestGenerator, SubjectAlternativeNameExtension } from '@peculiar/x509';
import { CastellanError } from '../errors.js';
import { toPem } from './pem.js';
import { generalNameOf } from './profiles.js';

/** Key types a workload asks for: Istio's agent default (ECDSA P-256) and its RSA option. */
export const WORKLOAD_KEY_TYPES = ['ec-p256', 'rsa-2048'] as const;
export type WorkloadKeyType = (typeof WORKLOAD_KEY_TYPES)[number];

export function isWorkloadKeyType(value: string): value is WorkloadKeyType {
  return (WORKLOAD_KEY_TYPES as readonly string[]).includes(value);
}

export interface CsrSubject {
  /** Subject CN; omitted → an empty subject (the CA decides the identity anyway). */
  readonly commonName?: string | undefined;
  /** SANs: `scheme://…` → URI, an IPv4/IPv6 literal → IP, anything else → DNS (sanKind). */
  readonly sans?: readonly string[] | undefined;
}

export interface KeyAndCsr {
  /** The new private key, PKCS#8 PEM. */
  readonly keyPem: string;
  /** The PKCS#10 request signed with that key, PEM. */
  readonly csrPem: string;
}

const ALGORITHMS: Record<
  WorkloadKeyType,
  {
    generate: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams;
    sign: webcrypto.Algorithm | webcrypto.EcdsaParams;
  }
> = {
  'ec-p256': {
    generate: { name: 'ECDSA', namedCurve: 'P-256' },
    sign: { name: 'ECDSA', hash: 'SHA-256' },
  },
  'rsa-2048': {
    generate: {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    },
    sign: { name: 'RSASSA-PKCS1-v1_5' },
  },
};

/**
 * Makes a fresh key pair and a CSR proving possession of it. Pure: nothing touches the disk.
 * Like Istio's agent, the SAN extension is marked critical when the subject is empty
 * (RFC 5280 §4.2.1.6).
 */
export async function createKeyAndCsr(
  keyType: WorkloadKeyType,
  subject: CsrSubject = {},
): Promise<KeyAndCsr> {
  // A JavaScript caller (or a cast) may pass any string: it gets a clear error.
  if (!isWorkloadKeyType(keyType)) {
    throw new CastellanError('unsupported', `key type "${String(keyType)}" is not supported`);
  }
  const alg = ALGORITHMS[keyType];
  const keys = await webcrypto.subtle.generateKey(alg.generate, true, ['sign', 'verify']);
  const sans = subject.sans ?? [];
  const extensions =
    sans.length > 0
      ? [
          new SubjectAlternativeNameExtension(
            sans.map((s) => generalNameOf(s).toJSON()),
            !subject.commonName,
          ),
        ]
      : [];
  const csr = await Pkcs10CertificateRequestGenerator.create(
    {
      name: subject.commonName ? [{ CN: [subject.commonName] }] : [],
      extensions,
      signingAlgorithm: alg.sign,
      keys,
    },
    webcrypto,
  );
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keyPem: toPem('PRIVATE KEY', pkcs8), csrPem: csr.toString('pem') + '\n' };
}
