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

/**
 * Re-issue when at most this percentage of the root's lifetime remains: istiod's default
 * CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE (security/pkg/cmd/constants.go).
 */
export const DEFAULT_ROOT_ROTATION_GRACE_PERCENT = 20;

/**
 * Whether a root valid from notBefore to notAfter needs re-issuing at `now`, as istiod decides
 * it (security/pkg/util/certutil.go, GetWaitTime): the grace period is `gracePercent` of the
 * lifetime, and the root is re-issued once the time left is no more than that (at the boundary
 * too: istiod waits only while the wait is positive), or when it has expired.
 */
export function rootNeedsRotation(
  notBefore: Date,
  notAfter: Date,
  now: number,
  gracePercent = DEFAULT_ROOT_ROTATION_GRACE_PERCENT,
): boolean {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return notAfter.getTime() - now <= lifetime * (gracePercent / 100);
}

/**
 * Self-signed root rotation, leader only: checks `istio-ca-secret` periodically and, when at most
 * the grace percentage (default 20%) of the root's lifetime remains, re-issues the root with the
 * same key and subject and writes it back with the read resourceVersion (409: someone else
 * wrote; re-read, re-check). Every replica, this one included, picks the new root up from its
 * Secret watch. A check interval of 0 turns the checks off, as istiod's
 * CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL ≤ 0 does (security/pkg/pki/ca/ca.go, NewIstioCA).
 */
export class RootRotator {
  /** Undefined: checks are off. */
  private readonly task: PeriodicTask | undefined;
  private readonly logger: Logger;

  constructor(
    private readonly o: {
      core: CoreV1Api;
      namespace: string;
      clock: Clock;
      /** Default DEFAULT_ROOT_ROTATION_CHECK_MS; 0 = never. */
      checkIntervalMs?: number | undefined;
      /** Default DEFAULT_ROOT_ROTATION_GRACE_PERCENT. */
      gracePercent?: number | undefined;
      ttlMs?: number | undefined;
      logger?: Logger | undefined;
    },
  ) {
    this.logger = o.logger ?? silentLogger;
    const intervalMs = o.checkIntervalMs ?? DEFAULT_ROOT_ROTATION_CHECK_MS;
    this.task =
      intervalMs > 0
        ? new PeriodicTask({
            clock: o.clock,
            intervalMs,
            run: async () => {
              await this.checkOnce();
            },
            onError: (e) =>
              this.logger.warn({ error: describeApiError(e) }, 'root rotation check failed'),
          })
        : undefined;
  }

  /** Checks now, then every check interval (with checks off: nothing, said once in the log). */
  start(): void {
    if (!this.task) {
      this.logger.info(
        { secret: `${this.o.namespace}/${SELF_SIGNED_SECRET}` },
        'self-signed root checks are off (check interval 0): the root is never re-issued',
      );
      return;
    }
    this.task.start({ runNow: true });
  }

  /** No check after this; resolves when a check under way has finished. */
  async stop(): Promise<void> {
    await this.task?.stop();
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
      if (!rootNeedsRotation(cert.notBefore, cert.notAfter, clock.now(), this.o.gracePercent)) {
        return false;
      }
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
            // eslint-disable-next-line @typescript-eslint/no-misused-spread -- client-node's models are data classes: its serializer reads their fields, not the prototype
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
