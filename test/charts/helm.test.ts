// The Helm chart, checked with the real helm binary: lint, render with default and non-default
// values, assertions on the rendered objects, the values schema refusing bad values, and a
// golden file for the default render (UPDATE_GOLDEN=1 rewrites it: test/support/golden.ts).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, isScalar, parse, parseDocument, type Node } from 'yaml';
import { chartDir, Helm, NAMESPACE, only } from './helm-runner.js';
import { cliPath, projectRoot } from '../support/paths.js';
import { assertGolden } from '../support/golden.js';
import type {
  Container,
  Deployment,
  Hpa,
  Pdb,
  PolicyRule,
  RbacBinding,
  RbacRole,
  Service,
  ServiceMonitor,
} from './manifest-types.js';

const helm = new Helm();
after(() => helm.cleanup());

const goldenPath = join(projectRoot, 'test', 'charts', 'golden', 'default.yaml');
const chartYaml = parse(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as {
  appVersion: string;
  version: string;
};

/** Values that change every knob the tests look at. */
const CUSTOM_VALUES = {
  replicaCount: 3,
  trustDomain: 'corp.example',
  servingDns: { extraNames: ['ca.corp.example', '*.mesh.internal', '10.0.0.7'] },
  clusterDomain: 'corp.local',
  defaultTtl: '12h',
  maxTtl: '720h',
  caKeyType: 'rsa-2048',
  jwtOffline: true,
  tokenReviewCacheTtl: '30s',
  clusterId: 'cluster-east',
  tokenAudiences: ['istio-ca', 'corp-ca'],
  trustedNodeAccounts: ['istio-system/ztunnel', 'kube-system/ztunnel'],
  leaseName: 'ca-leader',
  logLevel: 'debug',
  image: { repository: 'registry.example/castellan', tag: '9.9.9', pullPolicy: 'Always' },
  podAntiAffinity: 'hard',
  nodeSelector: { 'kubernetes.io/os': 'linux' },
  tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'ca', effect: 'NoSchedule' }],
  autoscaling: {
    enabled: true,
    minReplicas: 3,
    maxReplicas: 7,
    targetCPUUtilizationPercentage: 60,
  },
  serviceMonitor: {
    enabled: true,
    interval: '15s',
    scrapeTimeout: '5s',
    labels: { release: 'prom' },
  },
  podDisruptionBudget: { enabled: true, minAvailable: 2 },
};

function container(dep: Deployment): Container {
  assert.equal(dep.spec.template.spec.containers.length, 1, 'one container, no sidecars');
  return dep.spec.template.spec.containers[0]!;
}

/** The value of a `--flag=value` argument (all of them for repeatable flags). */
function argValues(args: string[], flag: string): string[] {
  return args.filter((a) => a.startsWith(`--${flag}=`)).map((a) => a.slice(flag.length + 3));
}

/** Every (apiGroup, resource, verb) a set of rules grants, as "group/resource:verb". */
function grants(rules: PolicyRule[]): Set<string> {
  const out = new Set<string>();
  for (const r of rules) {
    for (const g of r.apiGroups)
      for (const res of r.resources) for (const v of r.verbs) out.add(`${g}/${res}:${v}`);
  }
  return out;
}

function isSubset(small: Record<string, string>, big: Record<string, string>): boolean {
  return Object.entries(small).every(([k, v]) => big[k] === v);
}

