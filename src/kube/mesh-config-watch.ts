import type { CoreV1Api, KubeConfig, V1ConfigMap } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import { startInformer, type Informer } from './informer.js';

/**
 * istiod's mesh config in Kubernetes: ConfigMap `istio` (with a revision, `istio-<revision>`) in
 * its namespace, YAML under key `mesh` (pilot/pkg/bootstrap/mesh.go, getMeshConfigMapName;
 * pkg/config/mesh/kubemesh). A mesh config file, when given, wins over it, as in istiod.
 */
export const MESH_CONFIGMAP = 'istio';
export const MESH_CONFIGMAP_KEY = 'mesh';

export interface MeshConfigWatch {
  /** The `mesh` text as last seen; undefined while the ConfigMap or its key is absent. */
  current(): string | undefined;
  /** Resolves once the first list has been seen (`current()` is then the cluster's). */
  readonly synced: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Follows the mesh config's text (one watch, on the one ConfigMap's name). `onChange` is called
 * with the new text, or undefined when the ConfigMap or its key goes away, each time it differs
 * from the last; parsing it is the caller's (src/server/policy-options.ts).
 */
export function startMeshConfigWatch(options: {
  kubeConfig: KubeConfig;
  core: CoreV1Api;
  namespace: string;
  /** Default MESH_CONFIGMAP. */
  name?: string | undefined;
  clock: Clock;
  logger?: Logger | undefined;
  retryMs?: number | undefined;
  onChange: (text: string | undefined) => void;
}): MeshConfigWatch {
  const { core, namespace } = options;
  const name = options.name ?? MESH_CONFIGMAP;
  let text: string | undefined;
  const seen = (next: string | undefined): void => {
    if (next === text) return;
    text = next;
    options.onChange(next);
  };
  const fieldSelector = `metadata.name=${name}`;
  const informer: Informer<V1ConfigMap> = startInformer<V1ConfigMap>({
    kubeConfig: options.kubeConfig,
    path: `/api/v1/namespaces/${namespace}/configmaps`,
    fieldSelector,
    list: () => core.listNamespacedConfigMap({ namespace, fieldSelector }),
    clock: options.clock,
    logger: options.logger ?? silentLogger,
    retryMs: options.retryMs,
    handlers: {
      upsert: (cm) => {
        if (cm.metadata?.name === name) seen(cm.data?.[MESH_CONFIGMAP_KEY]);
      },
      deleted: (cm) => {
        if (cm.metadata?.name === name) seen(undefined);
      },
    },
  });
  return {
    current: () => text,
    synced: informer.synced,
    stop: () => informer.stop(),
  };
}
