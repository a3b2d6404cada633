import { InputFields, fieldError } from './input-fields.js';
import { PATH_NORMALIZATIONS, type PathNormalization } from './path-normalization.js';

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
  /** meshConfig.pathNormalization.normalization, DEFAULT resolved to BASE (what it means). */
  readonly pathNormalization: PathNormalization;
}

/** MeshConfig defaults: root namespace istio-system, trust domain cluster.local, BASE paths. */
export const DEFAULT_MESH: MeshSettings = {
  rootNamespace: 'istio-system',
  trustDomain: 'cluster.local',
  trustDomainAliases: [],
  extensionProviders: [],
  pathNormalization: 'BASE',
};

/** MeshConfig.ProxyPathNormalization.NormalizationType; DEFAULT is "currently BASE" (istio/api). */
const NORMALIZATION_NAMES = ['DEFAULT', ...PATH_NORMALIZATIONS] as const;

/**
 * `pathNormalization` as MeshConfig writes it, `{normalization: MERGE_SLASHES}` (an absent
 * `normalization` is DEFAULT); the bare mode name is accepted too.
 */
function parsePathNormalization(f: InputFields): PathNormalization | undefined {
  const raw = f.raw('pathNormalization');
  if (raw === undefined || raw === null) return undefined;
  const name =
    typeof raw === 'string'
      ? raw
      : (InputFields.of(raw, f.at('pathNormalization')).string('normalization') ?? 'DEFAULT');
  if (!(NORMALIZATION_NAMES as readonly string[]).includes(name)) {
    throw fieldError(
      typeof raw === 'string'
        ? f.at('pathNormalization')
        : `${f.at('pathNormalization')}.normalization`,
      `"${name}" is not one of ${NORMALIZATION_NAMES.join(', ')}`,
    );
  }
  return name === 'DEFAULT' ? 'BASE' : (name as PathNormalization);
}

/**
 * The policy-relevant fields of a MeshConfig (YAML/JSON object); every field that is absent
 * keeps its value from `base`. Other MeshConfig fields are ignored.
 */
export function meshFromConfig(value: unknown, base: MeshSettings, path = 'mesh'): MeshSettings {
  const f = InputFields.of(value, path, false);
  if (!f) return base;
  let providers = base.extensionProviders;
  if (f.has('extensionProviders')) {
    providers = f.list('extensionProviders').map((raw, i) => {
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
      return { name, type: 'other' as const, service: '', port: null };
    });
    const names = new Set<string>();
    for (const p of providers) {
      if (names.has(p.name))
        throw fieldError(f.at('extensionProviders'), `duplicate provider "${p.name}"`);
      names.add(p.name);
    }
  }
  return {
    rootNamespace: f.string('rootNamespace') || base.rootNamespace,
    trustDomain: f.string('trustDomain') || base.trustDomain,
    trustDomainAliases: f.has('trustDomainAliases')
      ? f.stringList('trustDomainAliases')
      : base.trustDomainAliases,
    extensionProviders: providers,
    pathNormalization: parsePathNormalization(f) ?? base.pathNormalization,
  };
}

/** The `mesh` of a `policy check` input (or a --mesh file): MeshConfig fields over the defaults. */
export function parseMesh(value: unknown, path = 'mesh'): MeshSettings {
  return meshFromConfig(value, DEFAULT_MESH, path);
}

/** The local trust domain first, then its aliases (trustdomain.NewBundle). */
export function trustDomains(mesh: MeshSettings): string[] {
  return [mesh.trustDomain, ...mesh.trustDomainAliases];
}
