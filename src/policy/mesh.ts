import { InputFields, fieldError } from './input-fields.js';

/** An external authorizer declared in MeshConfig.extensionProviders (used by CUSTOM policies). */
export interface ExtensionProvider {
  readonly name: string;
  /** envoyExtAuthzGrpc works on HTTP and TCP; envoyExtAuthzHttp only on HTTP. */
  readonly type: 'envoyExtAuthzGrpc' | 'envoyExtAuthzHttp' | 'other';
  readonly service: string;
  readonly port: number | null;
}

/** The MeshConfig settings that change policy evaluation. */
export interface MeshSettings {
  readonly rootNamespace: string;
  readonly trustDomain: string;
  readonly trustDomainAliases: readonly string[];
  readonly extensionProviders: readonly ExtensionProvider[];
}

/** MeshConfig defaults: root namespace istio-system, trust domain cluster.local. */
export const DEFAULT_MESH: MeshSettings = {
  rootNamespace: 'istio-system',
  trustDomain: 'cluster.local',
  trustDomainAliases: [],
  extensionProviders: [],
};

export function parseMesh(value: unknown, path = 'mesh'): MeshSettings {
  const f = InputFields.of(value, path, false);
  if (!f) return DEFAULT_MESH;
  const providers: ExtensionProvider[] = f.list('extensionProviders').map((raw, i) => {
    const p = InputFields.of(raw, `${f.at('extensionProviders')}[${i}]`);
    const name = p.requiredString('name');
    for (const type of ['envoyExtAuthzGrpc', 'envoyExtAuthzHttp'] as const) {
      const body = p.object(type);
      if (body) {
        return {
          name,
          type,
          service: body.string('service') ?? '',
          port: body.port('port', false) ?? null,
        };
      }
    }
    return { name, type: 'other', service: '', port: null };
  });
  const names = new Set<string>();
  for (const p of providers) {
    if (names.has(p.name))
      throw fieldError(f.at('extensionProviders'), `duplicate provider "${p.name}"`);
    names.add(p.name);
  }
  return {
    rootNamespace: f.string('rootNamespace') || DEFAULT_MESH.rootNamespace,
    trustDomain: f.string('trustDomain') || DEFAULT_MESH.trustDomain,
    trustDomainAliases: f.stringList('trustDomainAliases'),
    extensionProviders: providers,
  };
}

/** The local trust domain first, then its aliases (trustdomain.NewBundle). */
export function trustDomains(mesh: MeshSettings): string[] {
  return [mesh.trustDomain, ...mesh.trustDomainAliases];
}
