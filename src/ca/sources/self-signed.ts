import type { KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { X509Certificate } from '@peculiar/x509';
import { writeFileAtomic } from '../../atomic-write.js';
import type { Clock } from '../../clock.js';
import { CastellanError } from '../../errors.js';
import { issueCertificate } from '../../pki/issue.js';
import type { CaKeyType } from '../../pki/key-type.js';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.js';
import type { SubjectName } from '../../pki/profiles.js';
import { isCaSigner, type SigningKey } from '../../pki/signer.js';
import { validateTrustDomain } from '../../pki/spiffe.js';
import type { KeyCertBundle } from '../key-cert-bundle.js';
import { buildKeyCertBundle, certificatePem } from '../build-key-cert-bundle.js';
import { NOT_BEFORE_BACKDATE_MS } from '../issue-workload.js';

/** Ten years, Istio's self-signed root lifetime. */
export const DEFAULT_SELF_SIGNED_TTL_MS = 10 * 365 * 24 * 3_600_000;

/**
 * ECDSA P-256 by default: signing a leaf costs a small fraction of an RSA-2048 signature, and certificates
 * and chains are smaller; every Istio/Envoy version verifies it. Istio itself only makes
 * RSA-2048 self-signed roots, which stays available as an option.
 */
export const DEFAULT_SELF_SIGNED_KEY_TYPE: CaKeyType = 'ec-p256';

const CERT = 'ca-cert.pem';
const KEY = 'ca-key.pem';
const ROOT = 'root-cert.pem';

export interface SelfSignedOptions {
  readonly dataDir: string;
  readonly trustDomain: string;
  readonly keyType?: CaKeyType;
  readonly ttlMs?: number;
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CastellanError('internal', `cannot read ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * A self-signed root in the root profile: subject O=<trust domain>. `publicKey` is the key's
 * public half (a signer alone does not give it out); `key` itself when it is a KeyObject.
 */
export async function makeSelfSignedRoot(
  key: SigningKey,
  subject: SubjectName,
  clock: Clock,
  ttlMs: number,
  publicKey?: KeyObject | Uint8Array,
): Promise<X509Certificate> {
  const now = clock.now();
  if (!publicKey && isCaSigner(key)) {
    throw new CastellanError('internal', 'a root signed by a signer needs its public key given');
  }
  return issueCertificate({
    profile: { kind: 'root', subject },
    publicKey: publicKey ?? (key as KeyObject),
    selfKey: key,
    notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
    notAfter: new Date(now + ttlMs),
  });
}

/**
 * The self-signed CA used when nothing is plugged in: created once in `dataDir`
 * (`ca-cert.pem`, `ca-key.pem` mode 0600, `root-cert.pem`) and reused on every restart. An
 * existing set is loaded and verified; a half set or a corrupt file is an error, never a
 * reason to make a new root (that would silently break every workload's trust).
 */
export async function loadOrCreateSelfSignedCa(
  options: SelfSignedOptions,
  clock: Clock,
): Promise<KeyCertBundle> {
  const dir = options.dataDir;
  const source = `self-signed:${dir}`;
  const certPem = await readIfExists(join(dir, CERT));
  const keyPem = await readIfExists(join(dir, KEY));
  if (certPem !== undefined || keyPem !== undefined) {
    if (certPem === undefined || keyPem === undefined) {
      throw new CastellanError(
        'incomplete-ca',
        `self-signed CA: ${certPem === undefined ? CERT : KEY} is missing next to ${certPem === undefined ? KEY : CERT}; restore it or remove both to make a new root`,
        { subject: dir },
      );
    }
    const rootPem = (await readIfExists(join(dir, ROOT))) ?? certPem;
    return buildKeyCertBundle(
      {
        certPem,
        keyPem,
        rootPem,
        source,
        fileNames: { cert: join(dir, CERT), key: join(dir, KEY), root: join(dir, ROOT) },
      },
      clock,
    );
  }
  validateTrustDomain(options.trustDomain);
  const { privateKey } = await generateKeyPair(options.keyType ?? DEFAULT_SELF_SIGNED_KEY_TYPE);
  const root = await makeSelfSignedRoot(
    privateKey,
    [['O', options.trustDomain]],
    clock,
    options.ttlMs ?? DEFAULT_SELF_SIGNED_TTL_MS,
  );
  const newCertPem = certificatePem(root);
  const newKeyPem = privateKeyToPem(privateKey);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Key first: a crash between the writes leaves a key without a certificate, which the next
  // start reports instead of silently replacing.
  await writeFileAtomic(join(dir, KEY), newKeyPem, 0o600);
  await writeFileAtomic(join(dir, CERT), newCertPem);
  await writeFileAtomic(join(dir, ROOT), newCertPem);
  return buildKeyCertBundle(
    { certPem: newCertPem, keyPem: newKeyPem, rootPem: newCertPem, source },
    clock,
  );
}

/**
 * Root rotation: the same key and subject with a new validity window (from now, `ttlMs` long),
 * so certificates issued under the old root keep verifying (same name, same key identifier).
 */
export async function reissueRoot(
  bundle: KeyCertBundle,
  key: SigningKey,
  clock: Clock,
  ttlMs: number,
): Promise<X509Certificate> {
  const subject = bundle.signingCert.subjectName
    .toJSON()
    .flatMap((rdn) =>
      Object.entries(rdn).flatMap(([attr, values]) => values.map((v) => [attr, v] as const)),
    );
  return makeSelfSignedRoot(
    key,
    subject,
    clock,
    ttlMs,
    new Uint8Array(bundle.signingCert.publicKey.rawData),
  );
}
