import type { Attachable, PeerAuthentication, TargetRef } from './resource.js';
import { GATEWAY_NAME_LABEL, type ServiceRef, type Workload } from './workload.js';

/** constants.WaypointGatewayClassName: the GatewayClass of Istio's waypoints. */
const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';
const GATEWAY_API = 'gateway.networking.k8s.io';

/**
 * The Gateway a workload is an instance of: its `gateway.networking.k8s.io/gateway-name` label
 * (model.workloadGatewayName). Istio 1.24 stopped reading the older `istio.io/gateway-name`.
 */
export function gatewayName(w: Workload): string | null {
  return w.labels[GATEWAY_NAME_LABEL] ?? null;
}

/** model.GetTargetRefs: `targetRefs` when it has any, else the deprecated `targetRef`. */
export function effectiveTargetRefs(p: Attachable): readonly TargetRef[] {
  if (p.targetRefs.length > 0) return p.targetRefs;
  return p.targetRef ? [p.targetRef] : [];
}

/** Whether a targetRef names a kind a waypoint serves (the policy attaches per service). */
export function targetsService(t: TargetRef): boolean {
  return isGroupKind(t, 'core', 'Service') || isGroupKind(t, 'networking.istio.io', 'ServiceEntry');
}

/** Whether a policy can attach to waypoints other than those of its own namespace. */
export function attachesBeyondNamespace(p: Attachable, rootNamespace: string): boolean {
  return effectiveTargetRefs(p).some(
    (t) =>
      targetsService(t) ||
      (p.meta.namespace === rootNamespace && isGroupKind(t, GATEWAY_API, 'GatewayClass')),
  );
}

/** config.CanonicalGroup: the core group is spelled "" or "core". */
function isGroupKind(t: TargetRef, group: string, kind: string): boolean {
  return (t.group === '' ? 'core' : t.group) === group && t.kind === kind;
}

/** selector.matchLabels ⊆ workload labels; no selector (or an empty one) selects every workload. */
function selectorMatches(
  selector: Readonly<Record<string, string>> | null,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** Policies are looked up in the workload's namespace and in the root namespace. */
export function inScope(policyNamespace: string, w: Workload, rootNamespace: string): boolean {
  return policyNamespace === w.namespace || policyNamespace === rootNamespace;
}

/**
 * Whether an AuthorizationPolicy or RequestAuthentication applies to a workload — and, on a
 * waypoint, to its traffic for `service` — as istiod decides it: the policy must be in the
 * root namespace, the workload's, or the service's (ListAuthorizationPolicies,
 * getConfigsForWorkload), and then WorkloadPolicyMatcher.ShouldAttachPolicy
 * (pilot/pkg/model/policyattachment.go):
 * - a workload without the gateway-name label (a sidecar, a classic gateway) ignores every
 *   policy with targetRef(s) and uses the selector;
 * - a Gateway API gateway uses the selector when the policy has no targetRefs
 *   (ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY, on by default), but a waypoint never does;
 * - otherwise a targetRef attaches a Gateway of the workload's own namespace named like the
 *   label (so a root-namespace policy never reaches a gateway elsewhere), on a waypoint also
 *   the GatewayClass `istio-waypoint` from the root namespace and, per service, the Service or
 *   ServiceEntry of the policy's namespace it names.
 */
export function policyAttaches(
  p: Attachable,
  w: Workload,
  rootNamespace: string,
  service: ServiceRef | null = null,
): boolean {
  const ns = p.meta.namespace;
  if (!inScope(ns, w, rootNamespace) && ns !== service?.namespace) return false;
  const gateway = gatewayName(w);
  const refs = effectiveTargetRefs(p);
  const waypoint = w.kind === 'waypoint';
  if (gateway === null) return refs.length === 0 && selectorMatches(p.selector, w.labels);
  if (refs.length === 0) return !waypoint && selectorMatches(p.selector, w.labels);
  for (const t of refs) {
    if (
      waypoint &&
      service !== null &&
      ns === service.namespace &&
      t.name === service.name &&
      isGroupKind(t, service.kind === 'Service' ? 'core' : 'networking.istio.io', service.kind)
    ) {
      return true;
    }
    if (
      waypoint &&
      ns === rootNamespace &&
      isGroupKind(t, GATEWAY_API, 'GatewayClass') &&
      t.name === WAYPOINT_GATEWAY_CLASS
    ) {
      return true;
    }
    if (ns !== w.namespace) continue;
    if (t.namespace !== '' && t.namespace !== w.namespace) continue;
    if (isGroupKind(t, GATEWAY_API, 'Gateway') && t.name === gateway) return true;
  }
  return false;
}

/** An AuthorizationPolicy applying to a workload's own traffic (not a waypoint service's). */
export function authorizationPolicyApplies(
  ap: Attachable,
  w: Workload,
  rootNamespace: string,
): boolean {
  return policyAttaches(ap, w, rootNamespace);
}

/**
 * The PeerAuthentications istiod hands to ComposePeerAuthentication: same or root namespace,
 * selector matching. A root-namespace policy with a selector is among them but is ignored by
 * the composition (see peer-authentication.ts).
 */
export function peerAuthenticationApplies(
  pa: PeerAuthentication,
  w: Workload,
  rootNamespace: string,
): boolean {
  return inScope(pa.meta.namespace, w, rootNamespace) && selectorMatches(pa.selector, w.labels);
}
