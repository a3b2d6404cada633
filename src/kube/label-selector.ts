// Kubernetes label selectors (metav1.LabelSelector) as the mesh config's `discoverySelectors`
// use them: matchLabels and matchExpressions, checked and matched as istiod does
// (pkg/config/mesh/labelselector: LabelSelectorAsSelector, then k8s.io/apimachinery/pkg/labels).
import { CastellanError } from '../errors.js';

export type LabelSelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelRequirement {
  readonly key: string;
  readonly operator: LabelSelectorOperator;
  readonly values: readonly string[];
}

/**
 * A checked selector: every requirement must hold. `nothing` is a null selector, which selects
 * no namespace (labelselector.go: "A nil selector matches nothing"); an empty one selects all.
 */
export interface LabelSelector {
  readonly requirements: readonly LabelRequirement[];
  readonly nothing: boolean;
}

const OPERATORS: readonly LabelSelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];
/** A label name, or the part of a key after its prefix: apimachinery's qualifiedNameFmt. */
const NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
/** A key's prefix: a DNS subdomain (RFC 1123). */
const PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function bad(path: string, why: string): CastellanError {
  return new CastellanError('invalid-argument', why, { subject: path });
}

/** Whether `key` is a valid label key (`[prefix/]name`), as validation.IsQualifiedName. */
export function isLabelKey(key: string): boolean {
  const slash = key.lastIndexOf('/');
  const name = slash < 0 ? key : key.slice(slash + 1);
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  if (
    prefix !== undefined &&
    (prefix.length === 0 || prefix.length > 253 || !PREFIX.test(prefix))
  ) {
    return false;
  }
  return name.length > 0 && name.length <= 63 && NAME.test(name);
}

/** Whether `value` is a valid label value (may be empty), as validation.IsValidLabelValue. */
export function isLabelValue(value: string): boolean {
  return value === '' || (value.length <= 63 && NAME.test(value));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks one selector as it appears in YAML/JSON; `path` names it in errors (e.g.
 * `configmap istio-system/istio mesh.discoverySelectors[0]`).
 */
export function parseLabelSelector(raw: unknown, path: string): LabelSelector {
  if (raw === null || raw === undefined) return { requirements: [], nothing: true };
  if (!isRecord(raw)) throw bad(path, 'must be a label selector (matchLabels, matchExpressions)');
  for (const field of Object.keys(raw)) {
    if (field !== 'matchLabels' && field !== 'matchExpressions') {
      throw bad(`${path}.${field}`, 'unknown field (matchLabels and matchExpressions only)');
    }
  }
  const requirements: LabelRequirement[] = [];
  const matchLabels = raw['matchLabels'];
  if (matchLabels !== undefined && matchLabels !== null) {
    if (!isRecord(matchLabels)) throw bad(`${path}.matchLabels`, 'must be a map of labels');
    for (const [key, value] of Object.entries(matchLabels)) {
      const at = `${path}.matchLabels.${key}`;
      if (!isLabelKey(key)) throw bad(at, `"${key}" is not a valid label key`);
      if (typeof value !== 'string' || !isLabelValue(value)) {
        throw bad(at, `${JSON.stringify(value)} is not a valid label value`);
      }
      requirements.push({ key, operator: 'In', values: [value] });
    }
  }
  const expressions = raw['matchExpressions'];
  if (expressions !== undefined && expressions !== null) {
    if (!Array.isArray(expressions)) throw bad(`${path}.matchExpressions`, 'must be a list');
    expressions.forEach((e: unknown, i) => {
      const at = `${path}.matchExpressions[${i}]`;
      if (!isRecord(e)) throw bad(at, 'must be {key, operator, values}');
      const key = e['key'];
      const operator = e['operator'];
      const values = e['values'] ?? [];
      if (typeof key !== 'string' || !isLabelKey(key)) {
        throw bad(`${at}.key`, `${JSON.stringify(key)} is not a valid label key`);
      }
      if (!OPERATORS.includes(operator as LabelSelectorOperator)) {
        throw bad(
          `${at}.operator`,
          `${JSON.stringify(operator)} is not a valid label selector operator (${OPERATORS.join(', ')})`,
        );
      }
      if (!Array.isArray(values) || values.some((v) => typeof v !== 'string' || !isLabelValue(v))) {
        throw bad(`${at}.values`, 'must be a list of label values');
      }
      const op = operator as LabelSelectorOperator;
      // labels.NewRequirement: a set for In and NotIn, none for Exists and DoesNotExist.
      if ((op === 'In' || op === 'NotIn') && values.length === 0) {
        throw bad(`${at}.values`, `must not be empty for operator ${op}`);
      }
      if ((op === 'Exists' || op === 'DoesNotExist') && values.length > 0) {
        throw bad(`${at}.values`, `must be empty for operator ${op}`);
      }
      requirements.push({ key, operator: op, values: values as string[] });
    });
  }
  return { requirements, nothing: false };
}

/** Whether labels satisfy a selector (NotIn also holds when the label is absent, as in Kubernetes). */
export function matchesLabelSelector(
  selector: LabelSelector,
  labels: Readonly<Record<string, string>> | undefined,
): boolean {
  if (selector.nothing) return false;
  const l = labels ?? {};
  return selector.requirements.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    const value = l[r.key];
    switch (r.operator) {
      case 'In':
        return has && r.values.includes(value as string);
      case 'NotIn':
        return !has || !r.values.includes(value as string);
      case 'Exists':
        return has;
      case 'DoesNotExist':
        return !has;
    }
  });
}
