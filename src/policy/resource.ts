/**
 * The typed model of Istio's `security.istio.io` resources that Castellan evaluates, as they
 * are after Kubernetes accepted them against the CRD schema (v1 and v1beta1 share one schema).
 * Lists that are absent or empty are `[]`: protobuf cannot tell them apart, so neither can Istio.
 */

export interface ResourceMeta {
  readonly namespace: string;
  readonly name: string;
  /**
   * metadata.creationTimestamp in milliseconds, or null when absent. Istio orders policies by
   * it (oldest first) and then by name; an absent timestamp is Go's zero time, the oldest.
   */
  readonly creationTimestamp: number | null;
  readonly annotations: Readonly<Record<string, string>>;
  /** Where the object came from (file and document index), for messages. */
  readonly origin: string;
}

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';
export const MTLS_MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

export interface PeerAuthentication {
  readonly kind: 'PeerAuthentication';
  readonly meta: ResourceMeta;
  /** spec.selector.matchLabels; null when there is no selector or it has no labels. */
  readonly selector: Readonly<Record<string, string>> | null;
  readonly mode: MtlsMode;
  /** spec.portLevelMtls sorted by port; null when the field is absent. */
  readonly portLevelMtls: readonly { readonly port: number; readonly mode: MtlsMode }[] | null;
}

export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
export const AUTHORIZATION_ACTIONS: readonly AuthorizationAction[] = [
  'ALLOW',
  'DENY',
  'AUDIT',
  'CUSTOM',
];

export const SOURCE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
  'serviceAccounts',
  'notServiceAccounts',
  'trustDomains',
  'notTrustDomains',
] as const;
export type SourceField = (typeof SOURCE_FIELDS)[number];
export type Source = Readonly<Record<SourceField, readonly string[]>>;

export const OPERATION_FIELDS = [
  'hosts',
  'notHosts',
  'ports',
  'notPorts',
  'methods',
  'notMethods',
  'paths',
  'notPaths',
] as const;
export type OperationField = (typeof OPERATION_FIELDS)[number];
export type Operation = Readonly<Record<OperationField, readonly string[]>>;

export interface Condition {
  readonly key: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

export interface Rule {
  /** Each entry is a `source`, or null for `- {}` (no source: matches any source). */
  readonly from: readonly (Source | null)[];
  /** Each entry is an `operation`, or null for `- {}` (no operation: matches any operation). */
  readonly to: readonly (Operation | null)[];
  readonly when: readonly Condition[];
}

export interface TargetRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace: string;
}

/** The attachment fields shared by AuthorizationPolicy and RequestAuthentication. */
export interface Attachable {
  readonly meta: ResourceMeta;
  /** spec.selector.matchLabels; null when absent (an empty selector is `{}`). */
  readonly selector: Readonly<Record<string, string>> | null;
  /** spec.targetRef (deprecated), null when absent. */
  readonly targetRef: TargetRef | null;
  /** spec.targetRefs; when non-empty, istiod ignores targetRef (model.GetTargetRefs). */
  readonly targetRefs: readonly TargetRef[];
}

export interface AuthorizationPolicy extends Attachable {
  readonly kind: 'AuthorizationPolicy';
  readonly action: AuthorizationAction;
  /** spec.provider.name for CUSTOM; null when absent. */
  readonly provider: string | null;
  /** A null entry is `- null` in YAML: Istio skips it. */
  readonly rules: readonly (Rule | null)[];
  /** The istio.io/dry-run annotation, parsed as istiod does (Go's strconv.ParseBool). */
  readonly dryRun: boolean;
}

/** One spec.jwtRules entry (istio/api security/v1beta1 JWTRule), the fields that change decisions. */
export interface JwtRule {
  /** '' when absent: Envoy then does not check the token's `iss`. */
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly jwksUri: string;
  readonly jwks: string;
  readonly fromHeaders: readonly { readonly name: string; readonly prefix: string }[];
  readonly fromParams: readonly string[];
  readonly fromCookies: readonly string[];
  readonly forwardOriginalToken: boolean;
  readonly outputPayloadToHeader: string;
  readonly outputClaimToHeaders: readonly { readonly header: string; readonly claim: string }[];
  /** null when absent; `scope` and `permission` are space-delimited either way. */
  readonly spaceDelimitedClaims: readonly string[] | null;
}

export interface RequestAuthentication extends Attachable {
  readonly kind: 'RequestAuthentication';
  /** A null entry is `- null` in YAML. */
  readonly jwtRules: readonly (JwtRule | null)[];
}

export type SecurityResource = PeerAuthentication | AuthorizationPolicy | RequestAuthentication;
export type SecurityKind = SecurityResource['kind'];

/** `<namespace>/<name>`: how bundles and decisions name a policy. */
export function policyRef(meta: ResourceMeta): string {
  return `${meta.namespace}/${meta.name}`;
}

/** `<Kind> <namespace>/<name>`: how diagnostics name a resource. */
export function resourceLabel(r: SecurityResource): string {
  return `${r.kind} ${policyRef(r.meta)}`;
}

/**
 * Istio's order for policies of one kind: creationTimestamp ascending, then name, then
 * namespace (pilot/pkg/model sortConfigByCreationTime).
 */
export function compareByAge(a: ResourceMeta, b: ResourceMeta): number {
  const ta = a.creationTimestamp ?? Number.NEGATIVE_INFINITY;
  const tb = b.creationTimestamp ?? Number.NEGATIVE_INFINITY;
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return 0;
}
