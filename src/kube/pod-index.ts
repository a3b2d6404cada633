// The Kubernetes facts behind ambient mode's node authorization (src/authn/impersonation.ts):
// every pod of a cluster, from one list + watch, indexed by name and by (service account, node)
// as istiod indexes them (security/pkg/server/ca/node_auth.go, NewClusterNodeAuthorizer's
// "saNode" index). A request reads the index; it never calls the API server.
import { CoreV1Api, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { ClusterPods, PodDirectory, PodFacts } from '../authn/impersonation.js';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { startInformer, type Informer } from './informer.js';
import { isLocalCluster, type RemoteClusters } from './kube-token-reviewer.js';

/** The fields of a pod the index reads; everything else is dropped as it arrives. */
interface IndexedPod extends KubernetesObject {
  spec?: { serviceAccountName?: string; nodeName?: string };
  status?: { phase?: string };
}

/**
 * Keeps of a pod only what the index reads (and what the watch needs: name, namespace,
 * resourceVersion): a cluster-wide pod watch otherwise holds every container spec in memory.
 * Istio's pod informer strips them too (kube.StripPodUnusedFields).
 */
function stripPod(pod: IndexedPod): IndexedPod {
  const m = pod.metadata ?? {};
  return {
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
    },
    spec: { serviceAccountName: pod.spec?.serviceAccountName, nodeName: pod.spec?.nodeName },
    status: { phase: pod.status?.phase },
  };
}

/** Istio's SaNode.String(): node, then namespace/name of the service account. No part holds a '/'. */
const saNodeKey = (node: string, namespace: string, serviceAccount: string): string =>
  `${node}/${namespace}/${serviceAccount}`;

interface Entry {
  readonly facts: PodFacts;
  /** The (service account, node) it counts in; undefined when it counts nowhere. */
  readonly counted: string | undefined;
}

/**
 * One cluster's pods. Indexed by (namespace/service account, node) like istiod's index, with
 * one difference: a pod in phase Failed does not count — it no longer runs on the node, and
 * its identity should not be handed to that node's proxy (istiod counts it until the pod is
 * deleted). Pods not yet scheduled (no node) count nowhere, as in istiod.
 */
export class PodIndex implements ClusterPods {
  private readonly pods = new Map<string, Entry>();
  /** saNodeKey → how many pods count there. */
  private readonly counts = new Map<string, number>();
  private readonly informer: Informer<IndexedPod>;
  private listed = false;

  constructor(options: {
    kubeConfig: KubeConfig;
    clock: Clock;
    logger?: Logger | undefined;
    /** Between attempts while the API server cannot be reached. */
    retryMs?: number | undefined;
  }) {
    const core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.informer = startInformer<IndexedPod>({
      kubeConfig: options.kubeConfig,
      path: '/api/v1/pods',
      list: () => core.listPodForAllNamespaces(),
      transform: stripPod,
      clock: options.clock,
      handlers: {
        upsert: (pod) => this.upsert(pod),
        deleted: (pod) => this.remove(keyOf(pod)),
      },
      retryMs: options.retryMs,
      logger: options.logger ?? silentLogger,
    });
    void this.informer.synced.then(() => (this.listed = true));
  }

  /** Resolves once the first list is in the index. */
  get synced(): Promise<void> {
    return this.informer.synced;
  }

  get isSynced(): boolean {
    return this.listed;
  }

  pod(namespace: string, name: string): PodFacts | undefined {
    return this.pods.get(`${namespace}/${name}`)?.facts;
  }

  runsOnNode(namespace: string, serviceAccount: string, nodeName: string): boolean {
    return (this.counts.get(saNodeKey(nodeName, namespace, serviceAccount)) ?? 0) > 0;
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }

  private upsert(pod: IndexedPod): void {
    const key = keyOf(pod);
    this.remove(key);
    const facts: PodFacts = {
      uid: pod.metadata?.uid ?? '',
      serviceAccount: pod.spec?.serviceAccountName ?? '',
      nodeName: pod.spec?.nodeName ?? '',
    };
    const counts =
      facts.nodeName !== '' && facts.serviceAccount !== '' && pod.status?.phase !== 'Failed';
    const counted = counts
      ? saNodeKey(facts.nodeName, pod.metadata?.namespace ?? '', facts.serviceAccount)
      : undefined;
    if (counted) this.counts.set(counted, (this.counts.get(counted) ?? 0) + 1);
    this.pods.set(key, { facts, counted });
  }

