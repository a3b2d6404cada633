import { errors, type JWSAlgorithm, type JWTPayload } from 'jose';
import { CastellanError } from '../errors.js';
import { systemClock, type Clock } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import type { AuthRequest, Authenticator, Caller } from './authenticator.js';
import { extractBearerToken, withoutToken } from './bearer.js';
import type { JwksKeySource } from './jwks.js';
import type { JwtOffload } from './fast-jwt-check.js';
import { JwtVerifier, type JwtVerifyOptions } from './jwt-verify.js';
import { parseServiceAccountSubject } from './service-account-subject.js';
import { TokenCache, type TokenCacheOptions, type TokenCacheStats } from './token-cache.js';

/** The audience Istio's agents request for their tokens, and the default we accept. */
const DEFAULT_TOKEN_AUDIENCES: readonly string[] = ['istio-ca'];

/**
 * The audiences to accept (or mint tokens for), DEFAULT_TOKEN_AUDIENCES when not given: a
 * non-empty list of non-empty strings, else CastellanError('invalid-argument').
 */
export function tokenAudiences(audiences: readonly string[] | undefined): string[] {
  const list = [...(audiences ?? DEFAULT_TOKEN_AUDIENCES)];
  if (list.length === 0 || list.some((a) => a === '')) {
    throw new CastellanError('invalid-argument', 'token audiences must be non-empty strings');
  }
  return list;
}
/** Clock skew tolerated on `exp`, `nbf` and `iat`: nodes and the CA rarely agree to the second. */
export const DEFAULT_CLOCK_SKEW_MS = 30_000;
/**
 * Asymmetric signature algorithms only. HS* would let anyone holding the (public!) verification
 * key forge tokens, and `none` is no signature at all; jose refuses `none` in jwtVerify anyway.
 */
