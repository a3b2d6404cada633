import type { CoreV1Api, KubeConfig, V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import { describeApiError, ifExists, isApiStatus } from './client.js';
import { ALL_NAMESPACES, type NamespaceFilter } from './discovery-namespaces.js';
import { DEFAULT_CRL_CONFIGMAP } from './defaults.js';
import { startInformer, type Informer } from './informer.js';

/** Istio's names: sidecars mount this ConfigMap to trust the mesh's roots. */
export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
export const ROOT_CERT_CONFIGMAP_KEY = 'root-cert.pem';
/**
 * Istio's names for the plugged-in CA's CRL (pilot/pkg/features: PILOT_CRL_CONFIGMAP, default
 * istio-ca-crl; pkg/config/constants: CACRLNamespaceConfigMapDataName): the sidecar injection
 * template and ztunnel's chart mount it, optional, beside istio-ca-root-cert.
 */
export const CRL_CONFIGMAP = DEFAULT_CRL_CONFIGMAP;
export const CRL_CONFIGMAP_KEY = 'ca-crl.pem';
/**
 * Namespaces that never get the ConfigMaps, as istiod's namespace controller skips them
 * (pilot/pkg/serviceregistry/kube/controller/namespacecontroller.go: inject.IgnoredNamespaces
 * of pkg/kube/inject/initializer.go, less kube-system, "to enable deploying ztunnel in that
 * namespace").
 */
export const EXCLUDED_NAMESPACES: ReadonlySet<string> = new Set([
  'kube-public',
  'kube-node-lease',
  'local-path-storage',
]);
/** What istiod labels them with (namespacecontroller.go: configMapLabel). */
const CONFIGMAP_LABELS = { 'istio.io/config': 'true' };

/** One ConfigMap kept in every selected namespace: its name and its one data key. */
export interface PublishedConfigMap {
  readonly name: string;
  readonly key: string;
  /** The value; undefined: the ConfigMap must not exist (e.g. no CRL any more) and is deleted. */
  readonly value: string | undefined;
  /** For logs: "the root certificate", "the CRL". */
  readonly what: string;
}

/**
 * Keeps ConfigMaps (istio-ca-root-cert, istio-ca-crl) in every namespace, as istiod's namespace
 * controller does: created when a namespace appears or becomes selected, repaired when edited or
 * deleted, rewritten when the value changes; and, unlike istiod, deleted everywhere when a value
 * goes away (a removed CRL must not linger). Only namespaces the filter (the mesh config's
 * discoverySelectors) selects and that are not excluded are touched; a namespace that stops
 * being selected keeps what it has, unmanaged, as in istiod. Leader only: start it when
 * elected, stop it when not.
 */
export class ConfigMapPublisher {
  private namespaces: Informer<V1Namespace> | undefined;
  private readonly configMaps: Informer<V1ConfigMap>[] = [];
  private readonly maps = new Map<string, PublishedConfigMap>();
  private readonly logger: Logger;
  private readonly filter: NamespaceFilter;
  private readonly pending = new Set<string>();
  /** Namespaces where deleting was forbidden (RBAC): logged once, not retried. */
  private readonly forbidden = new Set<string>();
  private unsubscribeFilter: (() => void) | undefined;
  private flushing = false;
  private stopped = false;

  constructor(
    private readonly o: {
      kubeConfig: KubeConfig;
      core: CoreV1Api;
      /** The ConfigMaps and their first values; their names are fixed for this publisher. */
      configMaps: readonly PublishedConfigMap[];
      clock: Clock;
      /** Default: every namespace (no discoverySelectors). */
      namespaces?: NamespaceFilter | undefined;
      logger?: Logger | undefined;
      retryMs?: number | undefined;
    },
  ) {
    for (const m of o.configMaps) this.maps.set(m.name, m);
    this.logger = o.logger ?? silentLogger;
    this.filter = o.namespaces ?? ALL_NAMESPACES;
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
      // An update may be a label change that selects the namespace: reconcile is idempotent.
      handlers: { upsert: (ns) => this.enqueue(ns.metadata?.name) },
    });
    for (const name of this.maps.keys()) {
      const fieldSelector = `metadata.name=${name}`;
      this.configMaps.push(
        startInformer<V1ConfigMap>({
          kubeConfig,
          path: '/api/v1/configmaps',
          fieldSelector,
          list: () => core.listConfigMapForAllNamespaces({ fieldSelector }),
          clock: this.o.clock,
          logger: this.logger,
          retryMs: this.o.retryMs,
          handlers: {
            upsert: (cm) => {
              const m = this.maps.get(cm.metadata?.name ?? '');
              if (m && cm.data?.[m.key] !== m.value) this.enqueue(cm.metadata?.namespace);
            },
            deleted: (cm) => {
              const m = this.maps.get(cm.metadata?.name ?? '');
              if (m?.value !== undefined) this.enqueue(cm.metadata?.namespace);
            },
          },
        }),
      );
    }
    this.unsubscribeFilter = this.filter.onChange(() => this.enqueueAll());
  }

  /** Resolves once every watch has listed: every existing namespace is queued. */
  async synced(): Promise<void> {
    await Promise.all([this.namespaces?.synced, ...this.configMaps.map((i) => i.synced)]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribeFilter?.();
    await Promise.all([this.namespaces?.stop(), ...this.configMaps.map((i) => i.stop())]);
  }

  /** A new value (undefined: remove it) for one of the ConfigMaps: every namespace follows. */
  set(name: string, value: string | undefined): void {
    const m = this.maps.get(name);
    if (!m) throw new Error(`ConfigMap ${name} is not published by this publisher`);
    if (m.value === value) return;
    this.maps.set(name, { ...m, value });
    this.forbidden.clear();
    this.enqueueAll();
  }

  private enqueueAll(): void {
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
            'could not publish the ConfigMaps; retrying',
          );
          this.o.clock.after(this.o.retryMs ?? 1000, () => this.enqueue(ns));
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Whether this namespace is one to publish in now (known, selected, not terminating). */
  private publishesIn(namespace: string): boolean {
    const ns = this.namespaces?.get(namespace);
    // Not listed yet: its add event queues it again.
    if (!ns || ns.status?.phase === 'Terminating') return false;
    return this.filter.selects({ name: namespace, labels: ns.metadata?.labels });
  }

  private async reconcile(namespace: string): Promise<void> {
    if (!this.publishesIn(namespace)) return;
    for (const m of this.maps.values()) {
      if (m.value === undefined) await this.remove(namespace, m);
      else await this.upsert(namespace, m, m.value);
    }
  }

  private async upsert(namespace: string, m: PublishedConfigMap, value: string): Promise<void> {
    const { core } = this.o;
    const current = await ifExists(() => core.readNamespacedConfigMap({ name: m.name, namespace }));
    if (!current) {
      try {
        await core.createNamespacedConfigMap({
          namespace,
          body: {
            metadata: { name: m.name, namespace, labels: CONFIGMAP_LABELS },
            data: { [m.key]: value },
          },
        });
        this.logger.info({ namespace, configMap: m.name }, `published ${m.what}`);
      } catch (ce) {
        // 404: the namespace went away meanwhile; 409: created concurrently, re-checked.
        if (isApiStatus(ce, 404)) return;
        if (!isApiStatus(ce, 409)) throw ce;
        this.enqueue(namespace);
      }
      return;
    }
    if (current.data?.[m.key] === value) return;
    await core.replaceNamespacedConfigMap({
      name: m.name,
      namespace,
      // eslint-disable-next-line @typescript-eslint/no-misused-spread -- client-node's models are data classes: its serializer reads their fields, not the prototype
      body: { ...current, data: { ...(current.data ?? {}), [m.key]: value } },
    });
    this.logger.info(
      { namespace, configMap: m.name },
      `updated ${m.what} (it differed from what is served)`,
    );
  }

  private async remove(namespace: string, m: PublishedConfigMap): Promise<void> {
    const { core } = this.o;
    const key = `${namespace}/${m.name}`;
    if (this.forbidden.has(key)) return;
    const current = await ifExists(() => core.readNamespacedConfigMap({ name: m.name, namespace }));
    if (!current) return;
    try {
      await core.deleteNamespacedConfigMap({ name: m.name, namespace });
      this.logger.info({ namespace, configMap: m.name }, `removed ${m.what}`);
    } catch (e) {
      if (isApiStatus(e, 404)) return;
      if (!isApiStatus(e, 403)) throw e;
      // As istiod's InsertDataToConfigMap treats a forbidden write: said once, not retried.
      this.forbidden.add(key);
      this.logger.warn(
        { namespace, configMap: m.name, error: describeApiError(e) },
        `cannot remove ${m.what}: forbidden (RBAC needs delete on this ConfigMap)`,
      );
    }
  }
}
