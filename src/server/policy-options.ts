import { readFile } from 'node:fs/promises';
import { CastellanError } from '../errors.js';
import { validateTrustDomain } from '../pki/spiffe.js';
import { parseSingleDocument } from '../policy/documents.js';
import { parseMesh, type MeshSettings } from '../policy/mesh.js';

/** Where the policy inputs of served bundles come from, and how they are evaluated. */
export interface PolicyOptions {
  /** Local mode's folder of manifests, followed (docs/policy.md); undefined = none. */
  readonly policyDir: string | undefined;
  /**
   * MeshConfig (trustDomain, trustDomainAliases, rootNamespace, extensionProviders); optional.
   * Given, it wins over Kubernetes mode's ConfigMap, as istiod's mesh file does.
   */
  readonly meshConfigFile: string | undefined;
  /** The root namespace when the MeshConfig names none: the service's own, as in istiod. */
  readonly defaultRootNamespace: string;
  /** The trust domain when the MeshConfig names none: `--trust-domain`. */
  readonly defaultTrustDomain: string;
}

/** MeshConfig: the file when given, else the service's namespace and `--trust-domain`. */
export async function loadMeshSettings(options: PolicyOptions): Promise<MeshSettings> {
  return meshSettingsFromText(
    await readMeshConfigFile(options),
    options.meshConfigFile ?? 'mesh',
    options,
  );
}

/** The mesh config file's text (`--mesh-config`); undefined when none is given. */
export async function readMeshConfigFile(
  options: Pick<PolicyOptions, 'meshConfigFile'>,
): Promise<string | undefined> {
  const file = options.meshConfigFile;
  if (!file) return undefined;
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new CastellanError('invalid-argument', `cannot read: ${(e as Error).message}`, {
      subject: file,
    });
  }
}

/**
 * MeshConfig from its YAML or JSON text (a file, or the `mesh` key of Kubernetes mode's ConfigMap
 * `istio`); undefined or blank text = none given. What it leaves out comes from the options: the
 * root namespace, and the trust domain (`--trust-domain`), rather than MeshConfig's own
 * cluster.local, so that one flag still sets it when no mesh config names one. A trust domain
 * that is not a valid SPIFFE trust domain is refused, naming `where`.
 */
export function meshSettingsFromText(
  text: string | undefined,
  where: string,
  options: Pick<PolicyOptions, 'defaultRootNamespace' | 'defaultTrustDomain'>,
): MeshSettings {
  const raw =
    text === undefined || text.trim() === '' ? undefined : parseSingleDocument(text, where);
  const mesh = parseMesh(raw, where);
  const given = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
  const trustDomain = given['trustDomain'] ? mesh.trustDomain : options.defaultTrustDomain;
  try {
    validateTrustDomain(trustDomain);
  } catch (e) {
    throw new CastellanError('invalid-argument', (e as Error).message, {
      subject: `${where}: trustDomain`,
    });
  }
  return {
    ...mesh,
    rootNamespace: given['rootNamespace'] ? mesh.rootNamespace : options.defaultRootNamespace,
    trustDomain,
  };
}