export const ASYMMETRIC_JWT_ALGORITHMS: readonly JWSAlgorithm[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

export interface JwtAuthenticatorOptions {
  /** The `iss` tokens must carry, exactly. */
  readonly issuer: string;
  /** The verification keys (a file's JWKS, a remote JWKS, or a test's key function). */
  readonly keys: JwksKeySource;
  /** A token is accepted when its `aud` contains one of these. Default `istio-ca`. */
  readonly audiences?: readonly string[] | undefined;
  readonly clockSkewMs?: number | undefined;
  /** A subset of ASYMMETRIC_JWT_ALGORITHMS; anything else is refused at construction. */
  readonly algorithms?: readonly JWSAlgorithm[] | undefined;
  readonly clock?: Clock | undefined;
  readonly logger?: Logger | undefined;
  /**
   * Verified tokens remembered (TokenCache: by SHA-256, never past `exp`, 60 s at most by
   * default), so a node proxy asking for every pod of its node with one token verifies it once.
   * `false` verifies every call (the bench's baseline).
   */
  readonly cache?: Omit<TokenCacheOptions, 'clock'> | false | undefined;
}

/** A verified token's caller, and when the token expires (ms). */
interface Verified {
  readonly caller: Caller;
  readonly expMs: number | undefined;
}

/** Caps quoted claim values in reasons: they come from the client and are logged. */
function quote(value: unknown): string {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- JSON.stringify gives undefined for undefined, a function or a symbol, though typed string
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

/**
 * Offline verification of Kubernetes-style service account JWTs (issue 3): signature against
 * the configured keys, exact issuer, accepted audience, `exp`/`nbf` within the skew on the
 * injected clock, identity from `sub = system:serviceaccount:<ns>:<sa>`, pod from the
 * `kubernetes.io` claim of bound tokens.
 */
export class JwtAuthenticator implements Authenticator {
  readonly name = 'jwt' as const;
  /** What tokens are checked against; also quoted in the reasons for a refusal. */
  private readonly checks: JwtVerifyOptions;
  private readonly verifier: JwtVerifier;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly cache: TokenCache<Verified> | undefined;

  constructor(options: JwtAuthenticatorOptions) {
    if (options.issuer === '') {
      throw new CastellanError('invalid-argument', 'JWT issuer must not be empty');
    }
    const audiences = tokenAudiences(options.audiences);
    const algorithms = [...(options.algorithms ?? ASYMMETRIC_JWT_ALGORITHMS)];
    const refused = algorithms.filter((a) => !ASYMMETRIC_JWT_ALGORITHMS.includes(a));
    if (algorithms.length === 0 || refused.length > 0) {
      throw new CastellanError(
        'invalid-argument',
        `JWT algorithms must be asymmetric (${ASYMMETRIC_JWT_ALGORITHMS.join(', ')}); refused: ${refused.join(', ') || '(empty list)'}`,
      );
    }
    const skew = options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
    if (!(skew >= 0) || !Number.isFinite(skew)) {
      throw new CastellanError('invalid-argument', `clock skew ${skew} ms is not a duration`);
    }
    this.checks = {
      issuer: options.issuer,
      audiences,
      algorithms,
      clockToleranceSeconds: Math.floor(skew / 1000),
      requiredClaims: ['iss', 'sub', 'aud', 'exp'],
    };
    this.verifier = new JwtVerifier(options.keys, this.checks);
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.cache =
      options.cache === false
        ? undefined
        : new TokenCache('verified JWT cache', { ...options.cache, clock: this.clock });
  }

  /**
   * Checks token signatures on `offload` (the crypto thread) from now on, when it takes them;
   * every check and every refusal stays as it is inline (test/authn/jwt-offload.test.ts).
   * Only tokens the cache does not answer reach it.
   */
  offloadTo(offload: JwtOffload): void {
    this.verifier.offloadTo(offload);
  }

  /** The verified-token cache's counters; undefined without a cache. */
  cacheStats(): TokenCacheStats | undefined {
    return this.cache?.stats();
  }

  async authenticate(request: AuthRequest): Promise<Caller | null> {
    const token = extractBearerToken(request);
    if (token === null) return null;
    if (!this.cache) return (await this.verify(token, request)).caller;
    // Only what the token says is cached: the issuer, keys and audiences are this instance's.
    const verified = await this.cache.lookup(
      TokenCache.key(token),
      () => this.verify(token, request),
      { tokenExpiryMs: (v) => v.expMs },
    );
    return verified.caller;
  }

  private async verify(token: string, request: AuthRequest): Promise<Verified> {
    let payload: JWTPayload;
    try {
      payload = await this.verifier.verify(token, this.clock.now());
    } catch (e) {
      // No cause attached: jose errors carry the claims set, and callers log errors whole.
      const reason = withoutToken(this.reasonFor(e), token);
      this.logger.debug(
        { authenticator: this.name, peer: request.peerAddress, reason },
        'JWT refused',
      );
      throw new CastellanError('unauthenticated', reason);
    }
    // `exp` is a required claim (checked above); an entry never outlives it, even within the
    // clock skew verification tolerates.
    const expMs = typeof payload.exp === 'number' ? payload.exp * 1000 : undefined;
    return { caller: this.callerFrom(payload), expMs };
  }

  private reasonFor(e: unknown): string {
    const now = this.clock.now();
    const { issuer, audiences, algorithms, clockToleranceSeconds: skew } = this.checks;
    if (e instanceof errors.JWTExpired) {
      const exp =
        typeof e.payload.exp === 'number' ? new Date(e.payload.exp * 1000).toISOString() : '?';
      return `token expired at ${exp} (now ${new Date(now).toISOString()}, skew ${skew}s)`;
    }
    if (e instanceof errors.JWTClaimValidationFailed) {
      const p = e.payload;
      switch (e.reason) {
        case 'missing':
          return `token has no "${e.claim}" claim`;
        case 'check_failed':
          if (e.claim === 'iss') {
            return `issuer ${quote(p.iss)} is not the configured issuer ${quote(issuer)}`;
          }
          if (e.claim === 'aud') {
            return `audience ${quote(p.aud)} contains none of the accepted audiences ${quote(audiences)}`;
          }
          if (e.claim === 'nbf') {
            const nbf = typeof p.nbf === 'number' ? new Date(p.nbf * 1000).toISOString() : '?';
            return `token not valid before ${nbf} (now ${new Date(now).toISOString()}, skew ${skew}s)`;
          }
          return `claim "${e.claim}" failed its check: ${e.message}`;
        default:
          return `claim "${e.claim}" is invalid: ${e.message}`;
      }
    }
    if (e instanceof errors.JWSSignatureVerificationFailed)
      return 'token signature does not verify';
    if (e instanceof errors.JOSEAlgNotAllowed)
      return `token algorithm not allowed (accepted: ${algorithms.join(', ')})`;
    if (e instanceof errors.JWKSNoMatchingKey)
      return 'no key in the JWKS matches the token (kid/alg)';
    if (e instanceof errors.JWKSMultipleMatchingKeys)
      return 'several JWKS keys match the token and none verifies it';
    if (e instanceof errors.JWKSTimeout) return 'JWKS fetch timed out';
    if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid)
      return `malformed token: ${e.message}`;
    if (e instanceof errors.JOSENotSupported) return `unsupported token: ${e.message}`;
    if (e instanceof errors.JOSEError) return `token refused (${e.code}): ${e.message}`;
    // Anything else is the key source failing (network, bad JWKS answer): not the token's fault,
    // but the token is not verified either.
    return `cannot verify the token: ${e instanceof Error ? e.message : String(e)}`;
  }

  private callerFrom(payload: JWTPayload): Caller {
    const sub = payload.sub as string;
    const account = parseServiceAccountSubject(sub, 'sub');
    const pod = boundPodOf(payload, account);
    return {
      authenticator: this.name,
      namespace: account.namespace,
      serviceAccount: account.serviceAccount,
      subject: sub,
      podName: pod.name,
      podUid: pod.uid,
    };
  }
}

/**
 * The pod of a bound service account token, from its `kubernetes.io` claim:
 * `{namespace, serviceaccount: {name, uid}, pod: {name, uid}}`. When the claim names a
 * namespace or service account, it must agree with `sub`: a disagreement means a forged or
 * broken token, never something to resolve one way or the other.
 */
function boundPodOf(
  payload: JWTPayload,
  account: { namespace: string; serviceAccount: string },
): { name: string | undefined; uid: string | undefined } {
  const k8s = payload['kubernetes.io'];
  if (k8s === undefined) return { name: undefined, uid: undefined };
  if (typeof k8s !== 'object' || k8s === null) {
    throw new CastellanError('unauthenticated', 'claim "kubernetes.io" is not an object');
  }
  const claim = k8s as Record<string, unknown>;
  if (claim['namespace'] !== undefined && claim['namespace'] !== account.namespace) {
    throw new CastellanError(
      'unauthenticated',
      `claim "kubernetes.io".namespace ${quote(claim['namespace'])} disagrees with sub namespace "${account.namespace}"`,
    );
  }
  const sa = objectOrUndefined(claim['serviceaccount']);
  if (sa?.['name'] !== undefined && sa['name'] !== account.serviceAccount) {
    throw new CastellanError(
      'unauthenticated',
      `claim "kubernetes.io".serviceaccount.name ${quote(sa['name'])} disagrees with sub service account "${account.serviceAccount}"`,
    );
  }
  const pod = objectOrUndefined(claim['pod']);
  return {
    name: typeof pod?.['name'] === 'string' ? pod['name'] : undefined,
    uid: typeof pod?.['uid'] === 'string' ? pod['uid'] : undefined,
  };
}

function objectOrUndefined(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
}
