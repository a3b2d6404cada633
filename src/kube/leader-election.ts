import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node';
import type { Clock, Timer } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import { describeApiError, ifExists, isApiStatus } from './client.js';

export interface LeaderElectionOptions {
  readonly coordination: CoordinationV1Api;
  readonly namespace: string;
  /** The Lease's name (`--lease-name`, default `castellan-leader`). */
  readonly leaseName: string;
  /** This replica's identity (pod name + a random suffix). */
  readonly identity: string;
  /** How long a lease holds without renewal. Default 15 s, as client-go's defaults. */
  readonly leaseDurationMs?: number | undefined;
  /** The leader gives up when it could not renew for this long. Default 10 s; < lease duration. */
  readonly renewDeadlineMs?: number | undefined;
  /** Time between attempts. Default 2 s. */
  readonly retryPeriodMs?: number | undefined;
  readonly clock: Clock;
  readonly logger?: Logger | undefined;
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's: every replica tries to
 * create or take over the Lease; the holder renews it; updates carry the resourceVersion, so
 * of two replicas racing for an expired Lease exactly one wins (the other gets 409).
 *
 * Expiry is judged by when *we* last saw the record change (our clock), not by the renewTime
 * written by another machine, so clock skew between replicas does not matter. A leader that
 * cannot renew within renewDeadline steps down — before the lease (leaseDuration) could pass
 * to another replica — so two leaders never overlap as long as renewDeadline < leaseDuration.
 */
export class LeaderElector {
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly logger: Logger;
  private leader = false;
  private lastRenewedAt = 0;
  private observedRv: string | undefined;
  private observedAt = 0;
  private timer: Timer | undefined;
  private running = false;
  private readonly listeners = new Set<(leader: boolean) => void>();

  constructor(private readonly o: LeaderElectionOptions) {
    this.leaseDurationMs = o.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = o.renewDeadlineMs ?? Math.floor((this.leaseDurationMs * 2) / 3);
    this.retryPeriodMs = o.retryPeriodMs ?? Math.max(1, Math.floor(this.leaseDurationMs / 7.5));
    this.logger = o.logger ?? silentLogger;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  /** Called with true on becoming leader and false on losing it. Returns an unsubscribe. */
  onChange(listener: (leader: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  /** Stops campaigning; a leader releases the Lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.running = false;
    this.timer?.cancel();
    if (this.leader) {
      this.setLeader(false);
      await this.release();
    }
  }

  private async loop(): Promise<void> {
    if (!this.running) return;
    try {
      await this.tryAcquireOrRenew();
    } catch (e) {
      this.logger.debug(
        { lease: this.o.leaseName, error: describeApiError(e) },
        'lease attempt failed',
      );
    }
    if (this.leader && this.o.clock.now() - this.lastRenewedAt > this.renewDeadlineMs) {
      this.logger.warn(
        { lease: this.o.leaseName },
        'could not renew the lease in time; stepping down',
      );
      this.setLeader(false);
    }
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- stop() may have run during the await above
    if (!this.running) return;
    // The next attempt is timed from the end of this one (client-go's sliding JitterUntil).
    this.timer = this.o.clock.after(this.retryPeriodMs, () => void this.loop());
  }

  private spec(previous: V1Lease | undefined, now: Date): V1Lease['spec'] {
    const prev = previous?.spec;
    const takingOver = prev?.holderIdentity !== this.o.identity;
    return {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.leaseDurationMs / 1000)),
      acquireTime: takingOver || !prev.acquireTime ? now : prev.acquireTime,
      renewTime: now,
      leaseTransitions: (prev?.leaseTransitions ?? 0) + (previous && takingOver ? 1 : 0),
    };
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { coordination, namespace, leaseName } = this.o;
    const nowMs = this.o.clock.now();
    const now = new Date(nowMs);
    const lease = await ifExists(() =>
      coordination.readNamespacedLease({ name: leaseName, namespace }),
    );
    if (!lease) {
      try {
        await coordination.createNamespacedLease({
          namespace,
          body: { metadata: { name: leaseName, namespace }, spec: this.spec(undefined, now) },
        });
        this.renewed(nowMs);
      } catch (ce) {
        if (!isApiStatus(ce, 409)) throw ce;
      }
      return;
    }
    const rv = lease.metadata?.resourceVersion;
    if (rv !== this.observedRv) {
      this.observedRv = rv;
      this.observedAt = nowMs;
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const durationMs = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    const held =
      holder !== '' && holder !== this.o.identity && this.observedAt + durationMs > nowMs;
    if (held) {
      if (this.leader) this.setLeader(false);
      return;
    }
    try {
      const updated = await coordination.replaceNamespacedLease({
        name: leaseName,
        namespace,
        // eslint-disable-next-line @typescript-eslint/no-misused-spread -- client-node's models are data classes: its serializer reads their fields, not the prototype
        body: { ...lease, spec: this.spec(lease, now) },
      });
      this.observedRv = updated.metadata?.resourceVersion;
      this.observedAt = nowMs;
      this.renewed(nowMs);
    } catch (e) {
      // 409: someone else wrote the Lease first; we learn who on the next attempt.
      if (!isApiStatus(e, 409)) throw e;
    }
  }

  private renewed(nowMs: number): void {
    this.lastRenewedAt = nowMs;
    if (!this.leader) {
      this.logger.info({ lease: this.o.leaseName, identity: this.o.identity }, 'became leader');
      this.setLeader(true);
    }
  }

  private setLeader(leader: boolean): void {
    if (this.leader === leader) return;
    this.leader = leader;
    if (!leader)
      this.logger.info({ lease: this.o.leaseName, identity: this.o.identity }, 'no longer leader');
    for (const l of this.listeners) {
      try {
        l(leader);
      } catch (e) {
        this.logger.error({ error: String(e) }, 'leadership listener failed');
      }
    }
  }

  private async release(): Promise<void> {
    const { coordination, namespace, leaseName } = this.o;
    try {
      const lease = await coordination.readNamespacedLease({ name: leaseName, namespace });
      if (lease.spec?.holderIdentity !== this.o.identity) return;
      await coordination.replaceNamespacedLease({
        name: leaseName,
        namespace,
        body: {
          // eslint-disable-next-line @typescript-eslint/no-misused-spread -- client-node's models are data classes: its serializer reads their fields, not the prototype
          ...lease,
          spec: {
            // eslint-disable-next-line @typescript-eslint/no-misused-spread -- client-node's models are data classes: its serializer reads their fields, not the prototype
            ...lease.spec,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            renewTime: new Date(this.o.clock.now()),
          },
        },
      });
    } catch (e) {
      this.logger.debug({ lease: leaseName, error: describeApiError(e) }, 'lease release failed');
    }
  }
}

/**
 * Runs `start` while this replica leads and calls what it returned when leadership is lost:
 * the shape of all leader-only work (root publication, root rotation).
 */
export function whileLeader(
  elector: LeaderElector,
  start: () => () => void | Promise<void>,
): () => Promise<void> {
  let stop: (() => void | Promise<void>) | undefined;
  const apply = (leader: boolean): void => {
    if (leader && !stop) stop = start();
    else if (!leader && stop) {
      const s = stop;
      stop = undefined;
      void s();
    }
  };
  const unsubscribe = elector.onChange(apply);
  apply(elector.isLeader);
  return async () => {
    unsubscribe();
    if (stop) {
      const s = stop;
      stop = undefined;
      await s();
    }
  };
}
