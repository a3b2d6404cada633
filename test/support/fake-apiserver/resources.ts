/**
 * The resource types the fake API server knows, as the real one publishes them in discovery:
 * group, served versions, plural name, kind, and whether objects live in a namespace.
 * Objects are stored once per group+resource and served in any of its versions, as the real
 * server does for multi-version custom resources (security.istio.io v1 and v1beta1).
 */
export interface ResourceType {
  /** '' for the core group (served under /api/v1). */
  readonly group: string;
  readonly versions: readonly string[];
  readonly resource: string;
  readonly kind: string;
  readonly namespaced: boolean;
  /** Custom resources keep kind/apiVersion on list items; built-in types drop them. */
  readonly custom?: boolean;
  /** Create-only virtual resources (TokenReview): nothing is stored, nothing can be read. */
  readonly createOnly?: boolean;
}

export const RESOURCE_TYPES: readonly ResourceType[] = [
  { group: '', versions: ['v1'], resource: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: '', versions: ['v1'], resource: 'secrets', kind: 'Secret', namespaced: true },
  { group: '', versions: ['v1'], resource: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', versions: ['v1'], resource: 'events', kind: 'Event', namespaced: true },
  { group: '', versions: ['v1'], resource: 'pods', kind: 'Pod', namespaced: true },
  {
    group: '',
    versions: ['v1'],
    resource: 'serviceaccounts',
    kind: 'ServiceAccount',
    namespaced: true,
  },
  {
    group: 'coordination.k8s.io',
    versions: ['v1'],
    resource: 'leases',
    kind: 'Lease',
    namespaced: true,
  },
  {
    group: 'events.k8s.io',
    versions: ['v1'],
    resource: 'events',
    kind: 'Event',
    namespaced: true,
  },
  {
    group: 'authentication.k8s.io',
    versions: ['v1'],
    resource: 'tokenreviews',
    kind: 'TokenReview',
    namespaced: false,
    createOnly: true,
  },
  ...['peerauthentications', 'authorizationpolicies', 'requestauthentications'].map(
    (resource): ResourceType => ({
      group: 'security.istio.io',
      versions: ['v1', 'v1beta1'],
      resource,
      kind: {
        peerauthentications: 'PeerAuthentication',
        authorizationpolicies: 'AuthorizationPolicy',
        requestauthentications: 'RequestAuthentication',
      }[resource] as string,
      namespaced: true,
      custom: true,
    }),
  ),
];

export function findResourceType(
  group: string,
  version: string,
  resource: string,
): ResourceType | undefined {
  return RESOURCE_TYPES.find(
    (t) => t.group === group && t.resource === resource && t.versions.includes(version),
  );
}

/** `v1` for the core group, `group/version` otherwise. */
export function apiVersionOf(group: string, version: string): string {
  return group === '' ? version : `${group}/${version}`;
}

/** The storage key of a resource type: group and plural, version-free. */
export function storageKeyOf(t: ResourceType): string {
  return `${t.group}/${t.resource}`;
}
