// istiod's environment variables, honoured by `castellan serve` with the meaning istiod gives
// them (src/cli/serve/flags.ts ISTIOD_ENV, src/cli/serve/options.ts). Each is read as istiod
// reads it — defaults, Go durations, strconv.Atoi numbers, comma lists — from the files named
// beside each test (istio/istio). The flag of the same meaning always wins, and a value that
// istiod would not use as written is refused, naming the variable.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ISTIOD_ENV, type ServeFlags } from '../../src/cli/serve/flags.js';
import {
  completeServeOptions,
  type Environment,
  type ServeOptions,
} from '../../src/cli/serve/options.js';
import { isCastellanError } from '../../src/errors.js';
import { cliPath, projectRoot } from '../support/paths.js';

const HOUR = 3_600_000;
const KUBE = { kube: true } as const;

function refusal(flags: ServeFlags, env: Environment): string {
  try {
    completeServeOptions(flags, env);
  } catch (e) {
    assert.ok(isCastellanError(e, 'invalid-argument'), String(e));
    assert.ok(e.message.startsWith(`${e.subject}: `), e.message);
    return e.message;
  }
  return assert.fail(`accepted ${JSON.stringify(env)}`);
}

/** One variable: what it sets, the flag that wins over it, and what each value means. */
interface Case {
  readonly name: keyof typeof ISTIOD_ENV;
  /** Where istiod reads it (istio/istio). */
  readonly source: string;
  readonly flags?: ServeFlags;
  readonly read: (o: ServeOptions) => unknown;
  /** istiod's default, and ours, when unset or empty. */
  readonly unset: unknown;
  readonly env: string;
  readonly expected: unknown;
  /** The same setting by flag: it wins over the variable. */
  readonly flag: ServeFlags;
  readonly flagExpected: unknown;
}

const CASES: Case[] = [
  {
    name: 'TOKEN_AUDIENCES',
    source: 'pkg/security/security.go: strings.Split(value, ",")',
    read: (o) => o.authn.tokenAudiences,
    unset: ['istio-ca'],
    env: 'istio-ca,vault, spire ',
    expected: ['istio-ca', 'vault', 'spire'],
    flag: { tokenAudience: ['flag-aud'] },
    flagExpected: ['flag-aud'],
  },
  {
    name: 'CA_TRUSTED_NODE_ACCOUNTS',
    source: 'pilot/pkg/features/security.go: comma list of namespace/serviceaccount',
    flags: KUBE,
    read: (o) => o.kube?.trustedNodeAccounts,
    unset: [],
    env: 'istio-system/ztunnel,kube-system/node-proxy',
    expected: [
      { namespace: 'istio-system', serviceAccount: 'ztunnel' },
      { namespace: 'kube-system', serviceAccount: 'node-proxy' },
    ],
    flag: { trustedNodeAccount: ['a/b'] },
    flagExpected: [{ namespace: 'a', serviceAccount: 'b' }],
  },
  {
    name: 'CLUSTER_ID',
    source: 'pilot/pkg/features/pilot.go: default constants.DefaultClusterName, "Kubernetes"',
    flags: KUBE,
    read: (o) => o.kube?.clusterId,
    unset: 'Kubernetes',
    env: 'east',
    expected: 'east',
    flag: { clusterId: 'west' },
    flagExpected: 'west',
  },
  {
    name: 'ROOT_CA_DIR',
    source: 'pilot/pkg/bootstrap/istio_ca.go: the plugged-in CA folder (default ./etc/cacerts)',
    read: (o) => o.ca.cacertsDir,
    // Not istiod's ./etc/cacerts: only a variable that is set turns the folder source on.
    unset: undefined,
    env: '/etc/cacerts',
    expected: '/etc/cacerts',
    flag: { cacertsDir: '/mnt/ca' },
    flagExpected: '/mnt/ca',
  },
  {
    name: 'PILOT_CA_CERT_CONFIGMAP',
    source: 'pilot/pkg/features/experimental.go: default istio-ca-root-cert',
    flags: KUBE,
    read: (o) => o.kube?.rootCertConfigMap,
    unset: 'istio-ca-root-cert',
    env: 'mesh-root-cert',
    expected: 'mesh-root-cert',
    flag: { rootCertConfigmap: 'from-flag' },
    flagExpected: 'from-flag',
  },
  {
    name: 'CITADEL_SELF_SIGNED_CA_CERT_TTL',
    source: 'pilot/pkg/bootstrap/istio_ca.go, security/pkg/cmd/constants.go: 3650 * 24h',
    read: (o) => o.ca.selfSignedRootTtlMs,
    unset: 87_600 * HOUR,
    env: '17520h',
    expected: 17_520 * HOUR,
    flag: { selfSignedRootTtl: '365d' },
    flagExpected: 8760 * HOUR,
  },
  {
    name: 'CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL',
    source: 'pilot/pkg/bootstrap/istio_ca.go, security/pkg/cmd/constants.go: 1h',
    flags: KUBE,
    read: (o) => o.kube?.rootRotationCheckMs,
    unset: HOUR,
    env: '10m30s',
    expected: 630_000,
    flag: { rootRotationCheckInterval: '2h' },
    flagExpected: 2 * HOUR,
  },
  {
    name: 'CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE',
    source: 'pilot/pkg/bootstrap/istio_ca.go, security/pkg/cmd/constants.go: 20',
    flags: KUBE,
    read: (o) => o.kube?.rootRotationGracePercent,
    unset: 20,
    env: '+35',
    expected: 35,
    flag: { rootRotationGracePercent: '50' },
    flagExpected: 50,
  },
  {
    name: 'DEFAULT_WORKLOAD_CERT_TTL',
    source: 'pilot/pkg/bootstrap/istio_ca.go, security/pkg/cmd/constants.go: 24h',
    read: (o) => o.server.ttl.defaultTtlMs,
    unset: 24 * HOUR,
    env: '1.5h',
    expected: 1.5 * HOUR,
    flag: { defaultTtl: '2h' },
    flagExpected: 2 * HOUR,
  },
  {
    name: 'MAX_WORKLOAD_CERT_TTL',
    source: 'pilot/pkg/bootstrap/istio_ca.go, security/pkg/cmd/constants.go: 90 * 24h',
    read: (o) => o.server.ttl.maxTtlMs,
    unset: 2160 * HOUR,
    env: '720h',
    expected: 720 * HOUR,
    flag: { maxTtl: '30d' },
    flagExpected: 720 * HOUR,
  },
];

