import { decide, type Decision } from '../../src/policy/decision.js';
import { parseManifestText } from '../../src/policy/documents.js';
import { bundleForWorkload } from '../../src/policy/evaluate.js';
import { parseMesh } from '../../src/policy/mesh.js';
import { parseResources } from '../../src/policy/parse-resources.js';
import { parseRequest } from '../../src/policy/request.js';
import type { SecurityResource } from '../../src/policy/resource.js';
import { parseWorkload } from '../../src/policy/workload.js';
import type { PolicyBundle } from '../../src/policy/policy-bundle.js';

export const HTTPBIN = {
  namespace: 'foo',
  name: 'httpbin-1',
  labels: { app: 'httpbin' },
  serviceAccount: 'httpbin',
  ports: [
    { number: 8000, protocol: 'HTTP' },
    { number: 9000, protocol: 'TCP' },
  ],
};

/** An mTLS GET from bar/sleep to port 8000, overridable field by field. */
export function request(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    protocol: 'HTTP',
    port: 8000,
    tls: 'mtls',
    source: { principal: 'cluster.local/ns/bar/sa/sleep', ip: '10.0.0.5' },
    http: { method: 'GET', path: '/headers', host: 'httpbin.foo:8000', headers: {} },
    ...overrides,
  };
}

export function resources(yaml: string): SecurityResource[] {
  return parseResources(parseManifestText(yaml, 'test.yaml')).resources;
}

export interface Case {
  readonly policies: string;
  readonly request?: Record<string, unknown>;
  readonly workload?: Record<string, unknown>;
  readonly mesh?: Record<string, unknown>;
}

export function bundleOf(c: Case): PolicyBundle {
  return bundleForWorkload(
    resources(c.policies),
    parseMesh(c.mesh),
    parseWorkload(c.workload ?? HTTPBIN),
  );
}

export function decideCase(c: Case): Decision {
  const workload = parseWorkload(c.workload ?? HTTPBIN);
  return decide(bundleOf(c), parseRequest(c.request ?? request(), 'request', workload.namespace));
}

/** The decision's stage and policy as one comparable string: `ALLOW/allow foo/p`. */
export function outcome(d: Decision): string {
  return `${d.decision}/${d.stage}${d.policy ? ` ${d.policy}` : ''}`;
}

export function ap(ns: string, name: string, spec: string, annotations = '{}'): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: ${ns}, annotations: ${annotations}}
spec: ${spec}
---
`;
}

/** A RequestAuthentication with one JWT rule per issuer (the workload's jwt_authn providers). */
export function ra(ns: string, name: string, issuers: readonly string[], spec = ''): string {
  const rules = issuers.map((i) => `{issuer: "${i}"${spec ? `, ${spec}` : ''}}`).join(', ');
  return `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ${name}, namespace: ${ns}}
spec: {jwtRules: [${rules}]}
---
`;
}
