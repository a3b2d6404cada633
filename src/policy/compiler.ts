import { buildBundle, type PolicyBundle } from './policy-bundle.js';
import type { Diagnostic } from './diagnostic.js';
import { trustDomains, type MeshSettings } from './mesh.js';
import { normalizePolicy, type NormalizedPolicy } from './normalize.js';
import { peerAuthenticationDiagnostics } from './peer-authentication.js';
import {
  policyRef,
  resourceLabel,
  type AuthorizationPolicy,
  type PeerAuthentication,
  type RequestAuthentication,
  type SecurityKind,
  type SecurityResource,
} from './resource.js';
import {
  attachesBeyondNamespace,
  effectiveTargetRefs,
  peerAuthenticationApplies,
  policyAttaches,
  targetsService,
} from './selection.js';
import { validateResource } from './validation.js';
import { serviceKey, workloadKey, type ServiceRef, type Workload } from './workload.js';

interface StoredPolicy<T extends SecurityResource> {
  readonly resource: T;
  readonly diagnostics: readonly Diagnostic[];
}

interface StoredAuthorization extends StoredPolicy<AuthorizationPolicy> {
  readonly normalized: NormalizedPolicy;
}

/** Called with each bundle whose content changed (new workloads included). */
export type BundleListener = (bundle: PolicyBundle) => void;

/**
 * Keeps every workload's bundle up to date as policies, workloads and namespaces change, and
 * recomputes only the workloads a change can affect: for a policy, the workloads its old or
 * new version selects (in its namespace, or everywhere for the root namespace); for a
 * workload, itself. Policies are validated and normalized once, not once per workload.
 */
export class PolicyCompiler {
  private mesh: MeshSettings;
  private readonly peer = new Map<string, Map<string, StoredPolicy<PeerAuthentication>>>();
  private readonly authz = new Map<string, Map<string, StoredAuthorization>>();
  private readonly requestAuthn = new Map<
    string,
    Map<string, StoredPolicy<RequestAuthentication>>
  >();
  /** AuthorizationPolicies and RequestAuthentications that name a Service or ServiceEntry. */
  private readonly serviceTargeting = new Map<
    string,
    AuthorizationPolicy | RequestAuthentication
  >();
  private readonly workloads = new Map<string, Map<string, Workload>>();
  private readonly bundles = new Map<string, PolicyBundle>();
  /** Per-namespace PeerAuthentication findings (several wide policies, root selectors). */
  private readonly peerFindings = new Map<string, Diagnostic[]>();
  private readonly listeners = new Set<BundleListener>();
  /** How many bundles the last change recomputed: for tests and the bench. */
  lastRecomputed = 0;

  constructor(mesh: MeshSettings) {
    this.mesh = mesh;
  }

