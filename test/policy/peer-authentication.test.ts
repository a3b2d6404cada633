// PeerAuthentication resolution, table-driven. Each case names the Istio page or code it follows:
//  [PA]  istio.io/latest/docs/reference/config/security/peer_authentication/
//  [MIG] istio.io/latest/docs/tasks/security/authentication/mtls-migration/
//  [CPA] pilot/pkg/security/authn/policy_applier.go ComposePeerAuthentication (and its tests)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bundleOf, decideCase, request, type Case } from './helpers.js';

const pa = (ns: string, name: string, spec: string, ts = '2024-01-01T00:00:00Z'): string =>
  `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ${name}, namespace: ${ns}, creationTimestamp: "${ts}"}
spec: ${spec}
---
`;

const plaintext = (port = 8000): Record<string, unknown> =>
  request({
    tls: 'plaintext',
    port,
    source: { ip: '10.0.0.9' },
    ...(port === 9000 ? { protocol: 'TCP' } : {}),
  });

interface Row {
  readonly name: string;
  readonly c: Case;
  readonly mode: string;
  readonly policy: string | null;
  readonly decision: 'ALLOW' | 'DENY';
  readonly stage: string;
}

const rows: Row[] = [
  {
    name: '[PA] no policy at all: PERMISSIVE, plaintext accepted',
    c: { policies: '', request: plaintext() },
    mode: 'PERMISSIVE',
    policy: null,
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[MIG] mesh-wide STRICT in the root namespace: plaintext denied at stage mtls',
    c: { policies: pa('istio-system', 'default', '{mtls: {mode: STRICT}}'), request: plaintext() },
    mode: 'STRICT',
    policy: 'istio-system/default',
    decision: 'DENY',
    stage: 'mtls',
  },
  {
    name: '[MIG] mesh-wide STRICT: an mTLS request passes',
    c: { policies: pa('istio-system', 'default', '{mtls: {mode: STRICT}}') },
    mode: 'STRICT',
    policy: 'istio-system/default',
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[PA] namespace-wide PERMISSIVE overrides mesh STRICT',
    c: {
      policies:
        pa('istio-system', 'default', '{mtls: {mode: STRICT}}') +
        pa('foo', 'ns', '{mtls: {mode: PERMISSIVE}}'),
      request: plaintext(),
    },
    mode: 'PERMISSIVE',
    policy: 'foo/ns',
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[CPA] workload UNSET inherits the namespace STRICT (and names the namespace policy)',
    c: {
      policies:
        pa('foo', 'ns', '{mtls: {mode: STRICT}}') +
        pa('foo', 'wl', '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: UNSET}}'),
      request: plaintext(),
    },
    mode: 'STRICT',
    policy: 'foo/ns',
    decision: 'DENY',
    stage: 'mtls',
  },
  {
    name: '[CPA] workload DISABLE overrides namespace STRICT',
    c: {
      policies:
        pa('foo', 'ns', '{mtls: {mode: STRICT}}') +
        pa('foo', 'wl', '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: DISABLE}}'),
      request: plaintext(),
    },
    mode: 'DISABLE',
    policy: 'foo/wl',
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[PA] a workload policy whose selector does not match is not applied',
    c: {
      policies: pa('foo', 'wl', '{selector: {matchLabels: {app: other}}, mtls: {mode: STRICT}}'),
      request: plaintext(),
    },
    mode: 'PERMISSIVE',
    policy: null,
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[CPA] mesh policy with mtls UNSET is PERMISSIVE',
    c: { policies: pa('istio-system', 'default', '{}'), request: plaintext() },
    mode: 'PERMISSIVE',
    policy: null,
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[CPA] several namespace-wide policies: the oldest wins (STRICT, older)',
    c: {
      policies:
        pa('foo', 'b-newer', '{mtls: {mode: PERMISSIVE}}', '2024-02-01T00:00:00Z') +
        pa('foo', 'a-older', '{mtls: {mode: STRICT}}', '2024-01-01T00:00:00Z'),
      request: plaintext(),
    },
    mode: 'STRICT',
    policy: 'foo/a-older',
    decision: 'DENY',
    stage: 'mtls',
  },
  {
    name: '[CPA] same creationTimestamp: the first by name wins (sortConfigByCreationTime)',
    c: {
      policies:
        pa('foo', 'zeta', '{mtls: {mode: STRICT}}') +
        pa('foo', 'alpha', '{mtls: {mode: PERMISSIVE}}'),
      request: plaintext(),
    },
    mode: 'PERMISSIVE',
    policy: 'foo/alpha',
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[CPA] several workload policies: the oldest wins',
    c: {
      policies:
        pa(
          'foo',
          'w2',
          '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: PERMISSIVE}}',
          '2024-03-01T00:00:00Z',
        ) +
        pa(
          'foo',
          'w1',
          '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}}',
          '2024-01-01T00:00:00Z',
        ),
      request: plaintext(),
    },
    mode: 'STRICT',
    policy: 'foo/w1',
    decision: 'DENY',
    stage: 'mtls',
  },
  {
    name: '[CPA] a root-namespace policy with a selector is ignored',
    c: {
      policies: pa(
        'istio-system',
        'sel',
        '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}}',
      ),
      request: plaintext(),
    },
    mode: 'PERMISSIVE',
    policy: null,
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[PA] port-level PERMISSIVE on 9000 under workload STRICT: plaintext TCP to 9000 passes',
    c: {
      policies: pa(
        'foo',
        'wl',
        '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}, portLevelMtls: {"9000": {mode: PERMISSIVE}}}',
      ),
      request: plaintext(9000),
    },
    mode: 'PERMISSIVE',
    policy: 'foo/wl',
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[PA] port-level setting does not touch other ports: plaintext to 8000 denied',
    c: {
      policies: pa(
        'foo',
        'wl',
        '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}, portLevelMtls: {"9000": {mode: PERMISSIVE}}}',
      ),
      request: plaintext(8000),
    },
    mode: 'STRICT',
    policy: 'foo/wl',
    decision: 'DENY',
    stage: 'mtls',
  },
  {
    name: '[CPA] port-level UNSET inherits the workload-level mode, which inherited the mesh STRICT',
    c: {
      policies:
        pa('istio-system', 'default', '{mtls: {mode: STRICT}}') +
        pa(
          'foo',
          'wl',
          '{selector: {matchLabels: {app: httpbin}}, portLevelMtls: {"9000": {mode: UNSET}}}',
        ),
      request: plaintext(9000),
    },
    mode: 'STRICT',
    policy: 'istio-system/default',
    decision: 'DENY',
    stage: 'mtls',
  },
];

