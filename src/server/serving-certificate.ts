import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { experimental } from '@grpc/grpc-js';
import type { CaSnapshot, CaState } from '../ca/key-cert-bundle.js';
import { NOT_BEFORE_BACKDATE_MS } from '../ca/issue-workload.js';
import type { Clock, Timer } from '../clock.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** What the serving certificate must cover. */
export interface ServingNames {
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
}

/** Asks the CA for a serving certificate (serverAuth profile) for this public key; PEM out. */
export type ServingCertificateIssuer = (
  snapshot: CaSnapshot,
  request: {
    readonly publicKey: KeyObject;
    readonly names: ServingNames;
    readonly notBefore: Date;
    readonly notAfter: Date;
  },
) => Promise<string>;

export interface ServingIdentity {
  /** The serving leaf, then the CA chain (intermediates), PEM. */
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly notAfter: Date;
  /** The CA generation it was issued under. */
  readonly generation: number;
}

const DEFAULT_TTL_MS = 30 * 86_400_000;

/**
 * The gRPC listener's TLS identity, issued by our own CA and re-issued whenever the CA changes
 * (CaState.onChange) or half its lifetime has passed — without restarting the listener:
 * it is a grpc-js CertificateProvider, and the server swaps its secure context on each update.
 * The CA update carries the root bundle, used to verify optional client certificates.
 */
export class ServingCertificateManager implements CertificateProvider {
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private identity: ServingIdentity | undefined;
  private rootsPem: string | undefined;
  private renewTimer: Timer | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Serialises issuance so a burst of CA changes ends with the newest one. */
  private pending: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly options: {
      readonly caState: CaState;
      readonly issuer: ServingCertificateIssuer;
      readonly names: ServingNames;
      readonly clock: Clock;
      readonly ttlMs?: number;
      readonly logger?: Logger;
    },
  ) {}

  /** Issues the first certificate if the CA is loaded, and follows the CA from now on. */
  async start(): Promise<void> {
    this.unsubscribe = this.options.caState.onChange((snapshot) => {
      void this.refresh(snapshot);
    });
    const snapshot = this.options.caState.current();
    if (snapshot) await this.refresh(snapshot);
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.renewTimer?.cancel();
  }

  current(): ServingIdentity | undefined {
    return this.identity;
  }

  /** Re-issues for this snapshot (queued behind any issuance in progress). */
  refresh(snapshot: CaSnapshot): Promise<void> {
    this.pending = this.pending.then(() => this.issue(snapshot));
    return this.pending;
  }

  private async issue(snapshot: CaSnapshot): Promise<void> {
    if (this.stopped) return;
    const log = this.options.logger ?? silentLogger;
    // A newer snapshot may have arrived while this one waited in the queue.
    const latest = this.options.caState.current() ?? snapshot;
    try {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const now = this.options.clock.now();
      const caNotAfter = latest.bundle.signingCert.notAfter.getTime();
      const notAfter = new Date(Math.min(now + (this.options.ttlMs ?? DEFAULT_TTL_MS), caNotAfter));
      const leafPem = await this.options.issuer(latest, {
        publicKey,
        names: this.options.names,
        notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
        notAfter,
      });
      const intermediates = latest.bundle.responseChainPem.filter(
        (pem) => !latest.bundle.rootBundlePem.includes(pem.trim()),
      );
      this.identity = {
        certChainPem: [withNewline(leafPem), ...intermediates.map(withNewline)].join(''),
        keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
        notAfter,
        generation: latest.generation,
      };
      this.rootsPem = latest.bundle.rootBundlePem;
      this.publish();
      this.scheduleRenewal(now, notAfter.getTime());
      log.info(
        {
          generation: latest.generation,
          notAfter: notAfter.toISOString(),
          names: this.options.names,
        },
        'serving certificate issued',
      );
    } catch (e) {
      // Keep serving with the previous certificate; the next CA change or timer retries.
      log.error({ err: e }, 'could not issue the serving certificate');
    }
  }

  private scheduleRenewal(now: number, notAfterMs: number): void {
    this.renewTimer?.cancel();
    // Clock timers chain delays beyond Node's 2^31-1 ms limit: half the lifetime, however long.
    const delay = Math.max((notAfterMs - now) / 2, 1000);
    this.renewTimer = this.options.clock.after(delay, () => {
      const snapshot = this.options.caState.current();
      if (snapshot) void this.refresh(snapshot);
    });
  }

  private publish(): void {
    for (const l of this.caListeners) this.sendCa(l);
    for (const l of this.identityListeners) this.sendIdentity(l);
  }

  private sendCa(listener: CaListener): void {
    if (this.rootsPem) listener({ caCertificate: Buffer.from(this.rootsPem) });
  }

  private sendIdentity(listener: IdentityListener): void {
    if (this.identity) {
      listener({
        certificate: Buffer.from(this.identity.certChainPem),
        privateKey: Buffer.from(this.identity.keyPem),
      });
    }
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    // grpc-js registers its own watcher only after this returns: deliver on the next tick.
    queueMicrotask(() => {
      if (this.caListeners.has(listener)) this.sendCa(listener);
    });
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identityListeners.has(listener)) this.sendIdentity(listener);
    });
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}
