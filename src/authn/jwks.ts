import { readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  type FetchImplementation,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
} from 'jose';
import { CastellanError } from '../errors.js';

/** A key resolver as jose's jwtVerify takes it: picks the key for a token's `alg` and `kid`. */
export type JwksKeySource = JWTVerifyGetKey;

/** A JWKS document is small; a larger answer is a misconfigured or hostile endpoint. */
const MAX_JWKS_BYTES = 1024 * 1024;

/**
 * Checks a parsed JWKS document: a `keys` array of public, asymmetric keys. A symmetric (`oct`)
 * key or a private part (`d`) in a trust anchor is a configuration mistake we refuse loudly.
 */
export function parseJwks(json: unknown, subject: string): JSONWebKeySet {
  if (
    typeof json !== 'object' ||
    json === null ||
    !Array.isArray((json as { keys?: unknown }).keys)
  ) {
    throw new CastellanError('malformed', 'not a JWKS: expected an object with a "keys" array', {
      subject,
    });
  }
  const keys = (json as { keys: unknown[] }).keys;
  if (keys.length === 0) {
    throw new CastellanError('malformed', 'the JWKS holds no keys', { subject });
  }
  keys.forEach((key, i) => {
    if (typeof key !== 'object' || key === null) {
      throw new CastellanError('malformed', `keys[${i}] is not an object`, { subject });
    }
    const k = key as Record<string, unknown>;
    if (k['kty'] !== 'RSA' && k['kty'] !== 'EC' && k['kty'] !== 'OKP') {
      throw new CastellanError(
        'unsupported',
        `keys[${i}]: kty ${JSON.stringify(k['kty'])} is not an asymmetric key type (RSA, EC, OKP)`,
        { subject },
      );
    }
    if ('d' in k) {
      throw new CastellanError(
        'malformed',
        `keys[${i}] holds a private key; publish public keys only`,
        {
          subject,
        },
      );
    }
  });
  return json as JSONWebKeySet;
}

/** Reads a JWKS file (`--jwks-file`) once; refusals name the file. */
export async function loadJwksFile(path: string): Promise<JwksKeySource> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CastellanError(
      'invalid-argument',
      `cannot read the JWKS file: ${(e as Error).message}`,
      {
        subject: path,
        cause: e,
      },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CastellanError('malformed', `not JSON: ${(e as Error).message}`, { subject: path });
  }
  return createLocalJWKSet(parseJwks(json, path));
}

export interface RemoteJwksOptions {
  /** PEM CA bundle to trust for an https URL (e.g. the API server's CA); default: Node's roots. */
  readonly ca?: string | Buffer | undefined;
  /** Extra request headers, e.g. `authorization` for the API server's JWKS endpoint. */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** A fetch to use instead of ours (it then owns TLS settings; `ca` is ignored). */
  readonly fetch?: FetchImplementation | undefined;
  /** How long fetched keys are used before a refetch (default 10 min). */
  readonly cacheMaxAgeMs?: number | undefined;
  /** Minimum time between refetches triggered by an unknown `kid` (default 30 s). */
  readonly cooldownMs?: number | undefined;
  /** Timeout of one fetch (default 5 s). */
  readonly timeoutMs?: number | undefined;
}

/**
 * A JWKS fetched from a URL, cached and refreshed by jose: refetched when older than
 * cacheMaxAgeMs, or when a token names a key we do not have (rotation), at most once per
 * cooldown. Used for issuer discovery (`--jwt-offline`), where the keys live at the API server.
 */
export function remoteJwks(url: URL, options: RemoteJwksOptions = {}): JwksKeySource {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new CastellanError('invalid-argument', `JWKS URL ${url.href} is not http(s)`);
  }
  const fetchImpl = options.fetch ?? nodeFetch(options.ca);
  return createRemoteJWKSet(url, {
    ...(options.headers ? { headers: { ...options.headers } } : {}),
    ...(options.cacheMaxAgeMs !== undefined ? { cacheMaxAge: options.cacheMaxAgeMs } : {}),
    ...(options.cooldownMs !== undefined ? { cooldownDuration: options.cooldownMs } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutDuration: options.timeoutMs } : {}),
    [customFetch]: fetchImpl,
  });
}

/**
 * A minimal fetch over node:http(s): Node 20's global fetch cannot be given a CA bundle without
 * undici internals, and the API server's CA is usually private. No redirects are followed, as
 * jose asks (`redirect: 'manual'`), and the body is capped.
 */
function nodeFetch(ca: string | Buffer | undefined): FetchImplementation {
  return (url, options) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      const headers: Record<string, string> = {};
      options.headers.forEach((value, name) => {
        headers[name] = value;
      });
      const onResponse = (res: IncomingMessage): void => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_JWKS_BYTES) {
            res.destroy(
              new Error(`JWKS response from ${target.origin} exceeds ${MAX_JWKS_BYTES} bytes`),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', reject);
        res.on('end', () => {
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (typeof value === 'string') responseHeaders.set(name, value);
          }
          resolve(
            new Response(Buffer.concat(chunks), {
              status: res.statusCode ?? 500,
              headers: responseHeaders,
            }),
          );
        });
      };
      const common = { method: options.method, headers, signal: options.signal };
      const req =
        target.protocol === 'https:'
          ? httpsRequest(target, { ...common, ...(ca !== undefined ? { ca } : {}) }, onResponse)
          : httpRequest(target, common, onResponse);
      req.on('error', reject);
      req.end();
    });
}
