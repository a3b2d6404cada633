import { generateKeyPair, randomUUID, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { SignJWT, jwtVerify, exportJWK, calculateJwkThumbprint, type JWK } from 'jose';

const generateKeyPairAsync = promisify(generateKeyPair);

/** What a TokenReview's status holds, as authentication.k8s.io/v1 defines it. */
export interface TokenReviewStatus {
  authenticated?: boolean;
  user?: {
    username?: string;
    uid?: string;
    groups?: string[];
    extra?: Record<string, string[]>;
  };
  audiences?: string[];
  error?: string;
}

export interface ServiceAccountTokenRequest {
  namespace: string;
  serviceAccount: string;
  /** Default: the API server's own audience (the issuer), as `kubectl create token` does. */
  audiences?: string[];
  /** Lifetime in seconds; default 3600. */
  expiresInSeconds?: number;
  /** Binds the token to a pod: adds the pod name/uid claims TokenReview reports as extras. */
  pod?: { name: string; uid: string };
  /** Issue time, ms; default the issuer's clock. */
  issuedAtMs?: number;
}

interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  jwk: JWK;
}

/**
 * The cluster's service account token issuer: signs bound tokens the way kube-apiserver does
 * (RS256, `iss`, `aud`, `sub=system:serviceaccount:<ns>:<sa>`, the `kubernetes.io` claim),
 * serves the OIDC discovery documents, and answers TokenReviews by verifying its own tokens.
 */
export class ServiceAccountIssuer {
  private keys: SigningKey[] = [];
  private readonly saUids = new Map<string, string>();

  constructor(
    readonly issuer: string,
    private readonly now: () => number,
  ) {}

  static async create(issuer: string, now: () => number): Promise<ServiceAccountIssuer> {
    const i = new ServiceAccountIssuer(issuer, now);
    await i.rotateKey(false);
    return i;
  }

  /** A new signing key; `keepOld` keeps verifying (and publishing) the previous ones. */
  async rotateKey(keepOld: boolean): Promise<void> {
    const { privateKey, publicKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
    const pub = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(pub);
    const key: SigningKey = {
      kid,
      privateKey,
      publicKey,
      jwk: { ...pub, kid, use: 'sig', alg: 'RS256' },
    };
    this.keys = keepOld ? [key, ...this.keys] : [key];
  }

  get defaultAudiences(): string[] {
    return [this.issuer];
  }

  uidOf(namespace: string, serviceAccount: string): string {
    const k = `${namespace}/${serviceAccount}`;
    let uid = this.saUids.get(k);
    if (!uid) {
      uid = randomUUID();
      this.saUids.set(k, uid);
    }
    return uid;
  }

  async issueToken(req: ServiceAccountTokenRequest): Promise<string> {
    const key = this.keys[0] as SigningKey;
    const iat = Math.floor((req.issuedAtMs ?? this.now()) / 1000);
    const claims: Record<string, unknown> = {
      'kubernetes.io': {
        namespace: req.namespace,
        serviceaccount: {
          name: req.serviceAccount,
          uid: this.uidOf(req.namespace, req.serviceAccount),
        },
        ...(req.pod ? { pod: { name: req.pod.name, uid: req.pod.uid } } : {}),
      },
    };
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: key.kid })
      .setIssuer(this.issuer)
      .setSubject(`system:serviceaccount:${req.namespace}:${req.serviceAccount}`)
      .setAudience(req.audiences ?? this.defaultAudiences)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + (req.expiresInSeconds ?? 3600))
      .setJti(randomUUID())
      .sign(key.privateKey);
  }

  openidConfiguration(): Record<string, unknown> {
    return {
      issuer: this.issuer,
      jwks_uri: `${this.issuer}/openid/v1/jwks`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
    };
  }

  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.jwk) };
  }

  /** Reviews a token as kube-apiserver's service account authenticator does. */
  async review(
    token: string,
    audiences: readonly string[] | undefined,
  ): Promise<TokenReviewStatus> {
    const wanted = audiences && audiences.length > 0 ? [...audiences] : this.defaultAudiences;
    for (const key of this.keys) {
      try {
        const { payload } = await jwtVerify(token, key.publicKey, {
          issuer: this.issuer,
          currentDate: new Date(this.now()),
          algorithms: ['RS256'],
        });
        const tokenAud = typeof payload.aud === 'string' ? [payload.aud] : (payload.aud ?? []);
        const granted = wanted.filter((a) => tokenAud.includes(a));
        if (granted.length === 0) {
          return {
            user: {},
            error: `[invalid bearer token, token audiences ${JSON.stringify(tokenAud)} is invalid for the target audiences ${JSON.stringify(wanted)}]`,
          };
        }
        const k8s = payload['kubernetes.io'] as {
          namespace: string;
          serviceaccount: { name: string; uid: string };
          pod?: { name: string; uid: string };
        };
        const extra: Record<string, string[]> = {};
        if (k8s.pod) {
          extra['authentication.kubernetes.io/pod-name'] = [k8s.pod.name];
          extra['authentication.kubernetes.io/pod-uid'] = [k8s.pod.uid];
        }
        if (payload.jti)
          extra['authentication.kubernetes.io/credential-id'] = [`JTI=${payload.jti}`];
        return {
          authenticated: true,
          user: {
            username: `system:serviceaccount:${k8s.namespace}:${k8s.serviceaccount.name}`,
            uid: k8s.serviceaccount.uid,
            groups: [
              'system:serviceaccounts',
              `system:serviceaccounts:${k8s.namespace}`,
              'system:authenticated',
            ],
            extra,
          },
          audiences: granted,
        };
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') continue;
        if (code === 'ERR_JWT_EXPIRED') {
          return { user: {}, error: '[invalid bearer token, service account token has expired]' };
        }
        return { user: {}, error: `[invalid bearer token, ${(e as Error).message}]` };
      }
    }
    return {
      user: {},
      error: '[invalid bearer token, square/go-jose: error in cryptographic primitive]',
    };
  }
}