describe('helm lint', () => {
  test('the chart lints clean in strict mode, with default and with custom values', () => {
    for (const args of [[], ['-f', helm.valuesFile(CUSTOM_VALUES)]]) {
      const res = helm.run(['lint', '--strict', chartDir, ...args]);
      assert.equal(res.status, 0, `helm lint failed:\n${res.stdout}\n${res.stderr}`);
      assert.match(res.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });
});

describe('default render', () => {
  const text = helm.templateText();
  const objects = helm.render();
  const dep = only(objects, 'Deployment') as Deployment;
  const c = container(dep);
  const svc = only(objects, 'Service') as Service;

  test('matches the golden file', () => assertGolden(text, goldenPath));

  test('has exactly the expected kinds; HPA and ServiceMonitor are off', () => {
    assert.deepEqual(objects.map((o) => o.kind).sort(), [
      'ClusterRole',
      'ClusterRoleBinding',
      'Deployment',
      'PodDisruptionBudget',
      'Role',
      'RoleBinding',
      'Service',
      'ServiceAccount',
    ]);
  });

  test('namespaced objects live in the release namespace and carry the standard labels', () => {
    for (const o of objects) {
      if (o.kind !== 'ClusterRole' && o.kind !== 'ClusterRoleBinding') {
        assert.equal(o.metadata.namespace, NAMESPACE, `${o.kind} namespace`);
      } else {
        assert.equal(o.metadata.namespace, undefined, `${o.kind} is cluster-scoped`);
      }
      const l = o.metadata.labels ?? {};
      assert.equal(l['app.kubernetes.io/name'], 'castellan', o.kind);
      assert.equal(l['app.kubernetes.io/instance'], 'castellan', o.kind);
      assert.equal(l['app.kubernetes.io/managed-by'], 'Helm', o.kind);
      assert.equal(l['app.kubernetes.io/version'], chartYaml.appVersion, o.kind);
      assert.equal(l['helm.sh/chart'], `castellan-${chartYaml.version}`, o.kind);
    }
  });

  test('Deployment: 2 replicas, selector matching its pods, surge-first rolling update', () => {
    assert.equal(dep.spec.replicas, 2);
    const podLabels = dep.spec.template.metadata.labels;
    assert.ok(isSubset(dep.spec.selector.matchLabels, podLabels), 'selector selects the pods');
    assert.equal(dep.spec.strategy.rollingUpdate.maxUnavailable, 0);
    assert.equal(podLabels['sidecar.istio.io/inject'], 'false', 'no Istio sidecar on the CA');
    assert.equal(c.image, `castellan:${chartYaml.appVersion}`);
  });

  test('Deployment: soft anti-affinity over nodes, on the pods own labels', () => {
    const anti = dep.spec.template.spec.affinity?.podAntiAffinity;
    assert.ok(anti, 'podAntiAffinity present');
    assert.equal(anti.requiredDuringSchedulingIgnoredDuringExecution, undefined);
    const pref = anti.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    assert.equal(pref.length, 1);
    assert.equal(pref[0]!.podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
    assert.ok(
      isSubset(
        pref[0]!.podAffinityTerm.labelSelector.matchLabels,
        dep.spec.template.metadata.labels,
      ),
    );
  });

  test('container args: serve --kube in the release namespace, listening on the pod IP', () => {
    assert.deepEqual(c.args.slice(0, 2), ['serve', '--kube']);
    assert.deepEqual(argValues(c.args, 'namespace'), [NAMESPACE]);
    assert.deepEqual(argValues(c.args, 'trust-domain'), ['cluster.local']);
    assert.deepEqual(argValues(c.args, 'grpc-addr'), ['0.0.0.0:15012']);
    assert.deepEqual(argValues(c.args, 'monitoring-addr'), ['0.0.0.0:15014']);
    assert.deepEqual(argValues(c.args, 'serving-dns'), [
      `${svc.metadata.name}.${NAMESPACE}.svc`,
      `${svc.metadata.name}.${NAMESPACE}.svc.cluster.local`,
    ]);
    assert.deepEqual(argValues(c.args, 'default-ttl'), ['24h']);
    assert.deepEqual(argValues(c.args, 'max-ttl'), ['2160h']);
    assert.deepEqual(argValues(c.args, 'ca-key-type'), ['ec-p256']);
    assert.deepEqual(argValues(c.args, 'token-audience'), ['istio-ca']);
    assert.deepEqual(argValues(c.args, 'log-level'), ['info']);
    assert.ok(!c.args.includes('--jwt-offline'), 'jwt-offline is off by default');
    assert.deepEqual(argValues(c.args, 'token-review-cache-ttl'), [], 'serve default');
    assert.deepEqual(argValues(c.args, 'cluster-id'), [], 'serve default');
    // Ambient mode on by default, for ztunnel in istio-system (istiod's CA_TRUSTED_NODE_ACCOUNTS).
    assert.deepEqual(argValues(c.args, 'trusted-node-account'), ['istio-system/ztunnel']);
  });

  test('ports and Service: 15012 grpc-tls and 15014 http-monitoring, targeting named ports', () => {
    assert.deepEqual(
      c.ports.map((p) => [p.name, p.containerPort]),
      [
        ['grpc-tls', 15012],
        ['http-monitoring', 15014],
      ],
    );
    assert.equal(svc.spec.type, 'ClusterIP');
    assert.deepEqual(
      svc.spec.ports.map((p) => [p.name, p.port, p.targetPort]),
      [
        ['grpc-tls', 15012, 'grpc-tls'],
        ['http-monitoring', 15014, 'http-monitoring'],
      ],
    );
    assert.ok(
      isSubset(svc.spec.selector, dep.spec.template.metadata.labels),
      'Service selects pods',
    );
    const ann = dep.spec.template.metadata.annotations ?? {};
    assert.equal(ann['prometheus.io/scrape'], 'true');
    assert.equal(Number(ann['prometheus.io/port']), 15014);
    assert.equal(ann['prometheus.io/path'], '/metrics');
  });

  test('probes: readiness on /ready, liveness on /healthz, both on the monitoring port', () => {
    assert.equal(c.readinessProbe.httpGet.path, '/ready');
    assert.equal(c.readinessProbe.httpGet.port, 'http-monitoring');
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(c.livenessProbe.httpGet.port, 'http-monitoring');
    assert.ok(
      c.ports.some((p) => p.name === 'http-monitoring'),
      'the probed port exists',
    );
  });

  test('security: non-root 65532, read-only root, no capabilities, RuntimeDefault seccomp', () => {
    const pod = dep.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, 65532);
    assert.equal(pod.securityContext.seccompProfile?.type, 'RuntimeDefault');
    const sc = c.securityContext;
    assert.equal(sc.runAsNonRoot, true);
    assert.equal(sc.runAsUser, 65532);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.deepEqual(sc.capabilities?.drop, ['ALL']);
    assert.equal(sc.capabilities.add, undefined);
    assert.notEqual(sc.privileged, true);
    assert.notEqual(pod.hostNetwork, true);
    assert.notEqual(pod.hostPID, true);
    assert.ok(
      pod.volumes.every((v) => v.hostPath === undefined),
      'no hostPath volumes',
    );
  });

  test('writable paths are emptyDirs: the data dir from the args, and /tmp', () => {
    const pod = dep.spec.template.spec;
    const dataDir = argValues(c.args, 'data-dir');
    assert.equal(dataDir.length, 1);
    for (const path of [dataDir[0]!, '/tmp']) {
      const mount = c.volumeMounts.find((m) => m.mountPath === path);
      assert.ok(mount, `${path} is mounted`);
      const vol = pod.volumes.find((v) => v.name === mount.name);
      assert.ok(vol?.emptyDir, `${path} is an emptyDir`);
    }
  });

  test('API credentials: no automounted token, a projected expiring token instead', () => {
    const pod = dep.spec.template.spec;
    assert.equal(pod.automountServiceAccountToken, false);
    const mount = c.volumeMounts.find(
      (m) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount',
    );
    assert.ok(mount, 'token mounted where in-cluster clients look');
    assert.equal(mount.readOnly, true);
    const sources = pod.volumes.find((v) => v.name === mount.name)?.projected?.sources ?? [];
    const token = sources.find((s) => s.serviceAccountToken)?.serviceAccountToken;
    assert.equal(token?.path, 'token');
    assert.ok((token.expirationSeconds ?? 0) >= 600 && (token.expirationSeconds ?? 0) <= 86400);
    assert.equal(sources.find((s) => s.configMap)?.configMap?.name, 'kube-root-ca.crt');
    assert.equal(
      sources.find((s) => s.downwardAPI)?.downwardAPI?.items[0]?.fieldRef.fieldPath,
      'metadata.namespace',
    );
    const sa = only(objects, 'ServiceAccount');
    assert.equal(pod.serviceAccountName, sa.metadata.name);
  });

  test('PodDisruptionBudget keeps one replica and selects the pods', () => {
    const pdb = only(objects, 'PodDisruptionBudget') as Pdb;
    assert.equal(pdb.apiVersion, 'policy/v1');
    assert.equal(pdb.spec.minAvailable, 1);
    assert.ok(isSubset(pdb.spec.selector.matchLabels, dep.spec.template.metadata.labels));
  });

  test('RBAC: exact least-privilege rules; secrets and leases only in the namespaced Role', () => {
    const cr = only(objects, 'ClusterRole') as RbacRole;
    assert.deepEqual([...grants(cr.rules)].sort(), [
      '/configmaps:create',
      '/configmaps:delete',
      '/configmaps:get',
      '/configmaps:list',
      '/configmaps:update',
      '/configmaps:watch',
      '/events:create',
      '/namespaces:list',
      '/namespaces:watch',
      '/pods:list',
      '/pods:watch',
      'authentication.k8s.io/tokenreviews:create',
      'security.istio.io/authorizationpolicies:list',
      'security.istio.io/authorizationpolicies:watch',
      'security.istio.io/peerauthentications:list',
      'security.istio.io/peerauthentications:watch',
      'security.istio.io/requestauthentications:list',
      'security.istio.io/requestauthentications:watch',
    ]);
    const role = only(objects, 'Role') as RbacRole;
    assert.equal(role.metadata.namespace, NAMESPACE);
    assert.deepEqual([...grants(role.rules)].sort(), [
      '/secrets:create',
      '/secrets:get',
      '/secrets:list',
      '/secrets:update',
      '/secrets:watch',
      'coordination.k8s.io/leases:create',
      'coordination.k8s.io/leases:get',
      'coordination.k8s.io/leases:update',
    ]);
    for (const r of [...cr.rules, ...role.rules]) {
      for (const field of [r.apiGroups, r.resources, r.verbs]) {
        assert.ok(!field.includes('*'), `no wildcards: ${JSON.stringify(r)}`);
      }
      assert.ok(!r.verbs.includes('deletecollection'));
      // The one delete: ConfigMaps named istio-ca-crl (the CRL removed), nothing else.
      if (r.verbs.includes('delete')) {
        assert.deepEqual(
          { ...r },
          {
            apiGroups: [''],
            resources: ['configmaps'],
            resourceNames: ['istio-ca-crl'],
            verbs: ['delete'],
          },
        );
      }
      assert.equal(r.nonResourceURLs, undefined);
    }
  });

  test('RBAC bindings tie the roles to the ServiceAccount the pods run as', () => {
    const saName = dep.spec.template.spec.serviceAccountName;
    const crb = only(objects, 'ClusterRoleBinding') as RbacBinding;
    const cr = only(objects, 'ClusterRole');
    assert.deepEqual(crb.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: cr.metadata.name,
    });
    assert.deepEqual(crb.subjects, [
      { kind: 'ServiceAccount', name: saName, namespace: NAMESPACE },
    ]);
    const rb = only(objects, 'RoleBinding') as RbacBinding;
    const role = only(objects, 'Role');
    assert.equal(rb.metadata.namespace, NAMESPACE);
    assert.deepEqual(rb.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: role.metadata.name,
    });
    assert.deepEqual(rb.subjects, [{ kind: 'ServiceAccount', name: saName, namespace: NAMESPACE }]);
  });
});

