// Shared by the authn tests: requests, keys and tokens made in-test with jose.
import {
  generateKeyPair,
  exportJWK,
  SignJWT,
  type JWK,
  type JWTPayload,
  type CryptoKey,
} from 'jose';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuthRequest } from '../../src/authn/authenticator.js';
import { pemBlocksOf } from '../../src/pki/pem.js';
import { istioSampleCerts } from '../support/paths.js';

export function authRequest(
  metadata: Record<string, string[]> = {},
  peerCertificates: Uint8Array[] = [],
): AuthRequest {
  return { metadata, peerCertificates, peerAddress: '127.0.0.1:40000' };
}

export function bearer(token: string): AuthRequest {
  return authRequest({ authorization: [`Bearer ${token}`] });
}

/** Each PEM certificate of a file, as DER, in order: a chain as a TLS peer presents it. */
export function certificateDers(file: string): Uint8Array[] {
  return pemBlocksOf(readFileSync(file, 'utf8'), 'CERTIFICATE', { subject: file });
}

/** The certificates of one of Istio's sample files (istio-sample-certs), as DER. */
export function sampleCertDers(name: string): Uint8Array[] {
  return certificateDers(join(istioSampleCerts, name));
}

export interface SigningKey {
  readonly alg: 'ES256' | 'RS256';
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function signingKey(alg: 'ES256' | 'RS256', kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicJwk };
}

export const ISSUER = 'https://kubernetes.default.svc.cluster.local';
/** 2026-01-01T00:00:00Z in seconds, the ManualClock's default. */
export const NOW_S = Date.UTC(2026, 0, 1) / 1000;

/** A token shaped like a Kubernetes bound service account token; `claims` overrides any part. */
export async function k8sToken(
  key: SigningKey,
  claims: JWTPayload = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  const payload: JWTPayload = {
    iss: ISSUER,
    sub: 'system:serviceaccount:default:sleep',
    aud: ['istio-ca'],
    iat: NOW_S - 60,
    nbf: NOW_S - 60,
    exp: NOW_S + 3600,
    'kubernetes.io': {
      namespace: 'default',
      serviceaccount: { name: 'sleep', uid: 'a3e1c1f0-0000-4000-8000-000000000001' },
      pod: { name: 'sleep-7d9c', uid: 'b4f2d2e1-0000-4000-8000-000000000002' },
    },
    ...claims,
  };
  return new SignJWT(Object.fromEntries(Object.entries(payload).filter(([, v]) => v !== undefined)))
    .setProtectedHeader({ alg: key.alg, kid: key.kid, ...header })
    .sign(key.privateKey);
}
