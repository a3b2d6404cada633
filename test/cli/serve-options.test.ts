// `castellan serve`'s flags and environment completed into typed options (src/cli/serve/options.ts):
// defaults, precedence (flags over environment over defaults), each component's own options, and
// every refusal, which names its flag or variable as the error's subject.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import type { ServeFlags } from '../../src/cli/serve/flags.js';
import { completeServeOptions, type Environment } from '../../src/cli/serve/options.js';
import { resolveWorkerCount } from '../../src/cli/serve/cluster.js';
import { isCastellanError } from '../../src/errors.js';

const HOUR = 3_600_000;

/** The refusal of these flags: its subject and its whole message (what the user reads). */
function refusal(flags: ServeFlags, env: Environment = {}): { subject: string; message: string } {
  try {
    completeServeOptions(flags, env);
  } catch (e) {
    assert.ok(isCastellanError(e, 'invalid-argument'), String(e));
    assert.ok(e.subject, `${e.message}: names its flag or variable`);
    assert.ok(e.message.startsWith(`${e.subject}: `), e.message);
    return { subject: e.subject, message: e.message };
  }
  return assert.fail(`accepted ${JSON.stringify(flags)}`);
}

const DURATION_HINT = 'use a positive duration such as 24h, 90m, 1h30m or plain seconds';

