import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import type { KeyCertBundle } from '../ca/key-cert-bundle.js';
import { buildKeyCertBundle, certificatePem } from '../ca/build-key-cert-bundle.js';
import {
  DEFAULT_SELF_SIGNED_KEY_TYPE,
  DEFAULT_SELF_SIGNED_TTL_MS,
  makeSelfSignedRoot,
} from '../ca/sources/self-signed.js';
import type { CaKeyType } from '../pki/key-type.js';
import { generateKeyPair, privateKeyToPem } from '../pki/keys.js';
import { validateTrustDomain } from '../pki/spiffe.js';
import { silentLogger, type Logger } from '../log.js';
import { decodeSecretData, ifExists, isApiStatus } from './client.js';

/** Istio's names for the self-signed root kept in the cluster. */
export const SELF_SIGNED_SECRET = 'istio-ca-secret';
export const SELF_SIGNED_SECRET_TYPE = 'istio.io/ca-root';
export const CA_CERT_KEY = 'ca-cert.pem';
export const CA_KEY_KEY = 'ca-key.pem';
export const ROOT_CERT_SECRET_KEY = 'root-cert.pem';

/** Verifies and builds the CA held in `istio-ca-secret`; errors name the secret's keys. */
export function bundleFromSelfSignedSecret(
  secret: V1Secret,
  clock: Clock,
  extraRootsPem = '',
): KeyCertBundle {
  const ns = secret.metadata?.namespace ?? '';
  const where = `secret ${ns}/${SELF_SIGNED_SECRET}`;
  const files = decodeSecretData(secret);
  const missing = [CA_CERT_KEY, CA_KEY_KEY].filter((k) => !files.has(k));
  if (missing.length > 0) {
    throw new CastellanError('incomplete-ca', `missing ${missing.join(', ')}`, { subject: where });
  }
  const certPem = files.get(CA_CERT_KEY) as string;
  return buildKeyCertBundle(
    {
      certPem,
      keyPem: files.get(CA_KEY_KEY) as string,
      rootPem: (files.get(ROOT_CERT_SECRET_KEY) ?? certPem) + extraRootsPem,
      source: `self-signed-secret:${ns}/${SELF_SIGNED_SECRET}`,
      fileNames: {
        cert: `${where}/${CA_CERT_KEY}`,
        key: `${where}/${CA_KEY_KEY}`,
        root: `${where}/${ROOT_CERT_SECRET_KEY}`,
      },
    },
    clock,
  );
}

/**
 * The self-signed root shared by every replica: read `istio-ca-secret`, or create it when
 * absent. Replicas starting together all try to create it; the API server accepts exactly one
 * create (the others get 409 AlreadyExists) and the losers read the winner's root.
 */
export async function ensureSelfSignedSecret(options: {
  core: CoreV1Api;
  namespace: string;
  trustDomain: string;
  clock: Clock;
  keyType?: CaKeyType | undefined;
  ttlMs?: number | undefined;
  logger?: Logger | undefined;
}): Promise<V1Secret> {
  const { core, namespace } = options;
  const logger = options.logger ?? silentLogger;
  const existing = await ifExists(() =>
    core.readNamespacedSecret({ name: SELF_SIGNED_SECRET, namespace }),
  );
  if (existing) return existing;
  validateTrustDomain(options.trustDomain);
  const { privateKey } = await generateKeyPair(options.keyType ?? DEFAULT_SELF_SIGNED_KEY_TYPE);
  const root = await makeSelfSignedRoot(
    privateKey,
    [['O', options.trustDomain]],
    options.clock,
    options.ttlMs ?? DEFAULT_SELF_SIGNED_TTL_MS,
  );
  const certPem = certificatePem(root);
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  try {
    const created = await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: SELF_SIGNED_SECRET, namespace },
        type: SELF_SIGNED_SECRET_TYPE,
        data: {
          [CA_CERT_KEY]: b64(certPem),
          [CA_KEY_KEY]: b64(privateKeyToPem(privateKey)),
          [ROOT_CERT_SECRET_KEY]: b64(certPem),
        },
      },
    });
    logger.info({ secret: `${namespace}/${SELF_SIGNED_SECRET}` }, 'created the self-signed root');
    return created;
  } catch (e) {
    if (!isApiStatus(e, 409)) throw e;
    logger.info(
      { secret: `${namespace}/${SELF_SIGNED_SECRET}` },
      'another replica created the self-signed root first; using it',
    );
    return core.readNamespacedSecret({ name: SELF_SIGNED_SECRET, namespace });
  }
}
