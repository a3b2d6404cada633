import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomUUID,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  SignJWT,
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  type JSONWebKeySet,
  type JWK,
} from 'jose';
import { temporaryPathFor, writeFileAtomic } from '../atomic-write.js';
import { CastellanError } from '../errors.js';
import { systemClock, type Clock } from '../clock.js';
import { makeSpiffeId } from '../pki/spiffe.js';
import type { JwksKeySource } from './jwks.js';
import { tokenAudiences } from './jwt-authenticator.js';

const generateKeyPairAsync = promisify(generateKeyPair);

export const DEV_ISSUER_KEY_FILE = 'dev-issuer-key.pem';
export const DEV_ISSUER_JWKS_FILE = 'dev-issuer-jwks.json';
/**
 * The `iss` of development tokens. Deliberately not derived from the trust domain or the data
 * dir: `castellan token` and `castellan serve` may be run with different flags, and what ties a
 * token to a server is the key in the data dir, which this name does not replace.
 */
export const DEV_TOKEN_ISSUER = 'castellan-dev-token-issuer';

export interface MintTokenRequest {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly ttlMs: number;
  /** Default `istio-ca`. */
  readonly audiences?: readonly string[] | undefined;
  readonly podName?: string | undefined;
  readonly podUid?: string | undefined;
}

/**
 * The local-mode token issuer (no cluster): a key in the data dir, created once and reused, and
 * its public JWKS beside it, so `castellan serve` trusts what `castellan token` mints. Tokens are
 * shaped like Kubernetes bound service account tokens and, like them, signed RS256 with an
 * RSA-2048 key (what kube-apiserver's service-account key usually is), so they exercise the same
 * JWT authenticator, at the same cost, as a cluster would. A data dir made before RS256 keeps its
 * EC P-256 key and signs ES256.
 */
export class DevTokenIssuer {
  readonly issuer = DEV_TOKEN_ISSUER;

  private constructor(
    private readonly key: KeyObject,
    readonly algorithm: DevTokenAlgorithm,
    readonly keyId: string,
    readonly jwks: JSONWebKeySet,
    private readonly clock: Clock,
    /** The key was made by this open() (none was in the data dir). */
    readonly created: boolean,
  ) {}

  /** Loads the issuer from `dataDir`, creating the key (0600) and JWKS on first use. */
  static async open(dataDir: string, options: { clock?: Clock } = {}): Promise<DevTokenIssuer> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const keyPath = join(dataDir, DEV_ISSUER_KEY_FILE);
    const { key, algorithm, created } = await loadOrCreateKey(keyPath);
    const jwk: JWK = await exportJWK(createPublicKey(key));
    const keyId = await calculateJwkThumbprint(jwk);
    const jwks: JSONWebKeySet = { keys: [{ ...jwk, kid: keyId, alg: algorithm, use: 'sig' }] };
    await writeIfChanged(join(dataDir, DEV_ISSUER_JWKS_FILE), `${JSON.stringify(jwks, null, 2)}\n`);
    return new DevTokenIssuer(key, algorithm, keyId, jwks, options.clock ?? systemClock, created);
  }

  /** The verification keys, for a JwtAuthenticator trusting this issuer. */
  keySource(): JwksKeySource {
    return createLocalJWKSet(this.jwks);
  }

  async mintToken(request: MintTokenRequest): Promise<string> {
    const id = makeSpiffeId('cluster.local', request.namespace, request.serviceAccount);
    if (!Number.isFinite(request.ttlMs) || request.ttlMs < 1000) {
      throw new CastellanError(
        'invalid-argument',
        `token TTL ${request.ttlMs} ms must be at least 1s`,
      );
    }
    const audiences = tokenAudiences(request.audiences);
    const now = Math.floor(this.clock.now() / 1000);
    const k8s: Record<string, unknown> = {
      namespace: id.namespace,
      serviceaccount: {
        name: id.serviceAccount,
        uid: stableUid(`${id.namespace}/${id.serviceAccount}`),
      },
    };
    if (request.podName !== undefined) {
      k8s['pod'] = { name: request.podName, uid: request.podUid ?? randomUUID() };
    }
    return new SignJWT({ 'kubernetes.io': k8s })
      .setProtectedHeader({ alg: this.algorithm, kid: this.keyId })
      .setIssuer(this.issuer)
      .setSubject(`system:serviceaccount:${id.namespace}:${id.serviceAccount}`)
      .setAudience(audiences)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + Math.floor(request.ttlMs / 1000))
      .setJti(randomUUID())
      .sign(this.key);
  }
}

/** RS256 for keys made now; ES256 for the P-256 keys of older data dirs. */
export type DevTokenAlgorithm = 'RS256' | 'ES256';

/** Bits of the RSA key made for a new data dir: Kubernetes' usual service-account key size. */
const DEV_ISSUER_RSA_BITS = 2048;

async function loadOrCreateKey(
  path: string,
): Promise<{ key: KeyObject; algorithm: DevTokenAlgorithm; created: boolean }> {
  let pem: string;
  let created = false;
  try {
    pem = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new CastellanError('internal', `cannot read: ${(e as Error).message}`, {
        subject: path,
      });
    }
    pem = await createKeyFile(path);
    created = true;
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new CastellanError('malformed', `not a PEM private key: ${(e as Error).message}`, {
      subject: path,
    });
  }
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa' && (details?.modulusLength ?? 0) >= DEV_ISSUER_RSA_BITS) {
    return { key, algorithm: 'RS256', created };
  }
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1') {
    return { key, algorithm: 'ES256', created };
  }
  throw new CastellanError(
    'unsupported',
    `the development issuer key must be RSA (${DEV_ISSUER_RSA_BITS} bits or more) or EC P-256`,
    { subject: path },
  );
}

/**
 * Writes a fresh key to a temporary file and hard-links it into place: `link` fails when the
 * name exists, so when `serve` and `token` start together exactly one key wins, and nobody
 * reads a half-written file. The loser reads the winner's key.
 */
async function createKeyFile(path: string): Promise<string> {
  // On the thread pool: an RSA key takes 0.1–0.4 s, which must not stall the event loop.
  const { privateKey: pem } = await generateKeyPairAsync('rsa', {
    modulusLength: DEV_ISSUER_RSA_BITS,
    publicKeyEncoding: { format: 'pem', type: 'spki' },
    privateKeyEncoding: { format: 'pem', type: 'pkcs8' },
  });
  const tmp = temporaryPathFor(path);
  try {
    await writeFile(tmp, pem, { mode: 0o600, flag: 'wx' });
    await link(tmp, path);
    return pem;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return await readFile(path, 'utf8');
  } finally {
    // Also after a failed write (a full disk): no half-written key is left beside the real one.
    await rm(tmp, { force: true });
  }
}

/** The JWKS is derived from the key: rewritten (atomically) only when it differs. */
async function writeIfChanged(path: string, content: string): Promise<void> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === content) return;
  await writeFileAtomic(path, content, 0o644);
}

/** A UUID-shaped id that stays the same for a service account, as Kubernetes' uid would. */
function stableUid(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
