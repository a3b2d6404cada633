// Areas 5 and 6: which workload (and, on a waypoint, which service chain) a policy attaches to.
//  [PM]    istio/istio pilot/pkg/model/policyattachment_test.go TestPolicyMatcher (every case
//          with ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY at its default, true)
//  [ATT]   pilot/pkg/model/policyattachment.go ShouldAttachPolicy, GetTargetRefs;
//          authorization.go ListAuthorizationPolicies (root, workload and service namespaces)
//  [WP]    pilot/pkg/networking/core/listener_waypoint.go buildWaypointHTTPFilters (one chain
//          per service: NewBuilderForService); istio.io/latest/docs/ambient/usage/l7-features/
//  [1.24]  istio/istio releasenotes for 1.24: istio.io/gateway-name is no longer read
//  [CRD]   crd-all.gen.yaml: only one of targetRefs or selector; no cross-namespace targetRef
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lintResources } from '../../src/policy/evaluate.js';
import { parseMesh } from '../../src/policy/mesh.js';
import { workloadFromPod } from '../../src/policy/pod-workload.js';
import type { AuthorizationPolicy, TargetRef } from '../../src/policy/resource.js';
import { policyAttaches } from '../../src/policy/selection.js';
import { parseWorkload, type ServiceRef, type Workload } from '../../src/policy/workload.js';
import { ap, bundleOf, decideCase, HTTPBIN, outcome, request, resources } from './helpers.js';

const GW = 'gateway.networking.k8s.io';
const gatewayRef = (name: string): TargetRef => ({
  group: GW,
  kind: 'Gateway',
  name,
  namespace: '',
});
const SAMPLE_GATEWAY = gatewayRef('sample-gateway');
const SAMPLE_WAYPOINT = gatewayRef('sample-waypoint');
const WAYPOINT_CLASS: TargetRef = {
  group: GW,
  kind: 'GatewayClass',
  name: 'istio-waypoint',
  namespace: '',
};
const SERVICE: TargetRef = { group: '', kind: 'Service', name: 'sample-svc', namespace: '' };
const SERVICE_ENTRY: TargetRef = {
  group: 'networking.istio.io',
  kind: 'ServiceEntry',
  name: 'sample-svc-entry',
  namespace: '',
};

function policy(o: {
  selector?: Record<string, string>;
  targetRef?: TargetRef;
  targetRefs?: TargetRef[];
  namespace?: string;
}): AuthorizationPolicy {
  return {
    kind: 'AuthorizationPolicy',
    meta: {
      namespace: o.namespace ?? 'default',
      name: 'policy1',
      creationTimestamp: null,
      annotations: {},
      origin: 'test',
    },
    action: 'ALLOW',
    provider: null,
    selector: o.selector ?? null,
    targetRef: o.targetRef ?? null,
    targetRefs: o.targetRefs ?? [],
    rules: [],
    dryRun: false,
  };
}

function workload(
  kind: Workload['kind'],
  labels: Record<string, string>,
  namespace = 'default',
): Workload {
  return parseWorkload({ namespace, name: 'w', kind, labels });
}

const GATEWAY_LABEL = 'gateway.networking.k8s.io/gateway-name';
const regularApp = workload('sidecar', { app: 'my-app' });
const sampleGateway = workload('gateway', { [GATEWAY_LABEL]: 'sample-gateway' });
const sampleWaypoint = workload('waypoint', { [GATEWAY_LABEL]: 'sample-waypoint' });
const svc: ServiceRef = { namespace: 'default', name: 'sample-svc', kind: 'Service' };
const svcEntry: ServiceRef = {
  namespace: 'default',
  name: 'sample-svc-entry',
  kind: 'ServiceEntry',
};