describe('render with custom values', () => {
  const objects = helm.render(CUSTOM_VALUES);
  const dep = only(objects, 'Deployment') as Deployment;
  const c = container(dep);
  const svc = only(objects, 'Service') as Service;

  test('HPA (autoscaling/v2) takes over replicas from the Deployment', () => {
    assert.equal(dep.spec.replicas, undefined, 'replicas left to the HPA');
    const hpa = only(objects, 'HorizontalPodAutoscaler') as Hpa;
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: dep.metadata.name,
    });
    assert.equal(hpa.spec.minReplicas, 3);
    assert.equal(hpa.spec.maxReplicas, 7);
    assert.equal(hpa.spec.metrics[0]!.resource.name, 'cpu');
    assert.equal(hpa.spec.metrics[0]!.resource.target.averageUtilization, 60);
  });

  test('ServiceMonitor scrapes the Service monitoring port', () => {
    const sm = only(objects, 'ServiceMonitor') as ServiceMonitor;
    assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(sm.metadata.labels?.release, 'prom');
    assert.ok(isSubset(sm.spec.selector.matchLabels, svc.metadata.labels ?? {}));
    assert.deepEqual(sm.spec.namespaceSelector.matchNames, [NAMESPACE]);
    assert.equal(sm.spec.endpoints.length, 1);
    const ep = sm.spec.endpoints[0]!;
    assert.ok(
      svc.spec.ports.some((p) => p.name === ep.port),
      'endpoint names a Service port',
    );
    assert.equal(ep.port, 'http-monitoring');
    assert.equal(ep.path, '/metrics');
    assert.equal(ep.interval, '15s');
    assert.equal(ep.scrapeTimeout, '5s');
  });

  test('args carry every value', () => {
    assert.deepEqual(argValues(c.args, 'trust-domain'), ['corp.example']);
    assert.deepEqual(argValues(c.args, 'serving-dns'), [
      `castellan.${NAMESPACE}.svc`,
      `castellan.${NAMESPACE}.svc.corp.local`,
      'ca.corp.example',
      '*.mesh.internal',
      '10.0.0.7',
    ]);
    assert.deepEqual(argValues(c.args, 'default-ttl'), ['12h']);
    assert.deepEqual(argValues(c.args, 'max-ttl'), ['720h']);
    assert.deepEqual(argValues(c.args, 'ca-key-type'), ['rsa-2048']);
    assert.deepEqual(argValues(c.args, 'token-audience'), ['istio-ca', 'corp-ca']);
    assert.deepEqual(argValues(c.args, 'lease-name'), ['ca-leader']);
    assert.deepEqual(argValues(c.args, 'log-level'), ['debug']);
    assert.ok(c.args.includes('--jwt-offline'));
    assert.deepEqual(argValues(c.args, 'token-review-cache-ttl'), ['30s']);
    assert.deepEqual(argValues(c.args, 'cluster-id'), ['cluster-east']);
    assert.deepEqual(argValues(c.args, 'trusted-node-account'), [
      'istio-system/ztunnel',
      'kube-system/ztunnel',
    ]);
  });

  test('trustedNodeAccounts: [] passes no --trusted-node-account (ambient impersonation refused)', () => {
    const d = only(helm.render({ trustedNodeAccounts: [] }), 'Deployment') as Deployment;
    assert.deepEqual(argValues(container(d).args, 'trusted-node-account'), []);
  });

  test('image, scheduling and hard anti-affinity', () => {
    assert.equal(c.image, 'registry.example/castellan:9.9.9');
    assert.equal(c.imagePullPolicy, 'Always');
    const pod = dep.spec.template.spec;
    assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
    assert.equal(pod.tolerations?.length, 1);
    const anti = pod.affinity?.podAntiAffinity;
    assert.equal(anti?.preferredDuringSchedulingIgnoredDuringExecution, undefined);
    assert.equal(
      anti?.requiredDuringSchedulingIgnoredDuringExecution?.[0]?.topologyKey,
      'kubernetes.io/hostname',
    );
    const pdb = only(objects, 'PodDisruptionBudget') as Pdb;
    assert.equal(pdb.spec.minAvailable, 2);
  });

  test('replicaCount applies without the HPA; PDB and anti-affinity can be turned off', () => {
    const objs = helm.render({
      replicaCount: 3,
      podDisruptionBudget: { enabled: false, minAvailable: 1 },
      podAntiAffinity: 'none',
    });
    const d = only(objs, 'Deployment') as Deployment;
    assert.equal(d.spec.replicas, 3);
    assert.equal(d.spec.template.spec.affinity, undefined);
    assert.ok(!objs.some((o) => o.kind === 'PodDisruptionBudget'));
    assert.ok(!objs.some((o) => o.kind === 'HorizontalPodAutoscaler'));
  });

  test('another release name: every name follows, cluster-scoped names carry the namespace', () => {
    const objs = helm.render({}, { release: 'prod', namespace: 'mesh-ca' });
    const d = only(objs, 'Deployment') as Deployment;
    assert.equal(d.metadata.name, 'prod-castellan');
    assert.equal(only(objs, 'Service').metadata.name, 'prod-castellan');
    assert.equal(only(objs, 'ClusterRole').metadata.name, 'prod-castellan-mesh-ca');
    const cargs = container(d).args;
    assert.deepEqual(argValues(cargs, 'namespace'), ['mesh-ca']);
    assert.deepEqual(argValues(cargs, 'serving-dns'), [
      'prod-castellan.mesh-ca.svc',
      'prod-castellan.mesh-ca.svc.cluster.local',
    ]);
    const rb = only(objs, 'RoleBinding') as RbacBinding;
    assert.equal(rb.subjects[0]!.namespace, 'mesh-ca');
  });

  test('rbac.create=false and serviceAccount.create=false render no RBAC and no ServiceAccount', () => {
    const objs = helm.render({
      rbac: { create: false },
      serviceAccount: { create: false, name: 'existing-sa' },
    });
    const kinds = new Set(objs.map((o) => o.kind));
    for (const k of ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount'])
      assert.ok(!kinds.has(k), `${k} absent`);
    const d = only(objs, 'Deployment') as Deployment;
    assert.equal(d.spec.template.spec.serviceAccountName, 'existing-sa');
  });
});

