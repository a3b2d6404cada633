import { parse as parseYaml } from 'yaml';
import { CastellanError, asCastellanError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { matchesLabelSelector, parseLabelSelector, type LabelSelector } from './label-selector.js';

/** Which namespaces get the published ConfigMaps; the publisher asks on every reconcile. */
export interface NamespaceFilter {
  selects(namespace: {
    readonly name: string;
    readonly labels?: Readonly<Record<string, string>> | undefined;
  }): boolean;
  /** Called when the selection may have changed; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** Every namespace: what an absent or empty `discoverySelectors` means. */
export const ALL_NAMESPACES: NamespaceFilter = {
  selects: () => true,
  onChange: () => () => {},
};

/**
 * The `discoverySelectors` of a MeshConfig (YAML text): none (or an empty list) selects every
 * namespace; otherwise a namespace is selected when any selector matches its labels. A bad
 * document or selector is `invalid-argument` naming where.
 */
export function parseDiscoverySelectors(meshYaml: string, where: string): LabelSelector[] {
  let doc: unknown;
  try {
    doc = parseYaml(meshYaml);
  } catch (e) {
    throw new CastellanError('invalid-argument', `not YAML: ${(e as Error).message}`, {
      subject: where,
    });
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new CastellanError('invalid-argument', 'must be a MeshConfig object', { subject: where });
  }
  const raw = (doc as Record<string, unknown>)['discoverySelectors'];
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    throw new CastellanError('invalid-argument', 'must be a list of label selectors', {
      subject: `${where} discoverySelectors`,
    });
  }
  return raw.map((s: unknown, i) => parseLabelSelector(s, `${where} discoverySelectors[${i}]`));
}

/**
 * The mesh config's `discoverySelectors`, followed live as istiod's discovery namespace filter
 * follows them (pkg/kube/namespace/filter.go): no selectors select every namespace, a namespace
 * is selected when any selector matches its labels, and a selector that does not parse leaves
 * the previous selection in place (logged). No mesh config (a deleted ConfigMap) means istiod's
 * defaults: every namespace. It watches nothing itself: the one watch of ConfigMap `istio`
 * (src/kube/mesh-config-watch.ts) feeds it, with the mesh holder, through `meshChanged`.
 */
export class DiscoveryNamespaces implements NamespaceFilter {
  private selectors: readonly LabelSelector[] = [];
  /** The last text applied, so a resync or an unrelated edit of the mesh config notifies no one. */
  private applied = '[]';
  private readonly listeners = new Set<() => void>();
  private readonly logger: Logger;

  constructor(options: { logger?: Logger | undefined } = {}) {
    this.logger = options.logger ?? silentLogger;
  }

  /** The mesh config's text (`where` names it in errors), or undefined when there is none. */
  meshChanged(text: string | undefined, where: string): void {
    if (text === undefined) {
      this.apply([]);
      return;
    }
    try {
      this.apply(parseDiscoverySelectors(text, where));
    } catch (e) {
      this.logger.error(
        { error: asCastellanError(e).message },
        'mesh config refused: the discovery selectors stay as they were',
      );
    }
  }

  selects(namespace: { readonly labels?: Readonly<Record<string, string>> | undefined }): boolean {
    return (
      this.selectors.length === 0 ||
      this.selectors.some((s) => matchesLabelSelector(s, namespace.labels))
    );
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private apply(selectors: readonly LabelSelector[]): void {
    const text = JSON.stringify(selectors);
    if (text === this.applied) return;
    this.applied = text;
    this.selectors = selectors;
    this.logger.info(
      { selectors: selectors.length === 0 ? 'every namespace' : selectors.length },
      'discovery selectors changed',
    );
    for (const l of [...this.listeners]) l();
  }
}