test('[PM] TestPolicyMatcher', () => {
  const rows: [string, Workload, AuthorizationPolicy, ServiceRef | null, boolean][] = [
    [
      'non-gateway API workload and a targetRef',
      regularApp,
      policy({ targetRef: SAMPLE_GATEWAY }),
      null,
      false,
    ],
    [
      'non-gateway API workload and a selector',
      regularApp,
      policy({ selector: { app: 'my-app' } }),
      null,
      true,
    ],
    [
      'non-gateway API workload and both',
      regularApp,
      policy({ selector: { app: 'my-app' }, targetRef: SAMPLE_GATEWAY }),
      null,
      false,
    ],
    ['non-gateway API workload and neither', regularApp, policy({}), null, true],
    [
      'gateway API ingress and a targetRef',
      sampleGateway,
      policy({ targetRef: SAMPLE_GATEWAY }),
      null,
      true,
    ],
    [
      'gateway API ingress and a selector',
      sampleGateway,
      policy({ selector: { [GATEWAY_LABEL]: 'sample-gateway' } }),
      null,
      true,
    ],
    [
      'gateway API ingress and both',
      sampleGateway,
      policy({ targetRef: SAMPLE_GATEWAY, selector: { [GATEWAY_LABEL]: 'sample-gateway' } }),
      null,
      true,
    ],
    [
      'gateway API ingress and non-matching targetRef',
      sampleGateway,
      policy({ targetRef: SAMPLE_WAYPOINT }),
      null,
      false,
    ],
    ['gateway API ingress and neither', sampleGateway, policy({}), null, true],
    [
      'waypoint and a targetRef',
      sampleWaypoint,
      policy({ targetRef: SAMPLE_WAYPOINT }),
      null,
      true,
    ],
    [
      'waypoint and a selector',
      sampleWaypoint,
      policy({ selector: { [GATEWAY_LABEL]: 'sample-waypoint' } }),
      null,
      false,
    ],
    [
      'waypoint and both',
      sampleWaypoint,
      policy({ targetRef: SAMPLE_WAYPOINT, selector: { [GATEWAY_LABEL]: 'sample-waypoint' } }),
      null,
      true,
    ],
    ['waypoint and neither', sampleWaypoint, policy({}), null, false],
    [
      'waypoint and non-matching targetRef',
      sampleWaypoint,
      policy({ targetRef: SAMPLE_GATEWAY }),
      null,
      false,
    ],
    [
      'waypoint and matching targetRefs',
      sampleWaypoint,
      policy({ targetRefs: [SAMPLE_WAYPOINT] }),
      null,
      true,
    ],
    [
      'waypoint and partial matching targetRefs',
      sampleWaypoint,
      policy({ targetRefs: [SAMPLE_WAYPOINT, SAMPLE_GATEWAY] }),
      null,
      true,
    ],
    [
      'waypoint and non matching targetRefs',
      sampleWaypoint,
      policy({ targetRefs: [SAMPLE_GATEWAY] }),
      null,
      false,
    ],
    ['service attached policy', sampleWaypoint, policy({ targetRefs: [SERVICE] }), svc, true],
    [
      'service entry attached policy',
      sampleWaypoint,
      policy({ targetRefs: [SERVICE_ENTRY] }),
      svcEntry,
      true,
    ],
    [
      'service entry policy selecting a service',
      sampleWaypoint,
      policy({ targetRefs: [{ ...SERVICE_ENTRY, name: 'sample-svc' }] }),
      svc,
      false,
    ],
    [
      'gateway attached policy with service',
      sampleWaypoint,
      policy({ targetRefs: [SAMPLE_WAYPOINT] }),
      svc,
      true,
    ],
    [
      'gateway attached policy with cross-namespace service',
      workload('waypoint', { [GATEWAY_LABEL]: 'sample-waypoint' }, 'waypoint'),
      policy({ targetRefs: [SAMPLE_WAYPOINT] }),
      svc,
      false,
    ],
    [
      'gateway class attached policy in root namespace',
      sampleWaypoint,
      policy({ targetRefs: [WAYPOINT_CLASS], namespace: 'istio-system' }),
      null,
      true,
    ],
    [
      'gateway class attached policy in non-root namespace',
      sampleWaypoint,
      policy({ targetRefs: [WAYPOINT_CLASS] }),
      null,
      false,
    ],
    // A service-attached policy on a sidecar or a plain gateway: never.
    [
      'service attached policy on a gateway',
      sampleGateway,
      policy({ targetRefs: [SERVICE] }),
      svc,
      false,
    ],
  ];
  for (const [name, w, p, service, want] of rows) {
    assert.equal(policyAttaches(p, w, 'istio-system', service), want, name);
  }
});

test('[ATT] targetRefs win over the deprecated targetRef (GetTargetRefs)', () => {
  const both = policy({ targetRef: SAMPLE_GATEWAY, targetRefs: [gatewayRef('other')] });
  assert.equal(policyAttaches(both, sampleGateway, 'istio-system'), false);
  const only = policy({ targetRef: SAMPLE_GATEWAY });
  assert.equal(policyAttaches(only, sampleGateway, 'istio-system'), true);
});

