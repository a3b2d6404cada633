import { statusErrors } from './status.js';

/** The metadata and fields a selector may look at. */
export interface Selectable {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

export type Predicate = (obj: Selectable) => boolean;

/**
 * Label selectors as the API server accepts them in `?labelSelector=`: `k=v`, `k==v`, `k!=v`,
 * `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma-separated (all must hold).
 */
export function parseLabelSelector(text: string | null): Predicate {
  if (!text) return () => true;
  const terms: Predicate[] = [];
  // Split on commas that are not inside parentheses.
  for (const raw of text.split(/,(?![^(]*\))/)) {
    const t = raw.trim();
    if (!t) continue;
    let m: RegExpExecArray | null;
    const labels = (o: Selectable): Record<string, string> => o.metadata?.labels ?? {};
    if ((m = /^([\w./-]+)\s*(in|notin)\s*\(([^)]*)\)$/.exec(t))) {
      const [, k, op, list] = m as unknown as [string, string, string, string];
      const values = list.split(',').map((s) => s.trim());
      terms.push((o) => {
        const v = labels(o)[k];
        return op === 'in'
          ? v !== undefined && values.includes(v)
          : v === undefined || !values.includes(v);
      });
    } else if ((m = /^([\w./-]+)\s*(!=|==|=)\s*([\w./-]*)$/.exec(t))) {
      const [, k, op, v] = m as unknown as [string, string, string, string];
      terms.push((o) => (op === '!=' ? labels(o)[k] !== v : labels(o)[k] === v));
    } else if ((m = /^!([\w./-]+)$/.exec(t))) {
      const k = m[1] as string;
      terms.push((o) => !(k in labels(o)));
    } else if ((m = /^([\w./-]+)$/.exec(t))) {
      const k = m[1] as string;
      terms.push((o) => k in labels(o));
    } else {
      throw statusErrors.badRequest(`unable to parse requirement: "${t}"`);
    }
  }
  return (o) => terms.every((p) => p(o));
}

function fieldValue(obj: Selectable, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Field selectors: `path=value`, `path==value`, `path!=value` over dotted paths (metadata.name, type). */
export function parseFieldSelector(text: string | null): Predicate {
  if (!text) return () => true;
  const terms: Predicate[] = [];
  for (const raw of text.split(',')) {
    const m = /^\s*([\w.]+)\s*(!=|==|=)\s*(.*?)\s*$/.exec(raw);
    if (!m) throw statusErrors.badRequest(`invalid field selector: "${raw}"`);
    const [, path, op, value] = m as unknown as [string, string, string, string];
    terms.push((o) => {
      const v = fieldValue(o, path);
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a JSON value: the fields selected on (metadata.name, spec.nodeName, status.phase, …) are scalars
      const s = v === undefined || v === null ? '' : String(v);
      return op === '!=' ? s !== value : s === value;
    });
  }
  return (o) => terms.every((p) => p(o));
}