describe('values.schema.json refuses bad values with a message naming the field', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['unknown caKeyType', { caKeyType: 'dsa-1024' }, /caKeyType/],
    ['unknown logLevel', { logLevel: 'verbose' }, /logLevel/],
    ['misspelt top-level key', { replicas: 3 }, /replicas/],
    ['misspelt nested key', { autoscaling: { enable: true } }, /enable/],
    ['trust domain with capitals', { trustDomain: 'Corp.Example' }, /trustDomain/],
    ['duration in words', { defaultTtl: '1 day' }, /defaultTtl/],
    ['replicas of zero', { replicaCount: 0 }, /replicaCount/],
    ['replicas as a string', { replicaCount: 'two' }, /replicaCount/],
    ['bad serving DNS name', { servingDns: { extraNames: ['Not A Name'] } }, /extraNames/],
    ['bad TokenReview cache TTL', { tokenReviewCacheTtl: 'forever' }, /tokenReviewCacheTtl/],
    ['bad cluster domain', { clusterDomain: 'cluster.local.' }, /clusterDomain/],
    ['unknown anti-affinity mode', { podAntiAffinity: 'always' }, /podAntiAffinity/],
    ['no token audience', { tokenAudiences: [] }, /tokenAudiences/],
    [
      'node account without a namespace',
      { trustedNodeAccounts: ['ztunnel'] },
      /trustedNodeAccounts/,
    ],
    [
      'node account with capitals',
      { trustedNodeAccounts: ['Istio/ztunnel'] },
      /trustedNodeAccounts/,
    ],
    // `--set extraEnv[0].value=false` makes a boolean, which the API server refuses in a pod
    // spec: refused here, at render time (a new operator's PILOT_ENABLE_CA_CRL=false).
    [
      'an environment value that is not a string',
      { extraEnv: [{ name: 'PILOT_ENABLE_CA_CRL', value: false }] },
      /extraEnv/,
    ],
  ];
  for (const [name, values, field] of cases) {
    test(name, () => {
      const res = helm.template(values);
      assert.notEqual(res.status, 0, `helm accepted ${JSON.stringify(values)}`);
      assert.match(res.stderr, /values don't meet the specifications of the schema/);
      assert.match(res.stderr, field);
    });
  }

  test('a Kubernetes older than Chart.yaml kubeVersion is refused', () => {
    const res = helm.template({}, { kubeVersion: '1.22.0' });
    assert.notEqual(res.status, 0);
    assert.match(res.stderr, /kubeVersion/);
  });
});

