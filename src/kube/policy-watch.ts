import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { PolicyCompiler } from '../policy/compiler.js';
import { parseResources } from '../policy/parse-resources.js';
import { workloadFromPod } from '../policy/pod-workload.js';
import { describeApiError, isApiStatus } from './client.js';
import { startInformer, type Informer } from './informer.js';

const GROUP = 'security.istio.io';
/** Preferred first: a cluster serving both gets v1, an older Istio only v1beta1. */
const VERSIONS = ['v1', 'v1beta1'] as const;
const KINDS = [
  { plural: 'peerauthentications', kind: 'PeerAuthentication' },
  { plural: 'authorizationpolicies', kind: 'AuthorizationPolicy' },
  { plural: 'requestauthentications', kind: 'RequestAuthentication' },
] as const;

/** One input change as it reached the compiler (for logs, tests and metrics). */
export interface PolicyWatchChange {
  readonly kind:
    'PeerAuthentication' | 'AuthorizationPolicy' | 'RequestAuthentication' | 'Pod' | 'Namespace';
  readonly namespace: string;
  readonly name: string;
  readonly deleted: boolean;
  /** Bundles recomputed for this change. */
  readonly recomputed: number;
}

export interface PolicyWatch {
  /** Resolves when every informer delivered its first list. */
  readonly synced: Promise<void>;
  /** The security.istio.io version each kind is watched in. */
  readonly versions: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

/**
 * Kubernetes mode's policy inputs: PeerAuthentications, AuthorizationPolicies and
 * RequestAuthentications (security.istio.io, v1 preferred, v1beta1 when v1 is not served — the
 * API server stores one object and serves it in both), Pods (the workloads), Namespaces (a
 * deleted namespace takes its workloads and policies along), fed into the compiler object by
 * object so that each change recomputes only the bundles it can affect. A policy that fails the
 * CRD schema (only possible without the CRD's validation) is treated as absent, with a warning.
 * The MeshConfig is not followed here: serve's one watch of ConfigMap `istio`
 * (src/kube/mesh-config-watch.ts) feeds the mesh holder, which hands the compiler every change.
 */
export async function startPolicyWatch(options: {
  kubeConfig: KubeConfig;
  compiler: PolicyCompiler;
  /** Times the watches' restarts. */
  clock: Clock;
  logger?: Logger | undefined;
  retryMs?: number | undefined;
  onChange?: ((change: PolicyWatchChange) => void) | undefined;
}): Promise<PolicyWatch> {
  const log = options.logger ?? silentLogger;
  const { compiler, kubeConfig } = options;
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const informers: Informer<KubernetesObject>[] = [];
  const versions: Record<string, string> = {};
  const report = (change: PolicyWatchChange): void => {
    log.debug(change, 'policy input changed');
    options.onChange?.(change);
  };
  const stop = async (): Promise<void> => {
    await Promise.all(informers.map((i) => i.stop()));
  };

  try {
    for (const { plural, kind } of KINDS) {
      const version = await servedVersion(custom, plural, log);
      versions[kind] = version;
      // Policies as the compiler last saw them, so an invalid update removes the valid one.
      const present = new Set<string>();
      const list = async (): Promise<KubernetesListObject<KubernetesObject>> =>
        (await custom.listClusterCustomObject({
          group: GROUP,
          version,
          plural,
        })) as KubernetesListObject<KubernetesObject>;
      const deleted = (obj: KubernetesObject): void => {
        const ns = obj.metadata?.namespace ?? '';
        const name = obj.metadata?.name ?? '';
        if (!present.delete(`${ns}/${name}`)) return;
        compiler.removePolicy(kind, ns, name);
        report({ kind, namespace: ns, name, deleted: true, recomputed: compiler.lastRecomputed });
      };
      const upsert = (obj: KubernetesObject): void => {
        const ns = obj.metadata?.namespace ?? '';
        const name = obj.metadata?.name ?? '';
        const key = `${ns}/${name}`;
        const object = { apiVersion: `${GROUP}/${version}`, kind, ...obj };
        const { resources, diagnostics } = parseResources([{ origin: `${plural}/${key}`, object }]);
        for (const d of diagnostics.filter((x) => x.severity === 'error')) {
          log.warn({ resource: d.resource, field: d.field }, `policy: ${d.message}`);
        }
        const resource = resources[0];
        if (!resource) {
          deleted(obj); // An invalid update removes the valid version the compiler holds.
          return;
        }
        present.add(key);
        compiler.upsertPolicy(resource);
        report({ kind, namespace: ns, name, deleted: false, recomputed: compiler.lastRecomputed });
      };
      informers.push(
        startInformer({
          kubeConfig,
          path: `/apis/${GROUP}/${version}/${plural}`,
          list,
          handlers: { upsert, deleted },
          clock: options.clock,
          retryMs: options.retryMs,
          logger: log,
        }),
      );
    }

    // Pods change status all the time: only a change of what a bundle uses reaches the compiler.
    const pods = new Map<string, string>();
    const podDeleted = (obj: KubernetesObject): void => {
      const ns = obj.metadata?.namespace ?? '';
      const name = obj.metadata?.name ?? '';
      if (!pods.delete(`${ns}/${name}`)) return;
      compiler.removeWorkload(ns, name);
      report({ kind: 'Pod', namespace: ns, name, deleted: true, recomputed: 0 });
    };
    informers.push(
      startInformer({
        kubeConfig,
        path: '/api/v1/pods',
        list: () =>
          core.listPodForAllNamespaces() as Promise<KubernetesListObject<KubernetesObject>>,
        handlers: {
          upsert: (obj) => {
            const w = workloadFromPod(obj);
            if (!w) {
              podDeleted(obj); // No longer a workload: finished or being deleted.
              return;
            }
            const ns = obj.metadata?.namespace ?? '';
            const name = obj.metadata?.name ?? '';
            const key = `${ns}/${name}`;
            const print = JSON.stringify(w);
            if (pods.get(key) === print) return;
            pods.set(key, print);
            compiler.upsertWorkload(w);
            report({
              kind: 'Pod',
              namespace: ns,
              name,
              deleted: false,
              recomputed: compiler.lastRecomputed,
            });
          },
          deleted: podDeleted,
        },
        clock: options.clock,
        retryMs: options.retryMs,
        logger: log,
      }),
    );

    informers.push(
      startInformer({
        kubeConfig,
        path: '/api/v1/namespaces',
        list: () => core.listNamespace() as Promise<KubernetesListObject<KubernetesObject>>,
        handlers: {
          deleted: (obj) => {
            const ns = obj.metadata?.name ?? '';
            for (const key of [...pods.keys()]) if (key.startsWith(`${ns}/`)) pods.delete(key);
            const changed = compiler.removeNamespace(ns);
            report({
              kind: 'Namespace',
              namespace: ns,
              name: ns,
              deleted: true,
              recomputed: changed.length,
            });
          },
        },
        clock: options.clock,
        retryMs: options.retryMs,
        logger: log,
      }),
    );
  } catch (e) {
    await stop();
    throw e;
  }
  const synced = Promise.all(informers.map((i) => i.synced)).then(() => {
    log.info({ versions, workloads: compiler.workloadCount }, 'policy watch synced');
  });
  return { synced, versions, stop };
}

/**
 * v1 when the API server serves it for this resource, else v1beta1. Any other failure (no
 * permission yet, API server down) must not stop the CA: v1 is watched and the informer keeps
 * retrying, logging why.
 */
async function servedVersion(
  custom: CustomObjectsApi,
  plural: string,
  log: Logger,
): Promise<string> {
  for (const version of VERSIONS) {
    try {
      await custom.listClusterCustomObject({ group: GROUP, version, plural, limit: 1 });
      return version;
    } catch (e) {
      if (isApiStatus(e, 404)) continue;
      log.warn(
        { resource: `${plural}.${GROUP}`, error: describeApiError(e) },
        'cannot list policies yet; watching v1 and retrying',
      );
      return VERSIONS[0];
    }
  }
  // Neither is served (Istio's CRDs are not installed): watch v1, which starts working once
  // they are (the informer retries).
  return VERSIONS[0];
}
