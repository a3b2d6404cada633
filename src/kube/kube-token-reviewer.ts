import type { AuthenticationV1Api, CoreV1Api, KubeConfig, V1Secret } from '@kubernetes/client-node';
import { AuthenticationV1Api as AuthenticationApi } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { TokenReviewResult, TokenReviewer } from '../authn/token-review-authenticator.js';
import { decodeSecretData, describeApiError, kubeConfigFromString } from './client.js';
import { startInformer, type Informer } from './informer.js';

/** Istio's label on remote-cluster kubeconfig Secrets (`istioctl create-remote-secret`). */
export const MULTI_CLUSTER_LABEL = 'istio/multiCluster';

/** Remote clusters by cluster id: each one's TokenReview client, and its kubeconfig. */
export interface RemoteClusters {
  get(clusterId: string): AuthenticationV1Api | undefined;
  /** The cluster's kubeconfig (for its pod index, src/kube/pod-index.ts); a new object when it changed. */
  kubeConfig(clusterId: string): KubeConfig | undefined;
}

/** Remote clusters from `--remote-kubeconfig clusterid=path` files, fixed at start. */
export class StaticRemoteClusters implements RemoteClusters {
  private readonly clients = new Map<string, AuthenticationV1Api>();
  constructor(private readonly kubeconfigs: ReadonlyMap<string, KubeConfig>) {
    for (const [id, kc] of kubeconfigs) this.clients.set(id, kc.makeApiClient(AuthenticationApi));
  }
  get(clusterId: string): AuthenticationV1Api | undefined {
    return this.clients.get(clusterId);
  }
  kubeConfig(clusterId: string): KubeConfig | undefined {
    return this.kubeconfigs.get(clusterId);
  }
}

/** A remote cluster read from a Secret. */
interface SecretCluster {
  readonly kubeConfig: KubeConfig;
  readonly authentication: AuthenticationV1Api;
}

/**
 * Remote clusters from Secrets labelled `istio/multiCluster=true` in our namespace, as Istio
 * reads them: each data key is a cluster id, its value that cluster's kubeconfig. Followed by a
 * watch, so adding or removing a remote cluster needs no restart.
 */
export class SecretRemoteClusters implements RemoteClusters {
  private readonly bySecret = new Map<string, Map<string, SecretCluster>>();
  private readonly informer: Informer<V1Secret>;

  constructor(options: {
    kubeConfig: KubeConfig;
    core: CoreV1Api;
    namespace: string;
    /** Times the watch's restarts. */
    clock: Clock;
    logger?: Logger | undefined;
  }) {
    const logger = options.logger ?? silentLogger;
    const selector = `${MULTI_CLUSTER_LABEL}=true`;
    this.informer = startInformer<V1Secret>({
      kubeConfig: options.kubeConfig,
      path: `/api/v1/namespaces/${options.namespace}/secrets`,
      labelSelector: selector,
      list: () =>
        options.core.listNamespacedSecret({
          namespace: options.namespace,
          labelSelector: selector,
        }),
      clock: options.clock,
      logger,
      handlers: {
        upsert: (s) => {
          const clusters = new Map<string, SecretCluster>();
          for (const [id, kubeconfig] of decodeSecretData(s)) {
            const subject = `secret ${options.namespace}/${s.metadata?.name} key ${id}`;
            try {
              const kc = kubeConfigFromString(kubeconfig, subject);
              clusters.set(id, {
                kubeConfig: kc,
                authentication: kc.makeApiClient(AuthenticationApi),
              });
            } catch (e) {
              logger.error(
                { secret: s.metadata?.name, cluster: id, error: (e as Error).message },
                'bad remote cluster kubeconfig',
              );
            }
          }
          this.bySecret.set(s.metadata?.name ?? '', clusters);
          logger.info(
            { secret: s.metadata?.name, clusters: [...clusters.keys()] },
            'remote clusters loaded',
          );
        },
        deleted: (s) => {
          this.bySecret.delete(s.metadata?.name ?? '');
        },
      },
    });
  }

  get synced(): Promise<void> {
    return this.informer.synced;
  }

  get(clusterId: string): AuthenticationV1Api | undefined {
    return this.find(clusterId)?.authentication;
  }

  kubeConfig(clusterId: string): KubeConfig | undefined {
    return this.find(clusterId)?.kubeConfig;
  }

  private find(clusterId: string): SecretCluster | undefined {
    for (const clusters of this.bySecret.values()) {
      const c = clusters.get(clusterId);
      if (c) return c;
    }
    return undefined;
  }

  stop(): Promise<void> {
    return this.informer.stop();
  }
}

/** Istio's cluster id when none is configured (its CLUSTER_ID default). */
export const DEFAULT_CLUSTER_ID = 'Kubernetes';

/**
 * Whether a request's `clusterid` names this cluster: absent, empty, or our own id
 * (`--cluster-id`, default `Kubernetes`, as Istio).
 */
export function isLocalCluster(clusterId: string | undefined, localClusterId?: string): boolean {
  return (
    clusterId === undefined ||
    clusterId === '' ||
    clusterId === (localClusterId ?? DEFAULT_CLUSTER_ID)
  );
}

/**
 * TokenReview through the API server (authentication.k8s.io/v1). Without a cluster id, or with
 * our own, the local cluster reviews; another cluster id selects a remote cluster's API server;
 * an unknown one is refused (the authenticator answers UNAUTHENTICATED).
 */
export class KubeTokenReviewer implements TokenReviewer {
  constructor(
    private readonly local: AuthenticationV1Api,
    private readonly options: {
      /** This cluster's id (`--cluster-id`), reviewed locally. Default `Kubernetes`, as Istio. */
      localClusterId?: string | undefined;
      remotes?: readonly RemoteClusters[] | undefined;
    } = {},
  ) {}

  private clientFor(clusterId: string | undefined): AuthenticationV1Api {
    if (clusterId === undefined || isLocalCluster(clusterId, this.options.localClusterId)) {
      return this.local;
    }
    for (const r of this.options.remotes ?? []) {
      const c = r.get(clusterId);
      if (c) return c;
    }
    throw new CastellanError(
      'unauthenticated',
      `unknown cluster "${clusterId}": no kubeconfig for it`,
    );
  }

  async review(
    token: string,
    audiences: readonly string[],
    clusterId?: string,
  ): Promise<TokenReviewResult> {
    const client = this.clientFor(clusterId);
    let review;
    try {
      review = await client.createTokenReview({
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: { token, audiences: [...audiences] },
        },
      });
    } catch (e) {
      throw new CastellanError('unavailable', `TokenReview call failed: ${describeApiError(e)}`, {
        cause: e,
      });
    }
    const s = review.status ?? {};
    return {
      authenticated: s.authenticated,
      user: s.user
        ? {
            username: s.user.username,
            uid: s.user.uid,
            groups: s.user.groups,
            extra: s.user.extra,
          }
        : undefined,
      audiences: s.audiences,
      error: s.error,
    };
  }
}