for (const row of rows) {
  test(row.name, () => {
    const d = decideCase(row.c);
    assert.equal(d.mtls.mode, row.mode);
    assert.equal(d.mtls.policy, row.policy);
    assert.equal(d.decision, row.decision, d.reason);
    assert.equal(d.stage, row.stage, d.reason);
  });
}

test('[CPA] the bundle lists the mode of every declared and port-level port with its deciding policy', () => {
  const b = bundleOf({
    policies:
      pa('istio-system', 'default', '{mtls: {mode: STRICT}}') +
      pa(
        'foo',
        'wl',
        '{selector: {matchLabels: {app: httpbin}}, portLevelMtls: {"9000": {mode: DISABLE}, "7070": {mode: PERMISSIVE}}}',
      ),
  });
  assert.deepEqual(
    b.mtls.ports.map((p) => [p.port, p.mode, p.policy, p.level]),
    [
      [7070, 'PERMISSIVE', 'foo/wl', 'port'],
      [8000, 'STRICT', 'istio-system/default', 'mesh'],
      [9000, 'DISABLE', 'foo/wl', 'port'],
    ],
  );
  assert.equal(b.mtls.default.mode, 'STRICT');
});

test('[CPA] a root-namespace selector is reported; so are losing namespace-wide policies', () => {
  const b = bundleOf({
    policies:
      pa('istio-system', 'sel', '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}}') +
      pa('foo', 'one', '{mtls: {mode: STRICT}}', '2024-01-01T00:00:00Z') +
      pa('foo', 'two', '{mtls: {mode: DISABLE}}', '2024-05-01T00:00:00Z'),
  });
  const msgs = b.diagnostics.map((d) => `${d.resource} ${d.field}: ${d.message}`);
  assert.ok(
    msgs.some(
      (m) =>
        m.startsWith('PeerAuthentication istio-system/sel spec.selector') && m.includes('ignored'),
    ),
    msgs.join('\n'),
  );
  assert.ok(
    msgs.some(
      (m) => m.startsWith('PeerAuthentication foo/two') && m.includes('only the oldest, foo/one'),
    ),
    msgs.join('\n'),
  );
});

test('[PA validation] port-level mTLS on a namespace-wide policy is rejected by the webhook', () => {
  const b = bundleOf({ policies: pa('foo', 'ns', '{portLevelMtls: {"8000": {mode: STRICT}}}') });
  assert.ok(b.diagnostics.some((d) => d.severity === 'error' && d.field === 'spec.portLevelMtls'));
});

test('[PA] DISABLE: the sidecar does not terminate TLS, so a principal-based ALLOW cannot match', () => {
  const d = decideCase({
    policies:
      pa('foo', 'wl', '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: DISABLE}}') +
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: foo}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]}]
`,
  });
  assert.equal(d.decision, 'DENY');
  assert.equal(d.stage, 'allow');
  assert.ok(d.notes.some((n) => n.includes('DISABLE')));
});
