import { CastellanError } from '../errors.js';
import { type PolicyBundle } from './policy-bundle.js';
import { PolicyCompiler } from './compiler.js';
import { decide, type Decision } from './decision.js';
import { sortDiagnostics, type Diagnostic } from './diagnostic.js';
import type { MeshSettings } from './mesh.js';
import type { SecurityResource } from './resource.js';
import type { PolicyRequest } from './request.js';
import type { Workload } from './workload.js';

/** The bundle of one workload under a set of policies: what `policy bundle` prints. */
export function bundleForWorkload(
  resources: readonly SecurityResource[],
  mesh: MeshSettings,
  workload: Workload,
): PolicyBundle {
  const compiler = new PolicyCompiler(mesh);
  for (const r of resources) compiler.upsertPolicy(r);
  compiler.upsertWorkload(workload);
  const bundle = compiler.bundle(workload.namespace, workload.name);
  if (!bundle) {
    throw new CastellanError(
      'internal',
      'the policy compiler has no bundle for the workload it was just given',
    );
  }
  return bundle;
}

/**
 * Decides one request against a set of policies: what `policy check` prints. A request to a
 * waypoint that names no service is for the waypoint's only service, when it lists one.
 */
export function checkRequest(
  resources: readonly SecurityResource[],
  mesh: MeshSettings,
  workload: Workload,
  request: PolicyRequest,
): { bundle: PolicyBundle; decision: Decision } {
  const bundle = bundleForWorkload(resources, mesh, workload);
  const [single, ...others] = workload.services;
  const onlyService =
    request.service === null && workload.kind === 'waypoint' && single && others.length === 0
      ? single
      : null;
  return {
    bundle,
    decision: decide(bundle, onlyService ? { ...request, service: onlyService } : request),
  };
}

/** Every workload-independent diagnostic: what `policy lint` prints. */
export function lintResources(
  resources: readonly SecurityResource[],
  mesh: MeshSettings,
): Diagnostic[] {
  const compiler = new PolicyCompiler(mesh);
  for (const r of resources) compiler.upsertPolicy(r);
  return sortDiagnostics(compiler.diagnostics());
}
