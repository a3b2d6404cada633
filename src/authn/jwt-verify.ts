import { KeyObject } from 'node:crypto';
import { TokenError } from 'fast-jwt';
import {
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JWSAlgorithm,
  type JWTPayload,
  type ProtectedHeaderParameters,
} from 'jose';
import { CastellanError } from '../errors.js';
import { makeFastJwtVerifier, type JwtOffload, type Verifier } from './fast-jwt-check.js';
import type { JwksKeySource } from './jwks.js';

/** What a key source hands out: jose's sets give CryptoKeys (imported once per JWK, cached). */
type SourceKey = object;

export interface JwtVerifyOptions {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly algorithms: readonly JWSAlgorithm[];
  readonly clockToleranceSeconds: number;
  readonly requiredClaims: readonly string[];
}

/**
 * Verifies compact JWTs: jose picks the key (the JWKS sources, `kid`/`alg` matching, remote
 * refresh) and fast-jwt checks the signature and claims with node:crypto, synchronously.
 *
 * Why not jose's jwtVerify, which did all of it before: jose verifies through WebCrypto, whose
 * JavaScript layers (algorithm normalisation, WebIDL conversions, a job and a promise per call)
 * took ≈ 25% of the event loop's time per issued certificate under load (docs/performance.md);
 * fast-jwt verifies an RS256 token in ≈ 25 µs of CPU against ≈ 85 µs through jose.
 *
 * The checks are jose's, as JwtAuthenticator relied on them: the algorithm must be in
 * `algorithms` before any key is looked up (so `none` and HS* never reach a key); `iss` exactly;
 * `aud` containing one of `audiences`; `requiredClaims` present; `exp`, `nbf` and `iat` numbers,
 * with `exp`/`nbf` checked against the given time with the tolerance exactly as jose does
 * (seconds, floored) and reported with jose's error classes — fast-jwt reads the wall clock, and
 * the authenticator's clock is injected.
 */
export class JwtVerifier {
  /** One fast-jwt verifier per source key and algorithm: making one parses the key (≈ 120 µs). */
  private readonly verifiers = new WeakMap<SourceKey, Map<string, Verifier>>();
  /** Each source key's SPKI PEM, for offloaded checks. */
  private readonly pems = new WeakMap<SourceKey, string>();
  private offload: JwtOffload | undefined;

  constructor(
    private readonly keys: JwksKeySource,
    private readonly options: JwtVerifyOptions,
  ) {}

  /**
   * From now on, signatures are checked on `offload` when it takes them (the crypto thread):
   * the same fast-jwt checks, made the same way, and its refusals mapped as inline ones.
   */
  offloadTo(offload: JwtOffload): void {
    this.offload = offload;
  }

  async verify(token: string, nowMs: number): Promise<JWTPayload> {
    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch (e) {
      // A TypeError from jose's decoder: not a compact JWT at all.
      throw new errors.JWTInvalid(e instanceof Error ? e.message : 'not a compact JWT');
    }
    const alg = header.alg;
    if (typeof alg !== 'string' || !this.options.algorithms.includes(alg)) {
      throw new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed');
    }
    const candidates = await this.keysFor({ ...header, alg });
    let payload: JWTPayload | undefined;
    for (const key of candidates) {
      try {
        payload = await this.check(key, alg, token);
        break;
      } catch (e) {
        // Several keys may match a token without a kid: the first that verifies wins, as in
        // jose; when none does, jose's error for that case.
        if (candidates.length > 1 && isSignatureFailure(e)) continue;
        throw asJoseError(e, token);
      }
    }
    if (payload === undefined) throw new errors.JWKSMultipleMatchingKeys();
    checkTimes(payload, Math.floor(nowMs / 1000), this.options.clockToleranceSeconds);
    return payload;
  }

  /** The key(s) for this token; several when the JWKS cannot tell them apart. */
  private async keysFor(header: ProtectedHeaderParameters & { alg: string }): Promise<SourceKey[]> {
    try {
      return [await this.keys(header, { payload: '', signature: '' })];
    } catch (e) {
      if (!(e instanceof errors.JWKSMultipleMatchingKeys)) throw e;
      const all: SourceKey[] = [];
      for await (const key of e) all.push(key);
      return all;
    }
  }

