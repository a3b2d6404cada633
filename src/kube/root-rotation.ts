import type { CoreV1Api } from '@kubernetes/client-node';
import { PeriodicTask, type Clock } from '../clock.js';
import { reissueRoot, DEFAULT_SELF_SIGNED_TTL_MS } from '../ca/sources/self-signed.js';
import { certificatePem } from '../ca/build-key-cert-bundle.js';
import { silentLogger, type Logger } from '../log.js';
import { describeApiError, ifExists, isApiStatus } from './client.js';
import {
  CA_CERT_KEY,
  ROOT_CERT_SECRET_KEY,
  SELF_SIGNED_SECRET,
  bundleFromSelfSignedSecret,
} from './self-signed-secret.js';
import { DEFAULT_ROOT_ROTATION_CHECK_MS } from './defaults.js';

/** Re-issue when less than this share of the root's lifetime remains (Istio: 20%). */
export const ROOT_ROTATION_THRESHOLD = 0.2;

/** Whether a root valid from notBefore to notAfter needs re-issuing at `now`. */
export function rootNeedsRotation(notBefore: Date, notAfter: Date, now: number): boolean {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return notAfter.getTime() - now < lifetime * ROOT_ROTATION_THRESHOLD;
}

/**
 * Self-signed root rotation, leader only: checks `istio-ca-secret` periodically and, when less
 * than 20% of the root's lifetime remains, re-issues the root with the same key and subject
 * and writes it back with the read resourceVersion (409: someone else wrote; re-read, re-check).
 * Every replica, this one included, picks the new root up from its Secret watch.
 */
export class RootRotator {
  private readonly task: PeriodicTask;
  private readonly logger: Logger;

  constructor(
    private readonly o: {
      core: CoreV1Api;
      namespace: string;
      clock: Clock;
      checkIntervalMs?: number | undefined;
      ttlMs?: number | undefined;
      logger?: Logger | undefined;
    },
  ) {
    this.logger = o.logger ?? silentLogger;
    this.task = new PeriodicTask({
      clock: o.clock,
      intervalMs: o.checkIntervalMs ?? DEFAULT_ROOT_ROTATION_CHECK_MS,
      run: async () => {
        await this.checkOnce();
      },
      onError: (e) =>
        this.logger.warn({ error: describeApiError(e) }, 'root rotation check failed'),
    });
  }

  /** Checks now, then every check interval. */
  start(): void {
    this.task.start({ runNow: true });
  }

  /** No check after this; resolves when a check under way has finished. */
  stop(): Promise<void> {
    return this.task.stop();
  }

  /** One check; resolves true when the root was re-issued. */
  async checkOnce(): Promise<boolean> {
    const { core, namespace, clock } = this.o;
    for (let attempt = 0; attempt < 5; attempt++) {
      const secret = await ifExists(() =>
        core.readNamespacedSecret({ name: SELF_SIGNED_SECRET, namespace }),
      );
      if (!secret) return false; // A plugged-in CA: nothing of ours to rotate.
      const bundle = bundleFromSelfSignedSecret(secret, clock);
      const cert = bundle.signingCert;
      if (!rootNeedsRotation(cert.notBefore, cert.notAfter, clock.now())) return false;
      const next = await reissueRoot(
        bundle,
        bundle.signer,
        clock,
        this.o.ttlMs ?? DEFAULT_SELF_SIGNED_TTL_MS,
      );
      const pem = Buffer.from(certificatePem(next)).toString('base64');
      try {
        await core.replaceNamespacedSecret({
          name: SELF_SIGNED_SECRET,
          namespace,
          body: {
            ...secret,
            data: { ...(secret.data ?? {}), [CA_CERT_KEY]: pem, [ROOT_CERT_SECRET_KEY]: pem },
          },
        });
        this.logger.info(
          { secret: `${namespace}/${SELF_SIGNED_SECRET}`, notAfter: next.notAfter.toISOString() },
          're-issued the self-signed root',
        );
        return true;
      } catch (e) {
        if (!isApiStatus(e, 409)) throw e;
      }
    }
    return false;
  }
}
