import type { CoreV1Api, KubeConfig, V1ConfigMap } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import type { Clock } from '../clock.js';
import { CastellanError, asCastellanError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { startInformer, type Informer } from './informer.js';
import { matchesLabelSelector, parseLabelSelector, type LabelSelector } from './label-selector.js';

/** istiod's mesh config: ConfigMap `istio` in its namespace, the MeshConfig YAML under `mesh`. */
export const MESH_CONFIGMAP = 'istio';
export const MESH_CONFIGMAP_KEY = 'mesh';

/** Which namespaces get the published ConfigMaps; the publisher asks on every reconcile. */
export interface NamespaceFilter {
  selects(namespace: {
    readonly name: string;
    readonly labels?: Readonly<Record<string, string>> | undefined;
  }): boolean;
  /** Called when the selection may have changed; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** Every namespace: what an absent or empty `discoverySelectors` means. */
export const ALL_NAMESPACES: NamespaceFilter = {
  selects: () => true,
  onChange: () => () => {},
};

/**
 * The `discoverySelectors` of a MeshConfig (YAML text): none (or an empty list) selects every
 * namespace; otherwise a namespace is selected when any selector matches its labels. A bad
 * document or selector is `invalid-argument` naming where.
 */
export function parseDiscoverySelectors(meshYaml: string, where: string): LabelSelector[] {
  let doc: unknown;
  try {
    doc = parseYaml(meshYaml);
  } catch (e) {
    throw new CastellanError('invalid-argument', `not YAML: ${(e as Error).message}`, {
      subject: where,
    });
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new CastellanError('invalid-argument', 'must be a MeshConfig object', { subject: where });
  }
  const raw = (doc as Record<string, unknown>)['discoverySelectors'];
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    throw new CastellanError('invalid-argument', 'must be a list of label selectors', {
      subject: `${where} discoverySelectors`,
    });
  }
  return raw.map((s: unknown, i) => parseLabelSelector(s, `${where} discoverySelectors[${i}]`));
}

/**
 * The mesh config's `discoverySelectors`, followed live from ConfigMap `istio` (key `mesh`), as
 * istiod's discovery namespace filter follows them (pkg/kube/namespace/filter.go): no selectors
 * select every namespace, a namespace is selected when any selector matches its labels, and a
 * selector that does not parse leaves the previous selection in place (logged). A deleted
 * ConfigMap means istiod's defaults: every namespace.
 */
export class DiscoveryNamespaces implements NamespaceFilter {
  private selectors: readonly LabelSelector[] = [];
  /** The last text applied, so a resync or an unrelated edit of the mesh config notifies no one. */
  private applied = '[]';
  private readonly listeners = new Set<() => void>();
  private informer: Informer<V1ConfigMap> | undefined;
  private readonly logger: Logger;

  constructor(
    private readonly o: {
      kubeConfig: KubeConfig;
      core: CoreV1Api;
      namespace: string;
      clock: Clock;
      configMapName?: string | undefined;
      logger?: Logger | undefined;
      retryMs?: number | undefined;
    },
  ) {
    this.logger = o.logger ?? silentLogger;
  }

  private get name(): string {
    return this.o.configMapName ?? MESH_CONFIGMAP;
  }

  /** Starts the watch; resolves once the ConfigMap (or its absence) has been read. */
  async start(): Promise<void> {
    const { core, namespace } = this.o;
    const fieldSelector = `metadata.name=${this.name}`;
    this.informer = startInformer<V1ConfigMap>({
      kubeConfig: this.o.kubeConfig,
      path: `/api/v1/namespaces/${namespace}/configmaps`,
      fieldSelector,
      list: () => core.listNamespacedConfigMap({ namespace, fieldSelector }),
      clock: this.o.clock,
      logger: this.logger,
      retryMs: this.o.retryMs,
      handlers: {
        upsert: (cm) => this.read(cm),
        deleted: () => this.apply([]),
      },
    });
    await this.informer.synced;
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
  }

  selects(namespace: { readonly labels?: Readonly<Record<string, string>> | undefined }): boolean {
    return (
      this.selectors.length === 0 ||
      this.selectors.some((s) => matchesLabelSelector(s, namespace.labels))
    );
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private read(cm: V1ConfigMap): void {
    if (cm.metadata?.name !== this.name) return;
    const where = `configmap ${this.o.namespace}/${this.name} ${MESH_CONFIGMAP_KEY}`;
    try {
      this.apply(parseDiscoverySelectors(cm.data?.[MESH_CONFIGMAP_KEY] ?? '', where));
    } catch (e) {
      this.logger.error(
        { error: asCastellanError(e).message },
        'mesh config refused: the discovery selectors stay as they were',
      );
    }
  }

  private apply(selectors: readonly LabelSelector[]): void {
    const text = JSON.stringify(selectors);
    if (text === this.applied) return;
    this.applied = text;
    this.selectors = selectors;
    this.logger.info(
      { selectors: selectors.length === 0 ? 'every namespace' : selectors.length },
      'discovery selectors changed',
    );
    for (const l of [...this.listeners]) l();
  }
}