  /** fast-jwt's check of the token with this key: on the offload when it takes it, else here. */
  private check(key: SourceKey, alg: string, token: string): JWTPayload | Promise<JWTPayload> {
    if (!this.offload) return this.verifierFor(key, alg)(token);
    const { issuer, audiences, requiredClaims } = this.options;
    const sent = this.offload.verifyJwt({
      token,
      keyPem: this.pemOf(key),
      alg,
      issuer,
      audiences,
      requiredClaims,
    });
    if (!sent) return this.verifierFor(key, alg)(token);
    return sent.then(
      (result) => {
        if (result.ok) return result.payload;
        // As the inline verifier would have thrown it (asJoseError reads code and message).
        throw result.tokenError
          ? new TokenError(result.code as never, result.message)
          : new Error(result.message);
      },
      // The thread stopped holding it: checked here, never refused for that.
      () => this.verifierFor(key, alg)(token),
    );
  }

  private pemOf(key: SourceKey): string {
    let pem = this.pems.get(key);
    if (pem === undefined) {
      pem = spkiPem(key);
      this.pems.set(key, pem);
    }
    return pem;
  }

  private verifierFor(key: SourceKey, alg: string): Verifier {
    let byAlg = this.verifiers.get(key);
    if (!byAlg) {
      byAlg = new Map();
      this.verifiers.set(key, byAlg);
    }
    let verifier = byAlg.get(alg);
    if (!verifier) {
      const { issuer, audiences, requiredClaims } = this.options;
      verifier = makeFastJwtVerifier({
        keyPem: this.pemOf(key),
        alg,
        issuer,
        audiences,
        requiredClaims,
      });
      byAlg.set(alg, verifier);
    }
    return verifier;
  }
}

function spkiPem(key: SourceKey): string {
  let keyObject: KeyObject;
  if (key instanceof KeyObject) keyObject = key;
  else if ('algorithm' in key && 'type' in key) {
    keyObject = KeyObject.from(key as Parameters<typeof KeyObject.from>[0]);
  } else {
    throw new CastellanError('internal', 'the JWT key source returned something not a public key');
  }
  if (keyObject.type !== 'public') {
    throw new CastellanError('internal', 'the JWT key source returned a non-public key');
  }
  return keyObject.export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * fast-jwt's refusal as the jose error jwtVerify threw for the same token, so that callers (and
 * their reasons) see one vocabulary. Anything unforeseen stays a TokenError.
 */
function asJoseError(e: unknown, token: string): unknown {
  if (!(e instanceof TokenError)) return e;
  const codes = TokenError.codes;
  const claim = /^(?:The|None of) (\w+) claim/.exec(e.message)?.[1] ?? 'unspecified';
  const payload = (): JWTPayload => {
    try {
      return decodeJwt(token);
    } catch {
      return {};
    }
  };
  switch (e.code) {
    case codes.invalidSignature:
      return new errors.JWSSignatureVerificationFailed();
    case codes.invalidAlgorithm:
      return new errors.JOSEAlgNotAllowed(e.message);
    case codes.missingRequiredClaim:
      return new errors.JWTClaimValidationFailed(e.message, payload(), claim, 'missing');
    case codes.invalidClaimValue:
      // A value of the right type that is not accepted (iss, aud); the wrong type is 'invalid'.
      return /must be/.test(e.message)
        ? new errors.JWTClaimValidationFailed(e.message, payload(), claim, 'invalid')
        : new errors.JWTClaimValidationFailed(e.message, payload(), claim, 'check_failed');
    case codes.invalidClaimType:
      return new errors.JWTClaimValidationFailed(e.message, payload(), claim, 'invalid');
    case codes.malformed:
    case codes.invalidPayload:
    case codes.missingSignature:
      return new errors.JWTInvalid(e.message);
    case codes.invalidCritHeader:
      return new errors.JOSENotSupported(e.message);
    default:
      return e;
  }
}

function isSignatureFailure(e: unknown): boolean {
  return e instanceof TokenError && e.code === TokenError.codes.invalidSignature;
}

/** jose's exp/nbf/iat checks (lib/jwt_claims_set.ts): `now` in seconds. */
function checkTimes(payload: JWTPayload, now: number, tolerance: number): void {
  const invalid = (claim: string): Error =>
    new errors.JWTClaimValidationFailed(
      `"${claim}" claim must be a number`,
      payload,
      claim,
      'invalid',
    );
  if (payload.iat !== undefined && typeof payload.iat !== 'number') throw invalid('iat');
  if (payload.nbf !== undefined) {
    if (typeof payload.nbf !== 'number') throw invalid('nbf');
    if (payload.nbf > now + tolerance) {
      throw new errors.JWTClaimValidationFailed(
        '"nbf" claim timestamp check failed',
        payload,
        'nbf',
        'check_failed',
      );
    }
  }
  if (payload.exp !== undefined) {
    if (typeof payload.exp !== 'number') throw invalid('exp');
    if (payload.exp <= now - tolerance) {
      throw new errors.JWTExpired(
        '"exp" claim timestamp check failed',
        payload,
        'exp',
        'check_failed',
      );
    }
  }
}
