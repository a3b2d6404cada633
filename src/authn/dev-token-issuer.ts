import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomUUID,
  type KeyObject,
} from 'node:crypto';
import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  SignJWT,
  calculateJwkThumbprint,
  createLocalJWKSet,
  exportJWK,
  type JSONWebKeySet,
  type JWK,
} from 'jose';
import { CastellanError } from '../errors.js';
import { systemClock, type Clock } from '../clock.js';
import { makeSpiffeId } from '../pki/spiffe.js';
import type { JwksKeySource } from './jwks.js';
import { DEFAULT_TOKEN_AUDIENCES } from './jwt-authenticator.js';

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
 * The local-mode token issuer (no cluster): an EC P-256 key in the data dir, created once and
 * reused, and its public JWKS beside it, so `castellan serve` trusts what `castellan token`
 * mints. Tokens are shaped like Kubernetes bound service account tokens, so they exercise the
 * same JWT authenticator a cluster would.
 */
export class DevTokenIssuer {
  readonly issuer = DEV_TOKEN_ISSUER;

  private constructor(
    private readonly key: KeyObject,
    readonly keyId: string,
    readonly jwks: JSONWebKeySet,
    private readonly clock: Clock,
  ) {}

  /** Loads the issuer from `dataDir`, creating the key (0600) and JWKS on first use. */
  static async open(dataDir: string, options: { clock?: Clock } = {}): Promise<DevTokenIssuer> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const keyPath = join(dataDir, DEV_ISSUER_KEY_FILE);
    const key = await loadOrCreateKey(keyPath);
    const jwk: JWK = await exportJWK(createPublicKey(key));
    const keyId = await calculateJwkThumbprint(jwk);
    const jwks: JSONWebKeySet = { keys: [{ ...jwk, kid: keyId, alg: 'ES256', use: 'sig' }] };
    await writeIfChanged(join(dataDir, DEV_ISSUER_JWKS_FILE), `${JSON.stringify(jwks, null, 2)}\n`);
    return new DevTokenIssuer(key, keyId, jwks, options.clock ?? systemClock);
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
    const audiences = [...(request.audiences ?? DEFAULT_TOKEN_AUDIENCES)];
    if (audiences.length === 0 || audiences.some((a) => a === '')) {
      throw new CastellanError('invalid-argument', 'token audiences must be non-empty strings');
    }
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
      .setProtectedHeader({ alg: 'ES256', kid: this.keyId })
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

async function loadOrCreateKey(path: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new CastellanError('internal', `cannot read: ${(e as Error).message}`, {
        subject: path,
      });
    }
    pem = await createKeyFile(path);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new CastellanError('malformed', `not a PEM private key: ${(e as Error).message}`, {
      subject: path,
    });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CastellanError('unsupported', 'the development issuer key must be EC P-256', {
      subject: path,
    });
  }
  return key;
}

/**
 * Writes a fresh key to a temporary file and hard-links it into place: `link` fails when the
 * name exists, so when `serve` and `token` start together exactly one key wins, and nobody
 * reads a half-written file. The loser reads the winner's key.
 */
async function createKeyFile(path: string): Promise<string> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`;
  await writeFile(tmp, pem, { mode: 0o600, flag: 'wx' });
  try {
    await link(tmp, path);
    return pem;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return readFile(path, 'utf8');
  } finally {
    await unlink(tmp);
  }
}

/** The JWKS is derived from the key: rewritten (atomically) only when it differs. */
async function writeIfChanged(path: string, content: string): Promise<void> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === content) return;
  const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`;
  await writeFile(tmp, content, { mode: 0o644 });
  await rename(tmp, path);
}

/** A UUID-shaped id that stays the same for a service account, as Kubernetes' uid would. */
function stableUid(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