  onBundle(listener: BundleListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get workloadCount(): number {
    let n = 0;
    for (const m of this.workloads.values()) n += m.size;
    return n;
  }

  /** The mesh settings bundles are compiled with. */
  get meshSettings(): MeshSettings {
    return this.mesh;
  }

  bundle(namespace: string, name: string): PolicyBundle | undefined {
    return this.bundles.get(workloadKey({ namespace, name }));
  }

  allBundles(): PolicyBundle[] {
    return [...this.bundles.values()];
  }

  /** Every diagnostic about every stored policy, workload-independent. */
  diagnostics(): Diagnostic[] {
    const out: Diagnostic[] = [];
    for (const m of this.peer.values()) for (const p of m.values()) out.push(...p.diagnostics);
    for (const m of this.authz.values()) for (const p of m.values()) out.push(...p.diagnostics);
    for (const m of this.requestAuthn.values())
      for (const p of m.values()) out.push(...p.diagnostics);
    for (const d of this.peerFindings.values()) out.push(...d);
    return out;
  }

  setMesh(mesh: MeshSettings): void {
    this.mesh = mesh;
    for (const m of this.authz.values()) {
      for (const [k, p] of m) m.set(k, this.storeAuthorization(p.resource));
    }
    for (const ns of this.peer.keys()) this.refreshPeerFindings(ns);
    this.recompute(this.everyWorkload());
  }

  /** Adds or replaces a policy; returns the keys (`ns/name`) of workloads recomputed. */
  upsertPolicy(resource: SecurityResource): string[] {
    const ns = resource.meta.namespace;
    const name = resource.meta.name;
    let old: SecurityResource | undefined;
    if (resource.kind === 'PeerAuthentication') {
      const m = mapIn(this.peer, ns);
      old = m.get(name)?.resource;
      m.set(name, { resource, diagnostics: validateResource(resource) });
      this.refreshPeerFindings(ns);
    } else if (resource.kind === 'AuthorizationPolicy') {
      const m = mapIn(this.authz, ns);
      old = m.get(name)?.resource;
      m.set(name, this.storeAuthorization(resource));
    } else {
      const m = mapIn(this.requestAuthn, ns);
      old = m.get(name)?.resource;
      m.set(name, { resource, diagnostics: validateResource(resource) });
    }
    this.indexServiceTargeting(resource);
    return this.recompute(this.affectedBy(resource, old));
  }

  removePolicy(kind: SecurityKind, namespace: string, name: string): string[] {
    const store: Map<string, Map<string, { resource: SecurityResource }>> = kind ===
    'PeerAuthentication'
      ? this.peer
      : kind === 'AuthorizationPolicy'
        ? this.authz
        : this.requestAuthn;
    const m = store.get(namespace);
    const old = m?.get(name)?.resource;
    if (!m || !old) return [];
    m.delete(name);
    this.serviceTargeting.delete(resourceLabel(old));
    if (kind === 'PeerAuthentication') this.refreshPeerFindings(namespace);
    return this.recompute(this.affectedBy(old, undefined));
  }

  private indexServiceTargeting(r: SecurityResource): void {
    const key = resourceLabel(r);
    if (r.kind !== 'PeerAuthentication' && effectiveTargetRefs(r).some(targetsService)) {
      this.serviceTargeting.set(key, r);
    } else {
      this.serviceTargeting.delete(key);
    }
  }

  upsertWorkload(w: Workload): string[] {
    mapIn(this.workloads, w.namespace).set(w.name, w);
    return this.recompute([w]);
  }

  removeWorkload(namespace: string, name: string): void {
    this.workloads.get(namespace)?.delete(name);
    this.bundles.delete(workloadKey({ namespace, name }));
  }

  /** A deleted namespace takes its workloads and policies with it. */
  removeNamespace(namespace: string): string[] {
    for (const name of [...(this.workloads.get(namespace)?.keys() ?? [])]) {
      this.removeWorkload(namespace, name);
    }
    this.workloads.delete(namespace);
    const changed = new Set<string>();
    for (const name of [...(this.peer.get(namespace)?.keys() ?? [])]) {
      for (const k of this.removePolicy('PeerAuthentication', namespace, name)) changed.add(k);
    }
    for (const name of [...(this.authz.get(namespace)?.keys() ?? [])]) {
      for (const k of this.removePolicy('AuthorizationPolicy', namespace, name)) changed.add(k);
    }
    for (const name of [...(this.requestAuthn.get(namespace)?.keys() ?? [])]) {
      for (const k of this.removePolicy('RequestAuthentication', namespace, name)) changed.add(k);
    }
    return [...changed];
  }

  private storeAuthorization(resource: AuthorizationPolicy): StoredAuthorization {
    const diagnostics = validateResource(resource);
    const normalized = normalizePolicy(
      resource,
      { trustDomains: trustDomains(this.mesh) },
      diagnostics,
    );
    return { resource, diagnostics, normalized };
  }

  private refreshPeerFindings(namespace: string): void {
    const list = [...(this.peer.get(namespace)?.values() ?? [])].map((p) => p.resource);
    this.peerFindings.set(namespace, peerAuthenticationDiagnostics(list, this.mesh.rootNamespace));
  }

  private everyWorkload(): Workload[] {
    const out: Workload[] = [];
    for (const m of this.workloads.values()) out.push(...m.values());
    return out;
  }

  private applies(r: SecurityResource, w: Workload): boolean {
    return r.kind === 'PeerAuthentication'
      ? peerAuthenticationApplies(r, w, this.mesh.rootNamespace)
      : policyAttaches(r, w, this.mesh.rootNamespace);
  }

  private affectedBy(now: SecurityResource, old: SecurityResource | undefined): Workload[] {
    const ns = now.meta.namespace;
    const root = this.mesh.rootNamespace;
    const candidates =
      ns === root ? this.everyWorkload() : [...(this.workloads.get(ns)?.values() ?? [])];
    // A namespace-wide PeerAuthentication can change which sibling wins, so its whole namespace counts.
    if (
      now.kind === 'PeerAuthentication' &&
      (now.selector === null || (old?.kind === now.kind && old.selector === null))
    ) {
      return candidates;
    }
    // Waypoints take policies per service, from any namespace: they are few, so all of them
    // recompute when such a policy changes.
    const beyond = [now, old].some(
      (r) => r !== undefined && r.kind !== 'PeerAuthentication' && attachesBeyondNamespace(r, root),
    );
    const affected = candidates.filter(
      (w) =>
        w.kind === 'waypoint' ||
        this.applies(now, w) ||
        (old !== undefined && this.applies(old, w)),
    );
    if (beyond) {
      const seen = new Set(affected.map(workloadKey));
      for (const w of this.everyWorkload()) {
        if (w.kind === 'waypoint' && !seen.has(workloadKey(w))) affected.push(w);
      }
    }
    return affected;
  }

  private recompute(workloads: readonly Workload[]): string[] {
    const changed: string[] = [];
    for (const w of workloads) {
      const key = workloadKey(w);
      const next = this.compile(w);
      if (this.bundles.get(key)?.hash !== next.hash) {
        this.bundles.set(key, next);
        changed.push(key);
        for (const l of this.listeners) l(next);
      }
    }
    this.lastRecomputed = workloads.length;
    return changed;
  }

  private compile(w: Workload): PolicyBundle {
    const root = this.mesh.rootNamespace;
    const namespaces = w.namespace === root ? [root] : [w.namespace, root];
    const peerAuthentications: PeerAuthentication[] = [];
    const diagnostics: Diagnostic[] = [];
    for (const ns of namespaces) {
      for (const p of this.peer.get(ns)?.values() ?? []) {
        if (!peerAuthenticationApplies(p.resource, w, root)) continue;
        peerAuthentications.push(p.resource);
        diagnostics.push(...p.diagnostics);
        const label = resourceLabel(p.resource);
        diagnostics.push(...(this.peerFindings.get(ns) ?? []).filter((d) => d.resource === label));
      }
    }
    const { authorizationPolicies, requestAuthentications } = this.attached(
      w,
      namespaces,
      null,
      diagnostics,
    );
    peerAuthentications.sort((a, b) => {
      const x = policyRef(a.meta);
      const y = policyRef(b.meta);
      return x < y ? -1 : x > y ? 1 : 0;
    });
    return buildBundle({
      workload: w,
      mesh: this.mesh,
      peerAuthentications,
      authorizationPolicies,
      requestAuthentications,
      ...(w.kind === 'waypoint'
        ? {
            services: this.waypointServices(w).map((service) => ({
              service,
              ...this.attached(
                w,
                [...new Set([...namespaces, service.namespace])],
                service,
                diagnostics,
              ),
            })),
          }
        : {}),
      diagnostics,
    });
  }

  /** The AuthorizationPolicies and RequestAuthentications attached, sorted by name. */
  private attached(
    w: Workload,
    namespaces: readonly string[],
    service: ServiceRef | null,
    diagnostics: Diagnostic[],
  ): {
    authorizationPolicies: NormalizedPolicy[];
    requestAuthentications: RequestAuthentication[];
  } {
    const root = this.mesh.rootNamespace;
    const authorizationPolicies: NormalizedPolicy[] = [];
    const requestAuthentications: RequestAuthentication[] = [];
    for (const ns of namespaces) {
      for (const p of this.authz.get(ns)?.values() ?? []) {
        if (!policyAttaches(p.resource, w, root, service)) continue;
        authorizationPolicies.push(p.normalized);
        diagnostics.push(...p.diagnostics);
      }
      for (const p of this.requestAuthn.get(ns)?.values() ?? []) {
        if (!policyAttaches(p.resource, w, root, service)) continue;
        requestAuthentications.push(p.resource);
        diagnostics.push(...p.diagnostics);
      }
    }
    authorizationPolicies.sort((a, b) => (a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : 0));
    requestAuthentications.sort((a, b) => compareRefs(policyRef(a.meta), policyRef(b.meta)));
    return { authorizationPolicies, requestAuthentications };
  }

  /**
   * The services a waypoint has a chain for: those the workload names, else every Service or
   * ServiceEntry some policy targets (a request names the one it is for).
   */
  private waypointServices(w: Workload): ServiceRef[] {
    const found = new Map<string, ServiceRef>();
    if (w.services.length > 0) {
      for (const s of w.services) found.set(serviceKey(s), s);
    } else {
      for (const p of this.serviceTargeting.values()) {
        for (const t of effectiveTargetRefs(p)) {
          if (!targetsService(t)) continue;
          const s: ServiceRef = {
            namespace: p.meta.namespace,
            name: t.name,
            kind: t.kind === 'ServiceEntry' ? 'ServiceEntry' : 'Service',
          };
          found.set(serviceKey(s), s);
        }
      }
    }
    return [...found.entries()].sort((a, b) => compareRefs(a[0], b[0])).map(([, s]) => s);
  }
}

function compareRefs(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function mapIn<V>(outer: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let m = outer.get(key);
  if (!m) {
    m = new Map();
    outer.set(key, m);
  }
  return m;
}