test('[ATT] a root-namespace policy never attaches to a gateway in another namespace; its own namespace only', () => {
  const rows: [string, string, boolean][] = [
    ['istio-system', 'default', false],
    ['default', 'default', true],
    ['other', 'default', false],
    ['istio-system', 'istio-system', true],
  ];
  for (const [policyNs, gatewayNs, want] of rows) {
    const gw = workload('gateway', { [GATEWAY_LABEL]: 'sample-gateway' }, gatewayNs);
    assert.equal(
      policyAttaches(
        policy({ targetRefs: [SAMPLE_GATEWAY], namespace: policyNs }),
        gw,
        'istio-system',
      ),
      want,
      `${policyNs} -> gateway in ${gatewayNs}`,
    );
  }
  // A root-namespace selector policy still reaches gateways everywhere.
  assert.equal(
    policyAttaches(
      policy({ namespace: 'istio-system', selector: { [GATEWAY_LABEL]: 'sample-gateway' } }),
      sampleGateway,
      'istio-system',
    ),
    true,
  );
});

test('[1.24] only gateway.networking.k8s.io/gateway-name marks a Gateway API gateway', () => {
  const legacy = workload('gateway', { 'istio.io/gateway-name': 'sample-gateway' });
  assert.equal(
    policyAttaches(policy({ targetRefs: [SAMPLE_GATEWAY] }), legacy, 'istio-system'),
    false,
  );
  assert.equal(policyAttaches(policy({ selector: {} }), legacy, 'istio-system'), true);
  assert.equal(
    workloadFromPod({ metadata: { name: 'gw', labels: { 'istio.io/gateway-name': 'x' } } })?.kind,
    'sidecar',
  );
  assert.equal(
    workloadFromPod({ metadata: { name: 'gw', labels: { [GATEWAY_LABEL]: 'x' } } })?.kind,
    'gateway',
  );
  assert.equal(
    workloadFromPod({
      metadata: {
        name: 'waypoint-7c9',
        labels: {
          [GATEWAY_LABEL]: 'waypoint',
          'gateway.istio.io/managed': 'istio.io-mesh-controller',
        },
      },
    })?.kind,
    'waypoint',
  );
});

test('[CRD] both a selector and targetRefs, or a cross-namespace targetRef: Kubernetes refuses the object', () => {
  assert.deepEqual(
    resources(
      ap(
        'foo',
        'both',
        `{selector: {matchLabels: {app: httpbin}}, targetRefs: [{group: ${GW}, kind: Gateway, name: g}], rules: [{}]}`,
      ) +
        ap(
          'foo',
          'cross',
          `{targetRefs: [{group: ${GW}, kind: Gateway, name: g, namespace: bar}], rules: [{}]}`,
        ) +
        ap('foo', 'nameless', `{targetRefs: [{group: ${GW}, kind: Gateway}], rules: [{}]}`),
    ),
    [],
  );
  const lint = lintResources(
    resources(
      ap('foo', 'kind', `{targetRefs: [{group: apps, kind: Deployment, name: d}], rules: [{}]}`),
    ),
    parseMesh(undefined),
  );
  assert.match(lint[0]?.message ?? '', /targetRef must be to one of .* but was apps\/Deployment/);
});

// A waypoint in foo serving foo/reviews and foo/ratings; policies attach by targetRefs.
const WAYPOINT = {
  namespace: 'foo',
  name: 'waypoint',
  kind: 'waypoint',
  serviceAccount: 'waypoint',
};
const toService = (service: unknown, o: Record<string, unknown> = {}): Record<string, unknown> =>
  request({ service, ...o });

