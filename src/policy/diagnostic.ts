/**
 * A finding about one policy: which resource, which field, why. Evaluation never throws on a
 * bad policy; it records one of these and treats the policy the way Istio does (see docs/policy.md).
 */
export interface Diagnostic {
  /**
   * `error`: Istio refuses or drops this (schema or validation-webhook failure, skipped rule).
   * `warning`: accepted by Istio, but probably not what the author meant.
   */
  readonly severity: 'error' | 'warning';
  /** `<Kind> <namespace>/<name>`, or the document position when the object has no name. */
  readonly resource: string;
  /** A JSON-path-like pointer into the object, e.g. `spec.rules[0].from[0].source.ipBlocks[1]`. */
  readonly field: string;
  readonly message: string;
}

export function diagnostic(
  severity: Diagnostic['severity'],
  resource: string,
  field: string,
  message: string,
): Diagnostic {
  return { severity, resource, field, message };
}

/** A stable order for output: by resource, then field, then message. */
export function sortDiagnostics(list: readonly Diagnostic[]): Diagnostic[] {
  return [...list].sort(
    (a, b) =>
      cmp(a.resource, b.resource) ||
      cmp(a.field, b.field) ||
      cmp(a.severity, b.severity) ||
      cmp(a.message, b.message),
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