describe("istiod's environment variables", () => {
  test('every variable of the table is tested here', () => {
    assert.deepEqual(CASES.map((c) => c.name).sort(), Object.keys(ISTIOD_ENV).sort());
  });

  for (const c of CASES) {
    test(`${c.name} (${c.source}): read as istiod reads it; ${ISTIOD_ENV[c.name]} wins`, () => {
      const flags = c.flags ?? {};
      assert.deepEqual(c.read(completeServeOptions(flags, {})), c.unset, 'unset');
      // Set but empty counts as unset (istiod: an empty duration or number falls back to its
      // default; an empty name or folder names nothing).
      assert.deepEqual(c.read(completeServeOptions(flags, { [c.name]: '' })), c.unset, 'empty');
      assert.deepEqual(c.read(completeServeOptions(flags, { [c.name]: c.env })), c.expected);
      assert.deepEqual(
        c.read(completeServeOptions({ ...flags, ...c.flag }, { [c.name]: c.env })),
        c.flagExpected,
        'the flag wins',
      );
    });
  }

  test('docs/serve.md maps each variable to its flag', () => {
    const doc = readFileSync(join(projectRoot, 'docs', 'serve.md'), 'utf8');
    const rows = new Map(
      [...doc.matchAll(/^\| `([A-Z_]+)`\s*\| `(--[a-z-]+)`/gm)].map((m) => [m[1], m[2]]),
    );
    assert.deepEqual(Object.fromEntries(rows), ISTIOD_ENV);
  });

  test('Go durations, as istiod parses them (pkg/env/var.go: time.ParseDuration)', () => {
    // Castellan's own flags also take days and plain seconds; a variable takes what Go takes,
    // since istiod would not read "7d" or "3600" at all (it logs a warning and uses its default).
    const env = { DEFAULT_WORKLOAD_CERT_TTL: '90m', MAX_WORKLOAD_CERT_TTL: '1h30m0.5s' };
    const ttl = completeServeOptions({}, env).server.ttl;
    assert.deepEqual(ttl, { defaultTtlMs: 90 * 60_000, maxTtlMs: 90 * 60_000 + 500 });
    // A sub-millisecond value stays a positive whole number of milliseconds.
    assert.equal(
      completeServeOptions({}, { CITADEL_SELF_SIGNED_CA_CERT_TTL: '1500us' }).ca
        .selfSignedRootTtlMs,
      2,
    );
  });

  test('CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL ≤ 0 turns the check off, as in istiod', () => {
    // security/pkg/pki/ca/ca.go, NewIstioCA: a rotator only when CheckInterval > 0.
    for (const off of ['0', '0s', '-1h']) {
      const k = completeServeOptions(KUBE, {
        CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL: off,
      }).kube;
      assert.equal(k?.rootRotationCheckMs, 0, off);
    }
    assert.equal(
      completeServeOptions({ ...KUBE, rootRotationCheckInterval: '0' }, {}).kube
        ?.rootRotationCheckMs,
      0,
    );
  });

  test('--token-review-cache-ttl 0 means no cache: every request is reviewed', () => {
    for (const zero of ['0', '0s']) {
      const k = completeServeOptions({ ...KUBE, tokenReviewCacheTtl: zero }, {}).kube;
      assert.equal(k?.tokenReviewCacheMaxAgeMs, 0, zero);
    }
  });

  test('each value istiod would not use as written is refused, naming the variable', () => {
    const hint = 'Go durations are written like 24h, 90m, 1h30m, 1.5h or 500ms';
    const cases: [ServeFlags, Environment, string][] = [
      [
        {},
        { DEFAULT_WORKLOAD_CERT_TTL: '3600' },
        `DEFAULT_WORKLOAD_CERT_TTL: missing unit in duration "3600": ${hint}`,
      ],
      [
        {},
        { MAX_WORKLOAD_CERT_TTL: '90d' },
        `MAX_WORKLOAD_CERT_TTL: unknown unit "d" in duration "90d": ${hint}`,
      ],
      [{}, { MAX_WORKLOAD_CERT_TTL: '0' }, 'MAX_WORKLOAD_CERT_TTL: "0" is not a positive duration'],
      [
        {},
        { DEFAULT_WORKLOAD_CERT_TTL: '48h', MAX_WORKLOAD_CERT_TTL: '24h' },
        'DEFAULT_WORKLOAD_CERT_TTL: default TTL 48h is above the maximum 24h',
      ],
      // The maximum alone below the default TTL: the variable set is the one named.
      [
        {},
        { MAX_WORKLOAD_CERT_TTL: '1h' },
        'MAX_WORKLOAD_CERT_TTL: maximum TTL 1h is below the default TTL 24h (--default-ttl, DEFAULT_WORKLOAD_CERT_TTL)',
      ],
      [
        { maxTtl: '1h' },
        {},
        '--max-ttl: maximum TTL 1h is below the default TTL 24h (--default-ttl, DEFAULT_WORKLOAD_CERT_TTL)',
      ],
      [
        {},
        { CITADEL_SELF_SIGNED_CA_CERT_TTL: '-1h' },
        'CITADEL_SELF_SIGNED_CA_CERT_TTL: "-1h" is not a positive duration',
      ],
      [
        {},
        { CITADEL_SELF_SIGNED_CA_CERT_TTL: 'ten years' },
        `CITADEL_SELF_SIGNED_CA_CERT_TTL: invalid duration "ten years": ${hint}`,
      ],
      [
        KUBE,
        { CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL: '1 h' },
        `CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL: unknown unit " h" in duration "1 h": ${hint}`,
      ],
      [
        KUBE,
        { CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: '20%' },
        'CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: "20%" is not a whole number',
      ],
      [
        KUBE,
        { CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: '12.5' },
        'CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: "12.5" is not a whole number',
      ],
      [
        KUBE,
        { CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: '0' },
        'CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: 0 is outside 1-99: the root would expire before it is re-issued',
      ],
      [
        KUBE,
        { CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: '100' },
        'CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: 100 is outside 1-99: the root would be re-issued on every check',
      ],
      [
        { ...KUBE, rootRotationGracePercent: '-5' },
        {},
        '--root-rotation-grace-percent: -5 is outside 1-99: the root would expire before it is re-issued',
      ],
      // A root this short would be due at birth (its 2m backdate counts in its lifetime): it was
      // re-issued at every check, the trust bundle one root longer each time (found 2026-12-07).
      [
        { ...KUBE, selfSignedRootTtl: '40s', rootRotationGracePercent: '50' },
        {},
        '--self-signed-root-ttl: 40s is too short for a grace of 50% (--root-rotation-grace-percent): a new root, backdated 2m for clock skew, would be due for re-issue as soon as it is made; use more than 2m3s',
      ],
      [
        KUBE,
        { CITADEL_SELF_SIGNED_CA_CERT_TTL: '31s' },
        'CITADEL_SELF_SIGNED_CA_CERT_TTL: 31s is too short for a grace of 20% (--root-rotation-grace-percent): a new root, backdated 2m for clock skew, would be due for re-issue as soon as it is made; use more than 32s',
      ],
      [
        {},
        { TOKEN_AUDIENCES: 'istio-ca,,vault' },
        'TOKEN_AUDIENCES: "istio-ca,,vault" has an empty audience (a comma-separated list, e.g. istio-ca)',
      ],
      [
        KUBE,
        { PILOT_CA_CERT_CONFIGMAP: 'Root_Cert' },
        'PILOT_CA_CERT_CONFIGMAP: "Root_Cert" is not a valid ConfigMap name',
      ],
      [{ ...KUBE, rootCertConfigmap: '' }, {}, '--root-cert-configmap: must not be empty'],
      [
        KUBE,
        { CA_TRUSTED_NODE_ACCOUNTS: 'istio-system/ztunnel,ztunnel' },
        'CA_TRUSTED_NODE_ACCOUNTS: "ztunnel" is not namespace/serviceaccount (e.g. istio-system/ztunnel)',
      ],
      [
        KUBE,
        { ROOT_CA_DIR: '/etc/cacerts' },
        'ROOT_CA_DIR: Kubernetes mode reads the plugged-in CA from Secret cacerts, not from a folder (unset it, or run without --kube)',
      ],
      [
        { ...KUBE, cacertsDir: '/etc/cacerts' },
        {},
        '--cacerts-dir: Kubernetes mode reads the plugged-in CA from Secret cacerts, not from a folder (unset it, or run without --kube)',
      ],
    ];
    for (const [flags, env, expected] of cases) {
      assert.equal(refusal(flags, env), expected);
    }
  });

  test('a plugged-in CA folder that is not there names what set it: ROOT_CA_DIR, or --cacerts-dir', () => {
    const missing = join(tmpdir(), `castellan-no-such-cacerts-${process.pid}`);
    const data = mkdtempSync(join(tmpdir(), 'castellan-env-'));
    try {
      const serve = (args: string[], env: Record<string, string>) =>
        spawnSync(
          process.execPath,
          [cliPath, 'serve', '--data-dir', data, '--grpc-addr', '127.0.0.1:0', ...args],
          { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 },
        );
      const byEnv = serve(['--monitoring-addr', '127.0.0.1:0'], { ROOT_CA_DIR: missing });
      assert.equal(byEnv.status, 2, byEnv.stderr);
      assert.ok(
        byEnv.stderr.includes(`castellan: ROOT_CA_DIR=${missing}: no such folder`),
        byEnv.stderr,
      );
      const byFlag = serve(['--monitoring-addr', '127.0.0.1:0', '--cacerts-dir', missing], {});
      assert.equal(byFlag.status, 2, byFlag.stderr);
      assert.ok(
        byFlag.stderr.includes(`castellan: --cacerts-dir=${missing}: no such folder`),
        byFlag.stderr,
      );
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });

  test('a refused variable is not refused when its flag is given: the flag is what is used', () => {
    const env = { MAX_WORKLOAD_CERT_TTL: '90d', TOKEN_AUDIENCES: ',' };
    const o = completeServeOptions({ maxTtl: '90d', tokenAudience: ['istio-ca'] }, env);
    assert.equal(o.server.ttl.maxTtlMs, 2160 * HOUR);
  });
});