test('[WP] a waypoint decides per service: Service-attached, Gateway-attached and GatewayClass policies', () => {
  const policies =
    ap(
      'foo',
      'deny-reviews',
      `{action: DENY, targetRefs: [{kind: Service, group: "", name: reviews}], rules: [{to: [{operation: {methods: [DELETE]}}]}]}`,
    ) +
    ap(
      'foo',
      'allow-ratings',
      `{targetRefs: [{kind: Service, group: "", name: ratings}], rules: [{from: [{source: {namespaces: [bar]}}]}]}`,
    ) +
    ap(
      'foo',
      'waypoint-deny',
      `{action: DENY, targetRefs: [{kind: Gateway, group: ${GW}, name: waypoint}], rules: [{to: [{operation: {paths: ["/admin*"]}}]}]}`,
    ) +
    ap(
      'istio-system',
      'all-waypoints',
      `{action: DENY, targetRefs: [{kind: GatewayClass, group: ${GW}, name: istio-waypoint}], rules: [{to: [{operation: {paths: ["/debug"]}}]}]}`,
    ) +
    ap('foo', 'selector', `{action: DENY, rules: [{}]}`);
  const del = (service: string) =>
    toService(service, {
      http: { method: 'DELETE', path: '/r/1', host: `${service}.foo`, headers: {} },
    });
  const path = (service: string, p: string) =>
    toService(service, { http: { method: 'GET', path: p, host: `${service}.foo`, headers: {} } });
  const rows: [Record<string, unknown>, string][] = [
    [del('reviews'), 'DENY/deny foo/deny-reviews'],
    [del('details'), 'ALLOW/default'],
    [path('ratings', '/r'), 'ALLOW/allow foo/allow-ratings'],
    [toService('ratings', { source: { principal: 'cluster.local/ns/ops/sa/x' } }), 'DENY/allow'],
    [path('reviews', '/admin/x'), 'DENY/deny foo/waypoint-deny'],
    [path('ratings', '/debug'), 'DENY/deny istio-system/all-waypoints'],
    [toService({ name: 'ratings', namespace: 'foo' }), 'ALLOW/allow foo/allow-ratings'],
    [toService('foo/reviews'), 'ALLOW/default'],
  ];
  for (const [req, want] of rows) {
    const d = decideCase({ policies, workload: WAYPOINT, request: req });
    assert.equal(outcome(d), want, `${JSON.stringify(req['service'])}: ${d.reason}`);
  }
  // The same policies on a sidecar: only the selector-based DENY applies.
  assert.equal(outcome(decideCase({ policies, workload: HTTPBIN })), 'DENY/deny foo/selector');
});

test('[WP] the waypoint bundle: its own policies, and one complete chain per targeted service', () => {
  const policies =
    ap('foo', 'svc', `{targetRefs: [{kind: Service, group: "", name: reviews}], rules: [{}]}`) +
    ap(
      'bar',
      'other-ns-svc',
      `{targetRefs: [{kind: Service, group: "", name: api}], rules: [{}]}`,
    ) +
    ap(
      'foo',
      'gw',
      `{action: AUDIT, targetRefs: [{kind: Gateway, group: ${GW}, name: waypoint}], rules: [{}]}`,
    );
  const b = bundleOf({ policies, workload: WAYPOINT });
  assert.deepEqual(b.authorization.audit.policies, ['foo/gw']);
  assert.deepEqual(b.authorization.allow.policies, []);
  assert.deepEqual(
    b.services?.map((s) => [
      `${s.service.namespace}/${s.service.name}`,
      s.authorization.allow.policies,
      s.authorization.audit.policies,
    ]),
    [
      ['bar/api', ['bar/other-ns-svc'], ['foo/gw']],
      ['foo/reviews', ['foo/svc'], ['foo/gw']],
    ],
  );
  // With the services it serves given, only those chains.
  const only = bundleOf({ policies, workload: { ...WAYPOINT, services: ['reviews'] } });
  assert.deepEqual(
    only.services?.map((s) => s.service.name),
    ['reviews'],
  );
  assert.equal(bundleOf({ policies, workload: HTTPBIN }).services, undefined);
  assert.equal(
    b.workload.labels[GATEWAY_LABEL],
    'waypoint',
    'the Gateway name defaults to the workload name',
  );
});

test('[WP] a request that names no service sees the waypoint-wide policies, with a note', () => {
  const policies = ap(
    'foo',
    'svc',
    `{action: DENY, targetRefs: [{kind: Service, group: "", name: reviews}], rules: [{}]}`,
  );
  const d = decideCase({ policies, workload: WAYPOINT });
  assert.equal(outcome(d), 'ALLOW/default');
  assert.ok(
    d.notes.some((n) => n.includes('names no service')),
    d.notes.join('\n'),
  );
  const sidecar = decideCase({ policies, request: toService('reviews') });
  assert.ok(sidecar.notes.some((n) => n.includes('request.service matters on a waypoint only')));
});
