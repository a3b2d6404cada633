import { diagnostic, type Diagnostic } from './diagnostic.js';
import {
  compareByAge,
  policyRef,
  resourceLabel,
  type MtlsMode,
  type PeerAuthentication,
} from './resource.js';

export type EffectiveMtlsMode = Exclude<MtlsMode, 'UNSET'>;
export type MtlsLevel = 'default' | 'mesh' | 'namespace' | 'workload' | 'port';

/** An effective mode and what decided it: the policy (`ns/name`) and its level. */
export interface MtlsDecision {
  readonly mode: EffectiveMtlsMode;
  readonly policy: string | null;
  readonly level: MtlsLevel;
}

export interface ResolvedMtls {
  /** The workload-wide mode. */
  readonly workload: MtlsDecision;
  /** Port-level overrides from the winning workload policy, sorted by port. */
  readonly ports: readonly (MtlsDecision & { readonly port: number })[];
}

const PERMISSIVE_DEFAULT: MtlsDecision = { mode: 'PERMISSIVE', policy: null, level: 'default' };

/**
 * Istio's ComposePeerAuthentication (pilot/pkg/security/authn/policy_applier.go): the oldest
 * policy of each level wins (creationTimestamp, then name); mesh (root namespace, no selector)
 * < namespace (no selector) < workload (selector, not in the root namespace) < port level;
 * UNSET inherits from the level above; with nothing at all the mode is PERMISSIVE.
 * `applicable` must already be the policies selecting the workload (selection.ts).
 */
export function resolvePeerAuthentication(
  applicable: readonly PeerAuthentication[],
  rootNamespace: string,
): ResolvedMtls {
  let mesh: PeerAuthentication | undefined;
  let namespace: PeerAuthentication | undefined;
  let workload: PeerAuthentication | undefined;
  const older = (a: PeerAuthentication, b: PeerAuthentication | undefined): boolean =>
    b === undefined || compareByAge(a.meta, b.meta) < 0;
  for (const pa of applicable) {
    if (pa.selector === null) {
      if (pa.meta.namespace === rootNamespace) {
        if (older(pa, mesh)) mesh = pa;
      } else if (older(pa, namespace)) namespace = pa;
    } else if (pa.meta.namespace !== rootNamespace && older(pa, workload)) {
      workload = pa;
    }
  }
  let current = PERMISSIVE_DEFAULT;
  const step = (pa: PeerAuthentication | undefined, level: MtlsLevel): void => {
    if (pa && pa.mode !== 'UNSET') current = { mode: pa.mode, policy: policyRef(pa.meta), level };
  };
  step(mesh, 'mesh');
  step(namespace, 'namespace');
  step(workload, 'workload');
  const ports = workload
    ? (workload.portLevelMtls ?? []).map(({ port, mode }) =>
        mode === 'UNSET'
          ? { port, ...current }
          : { port, mode, policy: policyRef(workload.meta), level: 'port' as const },
      )
    : [];
  return { workload: current, ports };
}

/** The mode for one workload port: its port-level setting, else the workload-wide mode. */
export function mtlsForPort(resolved: ResolvedMtls, port: number): MtlsDecision {
  return resolved.ports.find((p) => p.port === port) ?? resolved.workload;
}

/**
 * Workload-independent findings: a selector in the root namespace is ignored, and of several
 * mesh- or namespace-wide policies in one namespace only the oldest applies.
 */
export function peerAuthenticationDiagnostics(
  all: readonly PeerAuthentication[],
  rootNamespace: string,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const wide = new Map<string, PeerAuthentication[]>();
  for (const pa of all) {
    if (pa.selector !== null && pa.meta.namespace === rootNamespace) {
      out.push(
        diagnostic(
          'warning',
          resourceLabel(pa),
          'spec.selector',
          `a PeerAuthentication with a selector in the root namespace "${rootNamespace}" is ignored by Istio; put it in the workload's namespace`,
        ),
      );
    }
    if (pa.selector === null)
      wide.set(pa.meta.namespace, [...(wide.get(pa.meta.namespace) ?? []), pa]);
  }
  for (const [ns, list] of wide) {
    const [oldest, ...younger] = [...list].sort((a, b) => compareByAge(a.meta, b.meta));
    if (!oldest || younger.length === 0) continue;
    const winner = policyRef(oldest.meta);
    const level = ns === rootNamespace ? 'mesh' : 'namespace';
    for (const pa of younger) {
      out.push(
        diagnostic(
          'warning',
          resourceLabel(pa),
          'metadata.creationTimestamp',
          `several ${level}-wide PeerAuthentications in "${ns}": only the oldest, ${winner}, applies`,
        ),
      );
    }
  }
  return out;
}
