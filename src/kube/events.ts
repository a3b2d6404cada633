import { randomBytes } from 'node:crypto';
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import { describeApiError } from './client.js';

export interface InvolvedObject {
  readonly kind: string;
  readonly name: string;
  readonly namespace: string;
  readonly uid?: string | undefined;
  readonly apiVersion?: string | undefined;
}

export interface EventInput {
  readonly type: 'Normal' | 'Warning';
  /** CamelCase, machine-readable: `CALoadFailed`, `CARotated`. */
  readonly reason: string;
  readonly message: string;
}

/**
 * Records core/v1 Events on objects (what `kubectl get events --field-selector
 * involvedObject.name=cacerts` lists; `kubectl describe secret` shows none). Recording is
 * best effort: a failure is logged and never fails the caller.
 */
export class EventRecorder {
  constructor(
    private readonly core: CoreV1Api,
    private readonly clock: Clock,
    private readonly component = 'castellan',
    private readonly instance = '',
    private readonly logger: Logger = silentLogger,
  ) {}

  async record(on: InvolvedObject, event: EventInput): Promise<void> {
    const now = new Date(this.clock.now());
    try {
      await this.core.createNamespacedEvent({
        namespace: on.namespace,
        body: {
          metadata: {
            name: `${on.name}.${randomBytes(8).toString('hex')}`,
            namespace: on.namespace,
          },
          involvedObject: {
            kind: on.kind,
            name: on.name,
            namespace: on.namespace,
            ...(on.uid ? { uid: on.uid } : {}),
            apiVersion: on.apiVersion ?? 'v1',
          },
          type: event.type,
          reason: event.reason,
          message: event.message.slice(0, 1024),
          source: { component: this.component, ...(this.instance ? { host: this.instance } : {}) },
          reportingComponent: this.component,
          reportingInstance: this.instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (e) {
      this.logger.warn(
        {
          reason: event.reason,
          object: `${on.kind}/${on.namespace}/${on.name}`,
          error: describeApiError(e),
        },
        'could not record a Kubernetes Event',
      );
    }
  }
}
