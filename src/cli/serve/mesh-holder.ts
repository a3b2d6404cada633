import type { Logger } from '../../log.js';
import type { MeshSettings } from '../../policy/mesh.js';

/**
 * The one MeshConfig of a serving process, and with it the one trust domain: what issuance
 * (the SPIFFE IDs of new certificates), client-certificate renewals, ambient mode's node
 * authorization and policies all read. Before this holder, `--trust-domain` signed while the
 * mesh config's `trustDomain` fed policies, and the two could disagree.
 *
 * The mesh config's `trustDomain` wins; `--trust-domain` is what it falls back to (applied when
 * the settings are read: src/server/policy-options.ts). Components read it per request through
 * the functions below — a property read — so a change (Kubernetes mode follows ConfigMap
 * `istio`) reaches the next request, as in istiod, whose token authenticators build each SPIFFE
 * ID from the current mesh config (security/pkg/server/ca/authenticate/kubeauth/kube_jwt.go).
 */
export class MeshHolder {
  private mesh: MeshSettings;
  private readonly listeners = new Set<(mesh: MeshSettings) => void>();

  constructor(
    initial: MeshSettings,
    private readonly logger: Logger,
  ) {
    this.mesh = initial;
  }

  current(): MeshSettings {
    return this.mesh;
  }

  /** The trust domain of every certificate issued from now on. */
  readonly trustDomain = (): string => this.mesh.trustDomain;

  /** Former trust domains whose workload certificates may still renew (`trustDomainAliases`). */
  readonly trustDomainAliases = (): readonly string[] => this.mesh.trustDomainAliases;

  /**
   * Installs new settings and tells the listeners; the same settings again change nothing.
   * `first`: the settings a start found (Kubernetes mode's ConfigMap, read before anything
   * serves), which replace the fallback without being a change anyone lived through.
   */
  set(mesh: MeshSettings, first = false): void {
    if (JSON.stringify(mesh) === JSON.stringify(this.mesh)) return;
    const before = this.mesh;
    this.mesh = mesh;
    if (first) {
      this.logger.info({ trustDomain: mesh.trustDomain }, 'mesh config loaded');
    } else if (before.trustDomain !== mesh.trustDomain) {
      // Workloads keep their certificates until they renew; those still in the old trust domain
      // can renew with them only if it is among the aliases.
      this.logger.warn(
        {
          from: before.trustDomain,
          to: mesh.trustDomain,
          trustDomainAliases: mesh.trustDomainAliases,
        },
        'trust domain changed: new certificates carry the new one',
      );
    }
    for (const listener of this.listeners) listener(mesh);
  }

  /** Calls `listener` after each change; returns the function that stops it. */
  onChange(listener: (mesh: MeshSettings) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