describe('completeServeOptions', () => {
  test('defaults: each component gets its own options', () => {
    assert.deepEqual(completeServeOptions({}, {}, 2), {
      logLevel: 'info',
      workers: undefined,
      ca: {
        trustDomain: 'cluster.local',
        selfSignedKeyType: 'ec-p256',
        selfSignedRootTtlMs: 87_600 * HOUR,
        dataDir: './.castellan',
        cacertsDir: undefined,
        caKeyUri: undefined,
        cacertsPollIntervalMs: 2000,
        enableCaCrl: true,
      },
      authn: { tokenAudiences: ['istio-ca'], externalJwt: undefined },
      server: {
        grpcAddress: { host: '127.0.0.1', port: 15012 },
        monitoringAddress: { host: '127.0.0.1', port: 15014 },
        bundleAddress: undefined,
        servingNames: {
          dnsNames: ['castellan.istio-system.svc', 'istiod.istio-system.svc', 'localhost'],
          ipAddresses: ['127.0.0.1'],
        },
        ttl: { defaultTtlMs: 24 * HOUR, maxTtlMs: 90 * 24 * HOUR },
        csrThreads: 'auto',
        grpcTransport: 'castellan',
        connections: {
          handshakeTimeoutMs: 10_000,
          idleTimeoutMs: 300_000,
          keepaliveIntervalMs: 30_000,
          keepaliveTimeoutMs: 10_000,
        },
        // 2 cores: 16 in flight per core, 16 waiting per slot (test/server/admission-options.test.ts).
        admission: {
          maxInflight: 32,
          maxQueued: 512,
          identityRate: { perSecond: 20, burst: 100 },
          nodeRateFactor: 8,
        },
      },
      policy: {
        policyDir: undefined,
        meshConfigFile: undefined,
        defaultRootNamespace: 'istio-system',
        defaultTrustDomain: 'cluster.local',
      },
      kube: undefined,
    });
  });

  test('environment TTLs, flags win over them; serving names follow the namespace', () => {
    const env = { DEFAULT_WORKLOAD_CERT_TTL: '12h', MAX_WORKLOAD_CERT_TTL: '48h' };
    const c = completeServeOptions({ namespace: 'mesh', grpcAddr: '0.0.0.0:15012' }, env);
    assert.deepEqual(c.server.ttl, { defaultTtlMs: 12 * HOUR, maxTtlMs: 48 * HOUR });
    assert.deepEqual(c.server.servingNames, {
      dnsNames: ['castellan.mesh.svc', 'istiod.mesh.svc'],
      ipAddresses: [],
    });
    assert.equal(c.policy.defaultRootNamespace, 'mesh');
    const f = completeServeOptions(
      { defaultTtl: '1h', servingDns: ['ca.example.com', '10.0.0.1'] },
      env,
    );
    assert.equal(f.server.ttl.defaultTtlMs, HOUR);
    assert.deepEqual(f.server.servingNames, {
      dnsNames: ['ca.example.com'],
      ipAddresses: ['10.0.0.1'],
    });
  });

  test('flags reach the component they configure', () => {
    const c = completeServeOptions({
      dataDir: 'd',
      cacertsDir: 'c',
      caKeyUri: 'pkcs11:token=ca;object=k?module-path=/m.so',
      cacertsPollInterval: '250ms',
      jwtIssuer: 'https://issuer',
      jwksFile: 'jwks.json',
      tokenAudience: ['a', 'b'],
      caKeyType: 'rsa-2048',
      policyDir: 'p',
      meshConfig: 'mesh.yaml',
      bundleAddr: '127.0.0.1:15013',
      workers: '3',
      csrThreads: '0',
      logLevel: 'warn',
    });
    assert.deepEqual(c.ca, {
      trustDomain: 'cluster.local',
      selfSignedKeyType: 'rsa-2048',
      selfSignedRootTtlMs: 87_600 * HOUR,
      dataDir: 'd',
      cacertsDir: 'c',
      cacertsDirSetting: '--cacerts-dir',
      caKeyUri: 'pkcs11:token=ca;object=k?module-path=/m.so',
      cacertsPollIntervalMs: 250,
      enableCaCrl: true,
    });
    assert.deepEqual(c.authn, {
      tokenAudiences: ['a', 'b'],
      externalJwt: { issuer: 'https://issuer', jwksFile: 'jwks.json' },
    });
    assert.deepEqual(c.server.bundleAddress, { host: '127.0.0.1', port: 15013 });
    assert.equal(c.server.csrThreads, 0);
    assert.equal(c.policy.policyDir, 'p');
    assert.equal(c.policy.meshConfigFile, 'mesh.yaml');
    assert.equal(c.workers, 3);
    assert.equal(c.logLevel, 'warn');
  });

  test('Kubernetes mode: --kube, --kubeconfig, or automatically in a pod unless CASTELLAN_KUBE=false', () => {
    assert.equal(completeServeOptions({}).kube, undefined);
    assert.equal(completeServeOptions({ kubeconfig: 'kc' }).kube?.kubeconfigPath, 'kc');
    const inPod = { KUBERNETES_SERVICE_HOST: '10.0.0.1' };
    const auto = completeServeOptions({ remoteKubeconfig: ['c2=/x'], namespace: 'ca' }, inPod);
    assert.deepEqual(auto.kube, {
      kubeconfigPath: undefined,
      namespace: 'ca',
      jwtOffline: false,
      leaseName: 'castellan-leader',
      leaseDurationMs: 15_000,
      tokenReviewCacheMaxAgeMs: 60_000,
      remoteKubeconfigs: new Map([['c2', '/x']]),
      rootRotationCheckMs: HOUR,
      rootRotationGracePercent: 20,
      rootCertConfigMap: 'istio-ca-root-cert',
      clusterId: 'Kubernetes',
      crlConfigMapName: 'istio-ca-crl',
      trustedNodeAccounts: [],
    });
    assert.equal(completeServeOptions({}, { ...inPod, CASTELLAN_KUBE: 'false' }).kube, undefined);
    const k = completeServeOptions({
      kube: true,
      jwtOffline: true,
      leaseName: 'ca-lease',
      leaseDuration: '2s',
      tokenReviewCacheTtl: '5s',
      rootRotationCheckInterval: '10m',
      clusterId: 'east',
      workers: '1',
    }).kube;
    assert.equal(k?.jwtOffline, true);
    assert.equal(k.leaseName, 'ca-lease');
    assert.equal(k.leaseDurationMs, 2000);
    assert.equal(k.tokenReviewCacheMaxAgeMs, 5000);
    assert.equal(k.rootRotationCheckMs, 600_000);
    assert.equal(k.clusterId, 'east');
  });

  test('every refusal names its flag or variable, in the words the user reads', () => {
    const cases: [ServeFlags, Environment, string][] = [
      [{ trustDomain: 'Bad Domain' }, {}, '--trust-domain: invalid trust domain "Bad Domain"'],
      [
        { grpcAddr: 'nowhere' },
        {},
        '--grpc-addr: invalid address "nowhere": use HOST:PORT (e.g. 127.0.0.1:15012)',
      ],
      [{ monitoringAddr: '1.2.3.4:99999' }, {}, '--monitoring-addr: invalid address'],
      [
        { monitoringAddr: '127.0.0.1:15012' },
        {},
        '--monitoring-addr: must differ from --grpc-addr',
      ],
      // The flag that was given names the error: it is the one missing its partner.
      [
        { jwtIssuer: 'https://issuer' },
        {},
        '--jwt-issuer: --jwt-issuer and --jwks-file go together',
      ],
      [{ jwksFile: 'f' }, {}, '--jwks-file: --jwt-issuer and --jwks-file go together'],
      [{ jwtIssuer: '', jwksFile: 'f' }, {}, '--jwt-issuer: must not be empty'],
      [{ tokenAudience: [''] }, {}, '--token-audience: audiences must not be empty'],
      [{ maxTtl: 'forever' }, {}, `--max-ttl: invalid duration "forever": ${DURATION_HINT}`],
      [{ maxTtl: '0' }, {}, '--max-ttl: invalid duration "0"'],
      [{ defaultTtl: '100d' }, {}, '--default-ttl: default TTL 100d is above the maximum 2160h'],
      [{}, { MAX_WORKLOAD_CERT_TTL: 'soon' }, 'MAX_WORKLOAD_CERT_TTL: invalid duration "soon"'],
      [
        {},
        { DEFAULT_WORKLOAD_CERT_TTL: '-1h' },
        'DEFAULT_WORKLOAD_CERT_TTL: "-1h" is not a positive duration',
      ],
      // An empty flag is the flag's fault, not the environment variable's it would override.
      [{ defaultTtl: '' }, {}, '--default-ttl: invalid duration ""'],
      [{ maxTtl: '' }, { MAX_WORKLOAD_CERT_TTL: '48h' }, '--max-ttl: invalid duration ""'],
      [{ logLevel: 'loud' }, {}, '--log-level: "loud" is not one of trace, debug, info'],
      [{ namespace: 'No_Such' }, {}, '--namespace: "No_Such" is not a DNS label'],
      [{ caKeyType: 'dsa' }, {}, '--ca-key-type: "dsa" is not one of ec-p256, ec-p384'],
      [
        { servingDns: ['not a name'] },
        {},
        '--serving-dns: "not a name" is neither a DNS name nor an IP address',
      ],
      [{ dataDir: '' }, {}, '--data-dir: must not be empty'],
      [{ cacertsDir: '' }, {}, '--cacerts-dir: must not be empty'],
      [{ cacertsPollInterval: 'often' }, {}, '--cacerts-poll-interval: invalid duration "often"'],
      [{ policyDir: '' }, {}, '--policy-dir: must not be empty'],
      [{ meshConfig: '' }, {}, '--mesh-config: must not be empty'],
      [{ bundleAddr: 'nowhere' }, {}, '--bundle-addr: invalid address "nowhere"'],
      [{ bundleAddr: '127.0.0.1:15012' }, {}, '--bundle-addr: must differ from --grpc-addr'],
      [{ bundleAddr: '127.0.0.1:15014' }, {}, '--bundle-addr: must differ from --monitoring-addr'],
      [
        { csrThreads: '17' },
        {},
        '--csr-threads: "17" is not "auto" or a whole number from 0 to 16',
      ],
      [{ remoteKubeconfig: ['nope'] }, {}, '--remote-kubeconfig: "nope" is not clusterid=path'],
      [
        { kube: true, remoteKubeconfig: ['a=b', 'a=c'] },
        {},
        '--remote-kubeconfig: cluster "a" given twice',
      ],
      [
        { kube: true, leaseName: 'Bad_Name' },
        {},
        '--lease-name: "Bad_Name" is not a valid object name',
      ],
      [{ jwtOffline: true }, {}, '--jwt-offline: needs --kube'],
      [{ remoteKubeconfig: ['a=b'] }, {}, '--remote-kubeconfig: needs --kube'],
      [{ kube: true, leaseDuration: 'soon' }, {}, '--lease-duration: invalid duration "soon"'],
      [
        { kube: true, tokenReviewCacheTtl: 'soon' },
        {},
        `--token-review-cache-ttl: invalid duration "soon": ${DURATION_HINT}`,
      ],
      [
        { kube: true, rootRotationCheckInterval: 'never' },
        {},
        '--root-rotation-check-interval: invalid duration "never"',
      ],
      [
        { kube: true, workers: '2' },
        {},
        '--workers: only 1 worker in --kube mode (scale with replicas)',
      ],
      [
        { workers: 'auto' },
        { KUBERNETES_SERVICE_HOST: '10.0.0.1' },
        '--workers: only 1 worker in --kube mode (scale with replicas)',
      ],
    ];
    for (const [flags, env, expected] of cases) {
      const { subject, message } = refusal(flags, env);
      assert.ok(message.startsWith(expected), `${JSON.stringify(flags)}: ${message}`);
      assert.equal(subject, expected.slice(0, expected.indexOf(':')));
    }
  });

  test('--workers: a count or auto; anything else is refused naming the flag', () => {
    assert.equal(completeServeOptions({}).workers, undefined);
    assert.equal(completeServeOptions({ workers: 'auto' }).workers, 'auto');
    assert.equal(completeServeOptions({ workers: '3' }).workers, 3);
    for (const bad of ['0', '-1', '1.5', 'many', '65', '']) {
      assert.equal(
        refusal({ workers: bad }).message,
        `--workers: "${bad}" is not "auto" or a whole number from 1 to 64`,
      );
    }
  });

  test('worker count: local default is one process, auto is one per core', () => {
    assert.equal(resolveWorkerCount(undefined, 4), 1);
    assert.equal(resolveWorkerCount('auto', 4), 4);
    assert.equal(resolveWorkerCount('auto'), availableParallelism());
    assert.equal(resolveWorkerCount(3, 2), 3);
    assert.equal(resolveWorkerCount(completeServeOptions({ kube: true }).workers, 8), 1);
  });
});

