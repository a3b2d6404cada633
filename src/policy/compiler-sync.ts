import type { PolicyCompiler } from './compiler.js';
import { resourceLabel, type SecurityResource } from './resource.js';
import { workloadKey, type Workload } from './workload.js';

/** Everything a source (a folder of manifests) says at one moment. */
export interface PolicyInputs {
  readonly resources: readonly SecurityResource[];
  readonly workloads: readonly Workload[];
}

/** The inputs as last applied, keyed, with a fingerprint of each to tell changes apart. */
export interface AppliedInputs {
  readonly resources: ReadonlyMap<
    string,
    { readonly value: SecurityResource; readonly print: string }
  >;
  readonly workloads: ReadonlyMap<string, { readonly value: Workload; readonly print: string }>;
}

export const NOTHING_APPLIED: AppliedInputs = { resources: new Map(), workloads: new Map() };

/** What a sync did: objects changed and bundles recomputed (for logs, tests and metrics). */
export interface SyncResult {
  readonly applied: AppliedInputs;
  readonly changes: number;
  readonly recomputed: number;
}

/**
 * Brings the compiler from `previous` to `next` with the fewest calls: only added, changed and
 * removed objects reach it, so only the workloads they affect are recomputed. Workloads first
 * (so a new pod's bundle sees every policy), removals of policies before upserts.
 */
export function syncCompiler(
  compiler: PolicyCompiler,
  previous: AppliedInputs,
  next: PolicyInputs,
): SyncResult {
  let changes = 0;
  let recomputed = 0;
  const workloads = new Map<string, { value: Workload; print: string }>();
  for (const w of next.workloads)
    workloads.set(workloadKey(w), { value: w, print: JSON.stringify(w) });
  const resources = new Map<string, { value: SecurityResource; print: string }>();
  for (const r of next.resources) {
    // `origin` (file and document index) is for messages only: moving a document is no change.
    const { origin: _origin, ...meta } = r.meta;
    resources.set(resourceLabel(r), { value: r, print: JSON.stringify({ ...r, meta }) });
  }

  for (const [key, old] of previous.workloads) {
    if (!workloads.has(key)) {
      compiler.removeWorkload(old.value.namespace, old.value.name);
      changes++;
    }
  }
  for (const [key, now] of workloads) {
    if (previous.workloads.get(key)?.print === now.print) continue;
    compiler.upsertWorkload(now.value);
    changes++;
    recomputed += compiler.lastRecomputed;
  }
  for (const [key, old] of previous.resources) {
    if (!resources.has(key)) {
      compiler.removePolicy(old.value.kind, old.value.meta.namespace, old.value.meta.name);
      changes++;
      recomputed += compiler.lastRecomputed;
    }
  }
  for (const [key, now] of resources) {
    if (previous.resources.get(key)?.print === now.print) continue;
    compiler.upsertPolicy(now.value);
    changes++;
    recomputed += compiler.lastRecomputed;
  }
  return { applied: { resources, workloads }, changes, recomputed };
}