describe('values.yaml and values.schema.json agree, and every key is documented', () => {
  interface SchemaNode {
    type?: string | string[];
    properties?: Record<string, SchemaNode>;
    additionalProperties?: boolean | SchemaNode;
  }
  const schema = JSON.parse(
    readFileSync(join(chartDir, 'values.schema.json'), 'utf8'),
  ) as SchemaNode & {
    $schema: string;
  };
  const doc = parseDocument(readFileSync(join(chartDir, 'values.yaml'), 'utf8'));

  test('the schema is draft-07 and strict at the top level', () => {
    assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
    assert.equal(schema.additionalProperties, false);
  });

  test('every chart-defined key has a comment above it and a schema entry, and back', () => {
    const undocumented: string[] = [];
    const unknownToSchema: string[] = [];
    const walk = (node: Node | null, s: SchemaNode, path: string): void => {
      if (!isMap(node) || !s.properties) return;
      const seen = new Set<string>();
      node.items.forEach((pair, i) => {
        const key = isScalar(pair.key) ? String(pair.key.value) : '?';
        seen.add(key);
        const keyNode = pair.key as Node;
        const comment = keyNode.commentBefore ?? (i === 0 ? node.commentBefore : undefined);
        if (!comment || comment.trim() === '') undocumented.push(path + key);
        const child = s.properties![key];
        if (!child) unknownToSchema.push(path + key);
        else walk(pair.value as Node | null, child, `${path}${key}.`);
      });
      for (const k of Object.keys(s.properties)) {
        if (!seen.has(k) && !(path === '' && k === 'global'))
          unknownToSchema.push(`(schema) ${path}${k}`);
      }
    };
    walk(doc.contents, schema, '');
    assert.deepEqual(undocumented, [], 'keys without a comment above them');
    assert.deepEqual(unknownToSchema, [], 'keys in only one of values.yaml and the schema');
  });

  test('the default values pass the schema (helm template succeeds with no overrides)', () => {
    const res = helm.template({});
    assert.equal(res.status, 0, res.stderr);
  });
});

describe('the chart and the CLI agree', () => {
  const help = existsSync(cliPath)
    ? spawnSync(process.execPath, [cliPath, 'serve', '--help'], {
        encoding: 'utf8',
        timeout: 30_000,
      })
    : undefined;
  const serveExists = help !== undefined && help.status === 0 && /--kube\b/.test(help.stdout);

  test(
    'every flag the chart passes to `castellan serve` is one serve accepts',
    { skip: serveExists ? false : 'needs a build with `castellan serve --kube` (npm run build)' },
    () => {
      for (const values of [{}, CUSTOM_VALUES]) {
        const args = container(only(helm.render(values), 'Deployment') as Deployment).args;
        assert.equal(args[0], 'serve');
        for (const arg of args.slice(1)) {
          const flag = arg.split('=')[0]!;
          assert.match(help!.stdout, new RegExp(`${flag}\\b`), `serve --help lists ${flag}`);
        }
      }
    },
  );
});
