import { CastellanError } from '../errors.js';
import type { AuthRequest } from './authenticator.js';

/**
 * Kubernetes service account tokens are 1–2 KiB; anything far larger is not a token we issue or
 * review, and refusing it early keeps a hostile client from making us hash or send megabytes.
 */
export const MAX_BEARER_TOKEN_BYTES = 16 * 1024;

/**
 * The bearer token of a request: `authorization: Bearer <token>` (scheme case-insensitive, RFC
 * 6750 §2.1). Returns null when the request has no authorization header at all, so the caller
 * can pass on to the next authenticator. Throws CastellanError('unauthenticated') when a header
 * is there but unusable. Messages never quote the header value: it may be a valid credential.
 */
export function extractBearerToken(request: AuthRequest): string | null {
  const values = request.metadata['authorization'] ?? [];
  if (values.length === 0) return null;
  if (values.length > 1) {
    throw new CastellanError(
      'unauthenticated',
      `${values.length} authorization headers; exactly one is accepted`,
    );
  }
  const value = (values[0] as string).trim();
  if (Buffer.byteLength(value, 'utf8') > MAX_BEARER_TOKEN_BYTES + 'bearer '.length) {
    throw new CastellanError(
      'unauthenticated',
      `authorization header larger than ${MAX_BEARER_TOKEN_BYTES} bytes`,
    );
  }
  const parts = value.split(/\s+/);
  if (parts[0]?.toLowerCase() !== 'bearer') {
    throw new CastellanError('unauthenticated', 'authorization header is not of the Bearer scheme');
  }
  if (parts.length === 1) {
    throw new CastellanError(
      'unauthenticated',
      'authorization header has the Bearer scheme but no token',
    );
  }
  if (parts.length > 2) {
    throw new CastellanError('unauthenticated', 'authorization header carries more than one token');
  }
  const token = parts[1] as string;
  // RFC 6750 b64token characters; a JWT (base64url parts joined by dots) is within them.
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) {
    throw new CastellanError('unauthenticated', 'bearer token has characters outside RFC 6750');
  }
  return token;
}

/**
 * Replaces every occurrence of the token in a message. Reasons may come from libraries or from
 * the API server; this is the last guard that keeps a credential out of errors and logs.
 */
export function withoutToken(message: string, token: string): string {
  return token.length >= 8 ? message.split(token).join('[token]') : message;
}
