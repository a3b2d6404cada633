import type { AuthorizationPolicy, PeerAuthentication } from './resource.js';
import type { Workload } from './workload.js';

/** Labels that mark a Gateway API gateway deployment, newest first (KubernetesGatewayNameAndExists). */
const GATEWAY_NAME_LABELS = ['gateway.networking.k8s.io/gateway-name', 'istio.io/gateway-name'];
const GATEWAY_GROUP = 'gateway.networking.k8s.io';

function gatewayApiName(w: Workload): string | null {
  for (const l of GATEWAY_NAME_LABELS) {
    const v = w.labels[l];
    if (v !== undefined) return v;
  }
  return null;
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
 * Whether an AuthorizationPolicy applies to a workload (pilot/pkg/model authorization.go and
 * getPolicyMatcher): same or root namespace; a policy with targetRef(s) applies only to the
 * Gateway API gateway it names and never to a sidecar; otherwise the selector decides.
 */
export function authorizationPolicyApplies(
  ap: AuthorizationPolicy,
  w: Workload,
  rootNamespace: string,
): boolean {
  if (!inScope(ap.meta.namespace, w, rootNamespace)) return false;
  const gateway = gatewayApiName(w);
  if (ap.targetRefs.length > 0) {
    if (gateway === null) return false;
    return ap.targetRefs.some(
      (t) =>
        t.group === GATEWAY_GROUP &&
        t.kind === 'Gateway' &&
        t.name === gateway &&
        (t.namespace === '' || t.namespace === w.namespace),
    );
  }
  return selectorMatches(ap.selector, w.labels);
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
