import { readFile } from 'node:fs/promises';
import { CastellanError } from '../errors.js';
import { parseSingleDocument } from '../policy/documents.js';
import { parseMesh, type MeshSettings } from '../policy/mesh.js';

/** Where the policy inputs of served bundles come from, and how they are evaluated. */
export interface PolicyOptions {
  /** Local mode's folder of manifests, followed (docs/policy.md); undefined = none. */
  readonly policyDir: string | undefined;
  /** MeshConfig settings (rootNamespace, trustDomainAliases, extensionProviders); optional. */
  readonly meshConfigFile: string | undefined;
  /** The root namespace when the MeshConfig names none: the service's own, as in istiod. */
  readonly defaultRootNamespace: string;
  /** The trust domain when the MeshConfig names none: the CA's. */
  readonly defaultTrustDomain: string;
}

/** MeshConfig for policies: the file when given, else the service's namespace and trust domain. */
export async function loadMeshSettings(options: PolicyOptions): Promise<MeshSettings> {
  const file = options.meshConfigFile;
  if (!file) {
    return {
      ...parseMesh(undefined),
      rootNamespace: options.defaultRootNamespace,
      trustDomain: options.defaultTrustDomain,
    };
  }
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CastellanError('invalid-argument', `cannot read: ${(e as Error).message}`, {
      subject: file,
    });
  }
  const raw = parseSingleDocument(text, file);
  const mesh = parseMesh(raw, file);
  const given = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
  return {
    ...mesh,
    rootNamespace: given['rootNamespace'] ? mesh.rootNamespace : options.defaultRootNamespace,
    trustDomain: given['trustDomain'] ? mesh.trustDomain : options.defaultTrustDomain,
  };
}