  private remove(key: string): void {
    const old = this.pods.get(key);
    if (!old) return;
    this.pods.delete(key);
    if (old.counted) {
      const n = (this.counts.get(old.counted) ?? 1) - 1;
      if (n > 0) this.counts.set(old.counted, n);
      else this.counts.delete(old.counted);
    }
  }
}

const keyOf = (pod: KubernetesObject): string =>
  `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;

/** How long a request waits, at most, for a cluster's pods to be listed the first time. */
export const DEFAULT_POD_SYNC_WAIT_MS = 10_000;

export interface ClusterPodIndexesOptions {
  /** This cluster's. */
  readonly kubeConfig: KubeConfig;
  /** This cluster's id (`--cluster-id`); default `Kubernetes`, as Istio. */
  readonly localClusterId?: string | undefined;
  /** Where other clusters' kubeconfigs come from (the same ones TokenReview uses). */
  readonly remotes?: readonly RemoteClusters[] | undefined;
  readonly clock: Clock;
  readonly syncWaitMs?: number | undefined;
  readonly logger?: Logger | undefined;
  readonly retryMs?: number | undefined;
}

/**
 * The pod index of each cluster a node proxy may call from, as istiod keeps one node authorizer
 * per cluster (node_auth.go, MulticlusterNodeAuthorizor): this cluster's is started at once; a
 * remote cluster's (named by the `clusterid` metadata, its kubeconfig from `--remote-kubeconfig`
 * or an `istio/multiCluster` Secret) on its first request, and started again when its kubeconfig
 * changes. A cluster without a kubeconfig is refused. A request waits for a new index's first
 * list, at most `syncWaitMs`; after that it is refused (ztunnel retries).
 */
export class ClusterPodIndexes implements PodDirectory {
  private readonly local: PodIndex;
  private readonly remote = new Map<string, { kubeConfig: KubeConfig; index: PodIndex }>();
  private readonly syncWaitMs: number;
  private stopped = false;

  constructor(private readonly options: ClusterPodIndexesOptions) {
    this.syncWaitMs = options.syncWaitMs ?? DEFAULT_POD_SYNC_WAIT_MS;
    this.local = this.startIndex(options.kubeConfig);
  }

  /** Resolves once this cluster's pods are listed (for readiness and tests). */
  get synced(): Promise<void> {
    return this.local.synced;
  }

  async cluster(clusterId: string | undefined): Promise<ClusterPods> {
    if (this.stopped) throw new CastellanError('impersonation-refused', 'shutting down');
    if (clusterId === undefined || isLocalCluster(clusterId, this.options.localClusterId)) {
      return this.whenSynced(this.local, 'this cluster');
    }
    let kubeConfig: KubeConfig | undefined;
    for (const r of this.options.remotes ?? []) {
      kubeConfig ??= r.kubeConfig(clusterId);
    }
    let held = this.remote.get(clusterId);
    if (held && held.kubeConfig !== kubeConfig) {
      // Removed or replaced: its watch follows a cluster we no longer reach that way.
      this.remote.delete(clusterId);
      void held.index.stop();
      held = undefined;
    }
    if (!kubeConfig) {
      throw new CastellanError(
        'impersonation-refused',
        `unknown cluster "${clusterId}": no kubeconfig for it`,
      );
    }
    if (!held) {
      held = { kubeConfig, index: this.startIndex(kubeConfig) };
      this.remote.set(clusterId, held);
      this.options.logger?.info({ cluster: clusterId }, 'pod index started for a remote cluster');
    }
    return this.whenSynced(held.index, `cluster "${clusterId}"`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const all = [this.local, ...[...this.remote.values()].map((r) => r.index)];
    this.remote.clear();
    await Promise.all(all.map((i) => i.stop()));
  }

  private startIndex(kubeConfig: KubeConfig): PodIndex {
    return new PodIndex({
      kubeConfig,
      clock: this.options.clock,
      logger: this.options.logger,
      retryMs: this.options.retryMs,
    });
  }

  private whenSynced(index: PodIndex, what: string): Promise<ClusterPods> {
    if (index.isSynced) return Promise.resolve(index);
    return new Promise((resolve, reject) => {
      const timer = this.options.clock.after(this.syncWaitMs, () =>
        reject(
          new CastellanError(
            'impersonation-refused',
            `the pods of ${what} are not listed yet (waited ${this.syncWaitMs} ms)`,
          ),
        ),
      );
      void index.synced.then(() => {
        timer.cancel();
        resolve(index);
      });
    });
  }
}
