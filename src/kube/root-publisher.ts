import type { CoreV1Api, KubeConfig, V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import { describeApiError, ifExists, isApiStatus } from './client.js';
import { startInformer, type Informer } from './informer.js';

/** Istio's names: sidecars mount this ConfigMap to trust the mesh's roots. */
export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
export const ROOT_CERT_CONFIGMAP_KEY = 'root-cert.pem';
/** Namespaces that never get the ConfigMap, as in Istio's namespace controller. */
export const EXCLUDED_NAMESPACES: ReadonlySet<string> = new Set(['kube-public', 'kube-node-lease']);

/**
 * Publishes the trust bundle as ConfigMap `istio-ca-root-cert` (key `root-cert.pem`) in every
 * namespace: created when a namespace appears, repaired when edited or deleted, rewritten when
 * the bundle changes. Leader only: start it when elected, stop it when not.
 */
export class RootPublisher {
  private namespaces: Informer<V1Namespace> | undefined;
  private configMaps: Informer<V1ConfigMap> | undefined;
  private bundle: string;
  private readonly logger: Logger;
  private readonly pending = new Set<string>();
  /** The ConfigMap's name: istiod's PILOT_CA_CERT_CONFIGMAP, default istio-ca-root-cert. */
  private readonly name: string;
  private flushing = false;
  private stopped = false;

  constructor(
    private readonly o: {
      kubeConfig: KubeConfig;
      core: CoreV1Api;
      rootBundlePem: string;
      /** Default ROOT_CERT_CONFIGMAP (`--root-cert-configmap`, env PILOT_CA_CERT_CONFIGMAP). */
      configMapName?: string | undefined;
      clock: Clock;
      logger?: Logger | undefined;
      retryMs?: number | undefined;
    },
  ) {
    this.bundle = o.rootBundlePem;
    this.name = o.configMapName ?? ROOT_CERT_CONFIGMAP;
    this.logger = o.logger ?? silentLogger;
  }

  start(): void {
    const { kubeConfig, core } = this.o;
    this.namespaces = startInformer<V1Namespace>({
      kubeConfig,
      path: '/api/v1/namespaces',
      list: () => core.listNamespace(),
      clock: this.o.clock,
      logger: this.logger,
      retryMs: this.o.retryMs,
      handlers: {
        upsert: (ns) => {
          if (ns.status?.phase !== 'Terminating') this.enqueue(ns.metadata?.name);
        },
      },
    });
    this.configMaps = startInformer<V1ConfigMap>({
      kubeConfig,
      path: '/api/v1/configmaps',
      fieldSelector: `metadata.name=${this.name}`,
      list: () =>
        core.listConfigMapForAllNamespaces({
          fieldSelector: `metadata.name=${this.name}`,
        }),
      clock: this.o.clock,
      logger: this.logger,
      retryMs: this.o.retryMs,
      handlers: {
        upsert: (cm) => {
          if (
            cm.metadata?.name === this.name &&
            cm.data?.[ROOT_CERT_CONFIGMAP_KEY] !== this.bundle
          ) {
            this.enqueue(cm.metadata.namespace);
          }
        },
        deleted: (cm) => {
          if (cm.metadata?.name === this.name) this.enqueue(cm.metadata.namespace);
        },
      },
    });
  }

  /** Resolves once both watches have listed: every existing namespace is queued. */
  async synced(): Promise<void> {
    await Promise.all([this.namespaces?.synced, this.configMaps?.synced]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([this.namespaces?.stop(), this.configMaps?.stop()]);
  }

  /** A new trust bundle: rewrite every namespace's ConfigMap. */
  setBundle(rootBundlePem: string): void {
    if (rootBundlePem === this.bundle) return;
    this.bundle = rootBundlePem;
    for (const ns of this.namespaces?.list() ?? []) this.enqueue(ns.metadata?.name);
  }

  private enqueue(namespace: string | undefined): void {
    if (!namespace || EXCLUDED_NAMESPACES.has(namespace) || this.stopped) return;
    this.pending.add(namespace);
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.size > 0 && !this.stopped) {
        const ns = this.pending.values().next().value as string;
        this.pending.delete(ns);
        try {
          await this.reconcile(ns);
        } catch (e) {
          this.logger.warn(
            { namespace: ns, error: describeApiError(e) },
            'could not publish the root certificate; retrying',
          );
          this.o.clock.after(this.o.retryMs ?? 1000, () => this.enqueue(ns));
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private async reconcile(namespace: string): Promise<void> {
    const { core } = this.o;
    const body: V1ConfigMap = {
      metadata: { name: this.name, namespace, labels: { 'istio.io/config': 'true' } },
      data: { [ROOT_CERT_CONFIGMAP_KEY]: this.bundle },
    };
    const current = await ifExists(() =>
      core.readNamespacedConfigMap({ name: this.name, namespace }),
    );
    if (!current) {
      try {
        await core.createNamespacedConfigMap({ namespace, body });
        this.logger.info({ namespace }, 'published the root certificate');
      } catch (ce) {
        // 404: the namespace went away meanwhile; 409: created concurrently, re-checked below.
        if (isApiStatus(ce, 404)) return;
        if (!isApiStatus(ce, 409)) throw ce;
        this.enqueue(namespace);
      }
      return;
    }
    if (current.data?.[ROOT_CERT_CONFIGMAP_KEY] === this.bundle) return;
    await core.replaceNamespacedConfigMap({
      name: this.name,
      namespace,
      body: {
        // eslint-disable-next-line @typescript-eslint/no-misused-spread -- client-node's models are data classes: its serializer reads their fields, not the prototype
        ...current,
        data: { ...(current.data ?? {}), [ROOT_CERT_CONFIGMAP_KEY]: this.bundle },
      },
    });
    this.logger.info({ namespace }, 'repaired the published root certificate');
  }
}
