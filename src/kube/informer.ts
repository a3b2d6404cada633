import {
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Clock, Timer } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import { describeApiError } from './client.js';

export interface InformerHandlers<T extends KubernetesObject> {
  /** Added or changed (including objects found by a relist). */
  upsert?(obj: T): void;
  deleted?(obj: T): void;
}

export interface Informer<T extends KubernetesObject> {
  /** The cached objects (all namespaces watched). */
  list(): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  /** Resolves once the first list has been delivered. */
  readonly synced: Promise<void>;
  stop(): Promise<void>;
}

/**
 * List + watch of one resource path that survives API server outages: the client library's
 * ListWatch resumes from its resourceVersion and relists on 410 Gone; on any other error
 * (connection refused, server gone) we start it again after `retryMs`, forever, until stopped.
 */
export function startInformer<T extends KubernetesObject>(options: {
  kubeConfig: KubeConfig;
  /** e.g. `/api/v1/namespaces/istio-system/secrets` or `/api/v1/namespaces`. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  handlers: InformerHandlers<T>;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
  /** Times the restart after a failed watch. */
  clock: Clock;
  retryMs?: number | undefined;
  logger?: Logger | undefined;
}): Informer<T> {
  const logger = options.logger ?? silentLogger;
  const retryMs = options.retryMs ?? 1000;
  let stopped = false;
  let timer: Timer | undefined;
  let markSynced: () => void = () => {};
  const synced = new Promise<void>((resolve) => (markSynced = resolve));
  const listFn = async (): Promise<KubernetesListObject<T>> => {
    const l = await options.list();
    // Handlers run for the list's items before the promise settles; mark synced right after.
    queueMicrotask(markSynced);
    return l;
  };
  const lw = new ListWatch<T>(
    options.path,
    new Watch(options.kubeConfig),
    listFn,
    false,
    options.labelSelector,
    options.fieldSelector,
  );
  lw.on('add', (o) => options.handlers.upsert?.(o));
  lw.on('update', (o) => options.handlers.upsert?.(o));
  lw.on('delete', (o) => options.handlers.deleted?.(o));
  lw.on('error', (e: unknown) => {
    if (stopped) return;
    logger.debug({ path: options.path, error: describeApiError(e) }, 'watch failed; retrying');
    timer?.cancel();
    timer = options.clock.after(retryMs, () => {
      if (!stopped) void lw.start();
    });
  });
  void lw.start();
  return {
    list: () => lw.list(),
    get: (name, namespace) => lw.get(name, namespace),
    synced,
    stop: async () => {
      stopped = true;
      timer?.cancel();
      await lw.stop();
    },
  };
}
