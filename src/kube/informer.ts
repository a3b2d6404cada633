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
  /**
   * Applied to every object before it is cached or handed to the handlers (listed or watched),
   * e.g. to keep only the fields a cluster-wide watch needs, as Istio's informers strip pods
   * (kube.StripPodUnusedFields). Must keep `metadata.name`, `namespace` and `resourceVersion`.
   */
  transform?: ((obj: T) => T) | undefined;
}): Informer<T> {
  const logger = options.logger ?? silentLogger;
  const retryMs = options.retryMs ?? 1000;
  let stopped = false;
  let timer: Timer | undefined;
  let markSynced: () => void = () => {};
  const synced = new Promise<void>((resolve) => (markSynced = resolve));
  const transform = options.transform;
  // Consecutive failed lists and watches: the first of a run is a warning (an operator must see
  // that the API server cannot be reached or refuses us), the rest of the run debug lines, and
  // the list or accepted watch that ends it says so (resumed).
  let failures = 0;
  // A list, or a watch the server accepted: ListWatch resumes a failed watch from its
  // resourceVersion without listing again (found in review: the run never ended then, and the
  // next outage, days later, was a debug line).
  const resumed = (): void => {
    if (failures === 0) return;
    logger.info({ path: options.path, failures }, 'list and watch resumed');
    failures = 0;
  };
  const listFn = async (): Promise<KubernetesListObject<T>> => {
    const l = await options.list();
    resumed();
    // Handlers run for the list's items before the promise settles; mark synced right after.
    queueMicrotask(markSynced);
    return transform ? { ...l, items: l.items.map(transform) } : l;
  };
  const watch = new Watch(options.kubeConfig);
  const startWatch = watch.watch.bind(watch);
  // client-node's ListWatch keeps the watch's AbortController only once the response has come
  // (`this.request = await watch.watch(...)`), and starts a watch after a list even when stop()
  // came during the list: a stop() in either window aborts nothing, and that watch stays open
  // for good, keeping the process alive after SIGTERM. Aborted here instead.
  watch.watch = async (path, query, callback, done) => {
    if (stopped) {
      const aborted = new AbortController();
      aborted.abort();
      return aborted;
    }
    // client-node resolves a refused watch too, having called `done` with the error first: only
    // a watch not ended by then is streaming.
    let ended = false;
    const controller = await startWatch(
      path,
      query,
      transform
        ? // ERROR events carry a Status (a 410 code ListWatch reads), BOOKMARKs only a resourceVersion.
          (phase: string, obj: unknown, raw: unknown) =>
            callback(
              phase,
              phase === 'ERROR' || phase === 'BOOKMARK' ? obj : transform(obj as T),
              raw,
            )
        : callback,
      (err: unknown) => {
        ended = true;
        done(err);
      },
    );
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by stop() while the request above was under way (TypeScript keeps it narrowed: microsoft/TypeScript#9998)
    if (stopped) controller.abort();
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the callback during the await
    else if (!ended) resumed();
    return controller;
  };
  const lw = new ListWatch<T>(
    options.path,
    watch,
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
    failures += 1;
    const fields = { path: options.path, error: describeApiError(e), retryMs };
    if (failures === 1) logger.warn(fields, 'list or watch failed; retrying until it succeeds');
    else logger.debug(fields, 'list or watch failed again; retrying');
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