describe("istiod's CRL settings: PILOT_ENABLE_CA_CRL and PILOT_CRL_CONFIGMAP", () => {
  test('PILOT_ENABLE_CA_CRL takes what istiod takes (Go booleans); --ca-crl wins over it', () => {
    assert.equal(completeServeOptions({}).ca.enableCaCrl, true);
    for (const off of ['false', 'False', 'FALSE', 'f', 'F', '0']) {
      assert.equal(completeServeOptions({}, { PILOT_ENABLE_CA_CRL: off }).ca.enableCaCrl, false);
    }
    for (const on of ['true', 'True', 'TRUE', 't', 'T', '1']) {
      assert.equal(completeServeOptions({}, { PILOT_ENABLE_CA_CRL: on }).ca.enableCaCrl, true);
    }
    const env = { PILOT_ENABLE_CA_CRL: 'false' };
    assert.equal(completeServeOptions({ caCrl: 'true' }, env).ca.enableCaCrl, true);
    assert.equal(completeServeOptions({ caCrl: 'false' }).ca.enableCaCrl, false);
  });

  test('PILOT_CRL_CONFIGMAP names the ConfigMap in Kubernetes mode; --crl-configmap wins', () => {
    const env = { PILOT_CRL_CONFIGMAP: 'mesh-crl' };
    assert.equal(completeServeOptions({ kube: true }).kube?.crlConfigMapName, 'istio-ca-crl');
    assert.equal(completeServeOptions({ kube: true }, env).kube?.crlConfigMapName, 'mesh-crl');
    assert.equal(
      completeServeOptions({ kube: true, crlConfigmap: 'other-crl' }, env).kube?.crlConfigMapName,
      'other-crl',
    );
    // Local mode has no ConfigMaps: the variable is istiod's and ignored there, the flag refused.
    assert.equal(completeServeOptions({}, env).kube, undefined);
  });

  test('a value istiod would not take is refused, naming the flag or variable', () => {
    const cases: [ServeFlags, Environment, string][] = [
      [{}, { PILOT_ENABLE_CA_CRL: 'yes' }, 'PILOT_ENABLE_CA_CRL: "yes" is not true or false'],
      [{}, { PILOT_ENABLE_CA_CRL: '' }, 'PILOT_ENABLE_CA_CRL: "" is not true or false'],
      [{ caCrl: 'off' }, {}, '--ca-crl: "off" is not true or false'],
      [
        { kube: true },
        { PILOT_CRL_CONFIGMAP: 'Bad_Name' },
        'PILOT_CRL_CONFIGMAP: "Bad_Name" is not a valid ConfigMap name',
      ],
      [{ kube: true, crlConfigmap: '' }, {}, '--crl-configmap: "" is not a valid ConfigMap name'],
      [{ crlConfigmap: 'x' }, {}, '--crl-configmap: needs --kube'],
    ];
    for (const [flags, env, expected] of cases) {
      assert.equal(refusal(flags, env).message, expected, JSON.stringify({ flags, env }));
    }
  });
});
