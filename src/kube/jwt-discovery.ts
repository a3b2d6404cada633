import type { KubeConfig } from '@kubernetes/client-node';
import { createLocalJWKSet, type JWTVerifyGetKey } from 'jose';
import { PeriodicTask, type Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import { parseJwks } from '../authn/jwks.js';
import { silentLogger, type Logger } from '../log.js';
import { getJson } from './client.js';

export const DEFAULT_JWKS_REFRESH_MS = 5 * 60_000;
/** A token with an unknown `kid` triggers a refresh, at most this often. */
const MIN_REFETCH_MS = 30_000;

/**
 * Offline verification keys for `--jwt-offline`: the API server's service account issuer
 * discovery (`/.well-known/openid-configuration`, then its JWKS), fetched through the API
 * server with our kubeconfig's TLS and credentials (the issuer URL itself is often not
 * reachable from the pod), cached, and refreshed in the background. When the API server is
 * down the last keys keep verifying, so issuing goes on.
 */
export class ApiServerJwks {
  private local: JWTVerifyGetKey | undefined;
  private issuerValue = '';
  private lastFetch = 0;
  private readonly refresher: PeriodicTask;
  private readonly logger: Logger;

  constructor(
    private readonly o: {
      kubeConfig: KubeConfig;
      clock: Clock;
      refreshMs?: number | undefined;
      logger?: Logger | undefined;
    },
  ) {
    this.logger = o.logger ?? silentLogger;
    this.refresher = new PeriodicTask({
      clock: o.clock,
      intervalMs: o.refreshMs ?? DEFAULT_JWKS_REFRESH_MS,
      run: () => this.refresh(),
      onError: (e) =>
        this.logger.warn(
          { error: (e as Error).message },
          'JWKS refresh failed; keeping the cached keys',
        ),
    });
  }

  /** The `iss` tokens carry, from the discovery document. */
  get issuer(): string {
    return this.issuerValue;
  }

  /** Fetches once (must succeed: startup needs the issuer), then refreshes periodically. */
  async start(): Promise<void> {
    await this.refresh();
    this.refresher.start();
  }

  /** No refresh after this; resolves when a refresh under way has finished. */
  stop(): Promise<void> {
    return this.refresher.stop();
  }

  async refresh(): Promise<void> {
    this.lastFetch = this.o.clock.now();
    const conf = await getJson(this.o.kubeConfig, '/.well-known/openid-configuration');
    const issuer = (conf as { issuer?: unknown }).issuer;
    const jwksUri = (conf as { jwks_uri?: unknown }).jwks_uri;
    if (typeof issuer !== 'string' || issuer === '' || typeof jwksUri !== 'string') {
      throw new CastellanError('malformed', 'the openid-configuration has no issuer or jwks_uri', {
        subject: '/.well-known/openid-configuration',
      });
    }
    // Through the API server: only the path of jwks_uri counts.
    const path = new URL(jwksUri, 'https://unused').pathname;
    const jwks = parseJwks(await getJson(this.o.kubeConfig, path), path);
    this.issuerValue = issuer;
    this.local = createLocalJWKSet(jwks);
    this.logger.debug({ issuer, keys: jwks.keys.length }, 'service account issuer keys loaded');
  }

  /** The key resolver for the JWT authenticator. */
  readonly keys: JWTVerifyGetKey = async (header, token) => {
    if (!this.local) throw new CastellanError('unavailable', 'issuer keys not loaded yet');
    try {
      return await this.local(header, token);
    } catch (e) {
      // An unknown kid may be a rotated key: refetch (rate-limited) and retry once.
      if (this.o.clock.now() - this.lastFetch < MIN_REFETCH_MS) throw e;
      await this.refresh().catch(() => undefined);
      return this.local(header, token);
    }
  };
}
