// Pods as policy workloads (Kubernetes mode and --policy-dir).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workloadFromPod } from '../../src/policy/pod-workload.js';

test('namespace, name, labels, service account and named container ports', () => {
  const w = workloadFromPod({
    metadata: { namespace: 'shop', name: 'web-1', labels: { app: 'web', n: 1 } },
    spec: {
      serviceAccountName: 'web',
      containers: [
        {
          ports: [
            { name: 'http-api', containerPort: 8080 },
            { name: 'grpc', containerPort: 9090 },
            { containerPort: 7070, appProtocol: 'http2' },
            { name: 'metrics', containerPort: 15020 },
            { name: 'dns', containerPort: 53, protocol: 'UDP' },
          ],
        },
        { ports: [{ name: 'http', containerPort: 8080 }] },
      ],
    },
  });
  assert.deepEqual(w, {
    namespace: 'shop',
    name: 'web-1',
    labels: { app: 'web' },
    serviceAccount: 'web',
    kind: 'sidecar',
    ports: [
      { number: 7070, protocol: 'HTTP2' },
      { number: 8080, protocol: 'HTTP' },
      { number: 9090, protocol: 'GRPC' },
      { number: 15020, protocol: 'TCP' },
    ],
    services: [],
  });
});

test('defaults, gateways, and pods that have no sidecar to enforce anything', () => {
  const bare = workloadFromPod({ metadata: { name: 'p' } })!;
  assert.equal(bare.namespace, 'default');
  assert.equal(bare.serviceAccount, 'default');
  assert.equal(
    workloadFromPod({ metadata: { name: 'gw', labels: { istio: 'ingressgateway' } } })?.kind,
    'gateway',
  );
  assert.equal(workloadFromPod({ metadata: { name: 'p' }, status: { phase: 'Failed' } }), null);
  assert.equal(workloadFromPod({ metadata: { name: 'p', deletionTimestamp: 'x' } }), null);
  assert.equal(workloadFromPod({ metadata: {} }), null);
  assert.equal(workloadFromPod('pod'), null);
});
