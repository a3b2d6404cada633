import type { ResourceType } from './resources.js';
import type { KubeObject } from './store.js';

/**
 * Server-side printing (meta.k8s.io/v1 Table), as kube-apiserver answers `kubectl get` when it
 * asks with `Accept: application/json;as=Table;…`. The columns are the real server's for the
 * types an operator looks at (kubernetes pkg/printers/internalversion/printers.go: Secret,
 * ConfigMap, Namespace, Event); any other type gets Name and Age, as a custom resource without
 * printer columns does.
 */

interface Column {
  readonly name: string;
  readonly type: 'string' | 'integer' | 'date';
  readonly format?: string;
  readonly priority?: number;
  readonly cell: (o: KubeObject, now: number) => string | number;
}

type Obj = Record<string, unknown>;
const field = (o: KubeObject, path: string): unknown =>
  path.split('.').reduce<unknown>((cur, k) => (cur as Obj | undefined)?.[k], o);
// eslint-disable-next-line @typescript-eslint/no-base-to-string -- a JSON value: every printed column is a scalar field
const str = (v: unknown): string => (v === undefined || v === null ? '' : String(v));

/**
 * kube's duration.HumanDuration, the AGE column: seconds up to two minutes, then minutes and
 * seconds up to ten, then minutes, hours (with minutes below eight), days.
 */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 0) return '<invalid>';
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (h < 24 * 8)
    return h % 24 === 0 ? `${Math.floor(h / 24)}d` : `${Math.floor(h / 24)}d${h % 24}h`;
  return `${Math.floor(h / 24)}d`;
}

const age = (path: string) => (o: KubeObject, now: number) => {
  const t = Date.parse(str(field(o, path)));
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
};

const NAME: Column = {
  name: 'Name',
  type: 'string',
  format: 'name',
  cell: (o) => str(o.metadata.name),
};
const AGE: Column = { name: 'Age', type: 'string', cell: age('metadata.creationTimestamp') };
const count = (path: string) => (o: KubeObject) =>
  Object.keys((field(o, path) as Obj | undefined) ?? {}).length;

const COLUMNS: Record<string, readonly Column[]> = {
  '/secrets': [
    NAME,
    { name: 'Type', type: 'string', cell: (o) => str(o.type) },
    {
      name: 'Data',
      type: 'integer',
      cell: (o) => count('data')(o) + count('stringData')(o),
    },
    AGE,
  ],
  '/configmaps': [
    NAME,
    { name: 'Data', type: 'integer', cell: (o) => count('data')(o) + count('binaryData')(o) },
    AGE,
  ],
  '/namespaces': [
    NAME,
    { name: 'Status', type: 'string', cell: (o) => str(field(o, 'status.phase')) },
    AGE,
  ],
  '/events': [
    {
      name: 'Last Seen',
      type: 'string',
      cell: (o, now) =>
        age(field(o, 'lastTimestamp') ? 'lastTimestamp' : 'metadata.creationTimestamp')(o, now),
    },
    { name: 'Type', type: 'string', cell: (o) => str(o.type) },
    { name: 'Reason', type: 'string', cell: (o) => str(o.reason) },
    {
      name: 'Object',
      type: 'string',
      cell: (o) =>
        `${str(field(o, 'involvedObject.kind')).toLowerCase()}/${str(field(o, 'involvedObject.name'))}`,
    },
    {
      name: 'Source',
      type: 'string',
      priority: 1,
      cell: (o) => str(field(o, 'source.component')),
    },
    { name: 'Message', type: 'string', cell: (o) => str(o.message) },
    { name: 'Count', type: 'integer', priority: 1, cell: (o) => Number(o.count ?? 1) },
    { name: 'Name', type: 'string', priority: 1, cell: (o) => str(o.metadata.name) },
  ],
};

/** Whether the client asked for a Table (kubectl get without -o json/yaml/jsonpath). */
export function wantsTable(accept: string | undefined): boolean {
  const first = (accept ?? '').split(',')[0] ?? '';
  return /;\s*as=Table\b/.test(first) && /;\s*g=meta\.k8s\.io\b/.test(first);
}

/**
 * The Table for `objects`. Each row carries the object as `includeObject` asks: Metadata (the
 * server's default, a PartialObjectMetadata), Object (whole), or None.
 */
export function toTable(
  t: ResourceType,
  objects: readonly KubeObject[],
  options: { resourceVersion: string; now: number; includeObject: string | null; version: string },
): Record<string, unknown> {
  const columns = COLUMNS[`${t.group}/${t.resource}`] ?? [NAME, AGE];
  const apiVersion = t.group === '' ? options.version : `${t.group}/${options.version}`;
  const include = options.includeObject ?? 'Metadata';
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion: options.resourceVersion },
    columnDefinitions: columns.map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format ?? '',
      description: c.name,
      priority: c.priority ?? 0,
    })),
    rows: objects.map((o) => ({
      cells: columns.map((c) => c.cell(o, options.now)),
      ...(include === 'None'
        ? {}
        : {
            object:
              include === 'Object'
                ? { kind: t.kind, apiVersion, ...o }
                : {
                    kind: 'PartialObjectMetadata',
                    apiVersion: 'meta.k8s.io/v1',
                    metadata: o.metadata,
                  },
          }),
    })),
  };
}
