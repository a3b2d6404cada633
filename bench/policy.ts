// Policy engine scale run: N workloads in M namespaces, AuthorizationPolicies and
// PeerAuthentications generated deterministically (a seeded PRNG, no Math.random).
// Measures full compile, recompute after one policy change, check decisions per second, memory.
import { performance } from 'node:perf_hooks';
import { PolicyCompiler } from '../src/policy/compiler.js';
import { decide } from '../src/policy/decision.js';
import { DEFAULT_MESH } from '../src/policy/mesh.js';
import { parseResources, type ManifestDocument } from '../src/policy/parse-resources.js';
import { parseRequest, type PolicyRequest } from '../src/policy/request.js';
import type { SecurityResource } from '../src/policy/resource.js';
import { authorizationPolicyApplies } from '../src/policy/selection.js';
import type { BenchCase, BenchOptions, Measurement } from './types.js';
import { parseWorkload, type Workload } from '../src/policy/workload.js';
import { seededRng } from '../test/support/seeded-rng.js';

export interface PolicyBenchOptions {
  readonly workloads?: number;
  readonly namespaces?: number;
  readonly authorizationPolicies?: number;
  readonly peerAuthentications?: number;
  /** How many `check` decisions to time. */
  readonly decisions?: number;
}

export interface PolicyBenchResult {
  readonly name: 'policy';
  readonly workloads: number;
  readonly namespaces: number;
  readonly authorizationPolicies: number;
  readonly peerAuthentications: number;
  readonly fullCompileMs: number;
  readonly recomputeOnePolicyMs: number;
  readonly recomputedWorkloads: number;
  readonly recomputeRootPolicyMs: number;
  readonly decisionsPerSecond: number;
  readonly heapUsedMiB: number;
  readonly rssMiB: number;
}

const APPS = 10;

export function generateMesh(o: Required<PolicyBenchOptions>): {
  workloads: Workload[];
  resources: SecurityResource[];
} {
  const rand = seededRng(20261121);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)] as T;
  const ns = (i: number): string => `ns-${i}`;
  const workloads: Workload[] = [];
  for (let i = 0; i < o.workloads; i++) {
    const n = i % o.namespaces;
    workloads.push(
      parseWorkload({
        namespace: ns(n),
        name: `w-${i}`,
        labels: { app: `app-${i % APPS}`, version: `v${i % 3}` },
        serviceAccount: `sa-${i % APPS}`,
        ports: [
          { number: 8080, protocol: 'HTTP' },
          { number: 9090, protocol: 'TCP' },
        ],
      }),
    );
  }
  const docs: ManifestDocument[] = [];
  const ts = (i: number): string => new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString();
  for (let i = 0; i < o.peerAuthentications; i++) {
    const namespaced = i % 2 === 0;
    docs.push({
      origin: `pa#${i}`,
      object: {
        apiVersion: 'security.istio.io/v1',
        kind: 'PeerAuthentication',
        metadata: { name: `pa-${i}`, namespace: ns(i % o.namespaces), creationTimestamp: ts(i) },
        spec: namespaced
          ? { mtls: { mode: pick(['STRICT', 'PERMISSIVE']) } }
          : {
              selector: { matchLabels: { app: `app-${i % APPS}` } },
              mtls: { mode: 'STRICT' },
              portLevelMtls: { '9090': { mode: 'PERMISSIVE' } },
            },
      },
    });
  }
  for (let i = 0; i < o.authorizationPolicies; i++) {
    const action = pick(['ALLOW', 'ALLOW', 'DENY', 'AUDIT']);
    const src = pick(['bar', 'ns-1', 'ns-2', 'ops']);
    docs.push({
      origin: `ap#${i}`,
      object: {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: `ap-${i}`, namespace: ns(i % o.namespaces), creationTimestamp: ts(i) },
        spec: {
          selector: { matchLabels: { app: `app-${Math.floor(rand() * APPS)}` } },
          action,
          rules: [
            {
              from: [
                { source: { principals: [`cluster.local/ns/${src}/sa/sa-${i % APPS}`] } },
                { source: { namespaces: [src] } },
              ],
              to: [
                { operation: { methods: ['GET', 'POST'], paths: ['/api/{**}', `/v${i % 3}/*`] } },
              ],
              when: [{ key: 'request.headers[x-tenant]', notValues: ['blocked'] }],
            },
            { to: [{ operation: { ports: ['9090'] } }] },
          ],
        },
      },
    });
  }
  const { resources } = parseResources(docs);
  return { workloads, resources };
}

export function runPolicyBench(options: PolicyBenchOptions = {}): PolicyBenchResult {
  const o: Required<PolicyBenchOptions> = {
    workloads: options.workloads ?? 10_000,
    namespaces: options.namespaces ?? 500,
    authorizationPolicies: options.authorizationPolicies ?? 2_000,
    peerAuthentications: options.peerAuthentications ?? 500,
    decisions: options.decisions ?? 200_000,
  };
  const { workloads, resources } = generateMesh(o);

  const t0 = performance.now();
  const compiler = new PolicyCompiler(DEFAULT_MESH);
  for (const r of resources) compiler.upsertPolicy(r);
  for (const w of workloads) compiler.upsertWorkload(w);
  const fullCompileMs = performance.now() - t0;

  // One namespaced policy changes (its path list): only the workloads it selects recompute.
  const target = resources.find(
    (r) =>
      r.kind === 'AuthorizationPolicy' &&
      workloads.some((w) => authorizationPolicyApplies(r, w, DEFAULT_MESH.rootNamespace)),
  )!;
  const changed = {
    ...target,
    rules: [
      { from: [], to: [], when: [{ key: 'source.ip', values: ['10.0.0.0/8'], notValues: [] }] },
    ],
  } as SecurityResource;
  const t1 = performance.now();
  compiler.upsertPolicy(changed);
  const recomputeOnePolicyMs = performance.now() - t1;
  const recomputedWorkloads = compiler.lastRecomputed;

  // A root-namespace policy touches every workload: the worst case for one change.
  const rootPolicy = parseResources([
    {
      origin: 'root',
      object: {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'global-deny', namespace: 'istio-system' },
        spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] },
      },
    },
  ]).resources[0]!;
  const t2 = performance.now();
  compiler.upsertPolicy(rootPolicy);
  const recomputeRootPolicyMs = performance.now() - t2;

  const bundles = compiler.allBundles();
  const requests: PolicyRequest[] = [];
  for (let i = 0; i < 64; i++) {
    requests.push(
      parseRequest({
        protocol: i % 4 === 0 ? 'TCP' : 'HTTP',
        port: i % 4 === 0 ? 9090 : 8080,
        tls: i % 5 === 0 ? 'plaintext' : 'mtls',
        source: { principal: `cluster.local/ns/ns-${i % 3}/sa/sa-${i % APPS}`, ip: `10.0.${i}.1` },
        http: {
          method: i % 2 ? 'GET' : 'DELETE',
          path: `/api/v1/items/${i}`,
          host: 'svc:8080',
          headers: { 'x-tenant': `t${i}` },
        },
      }),
    );
  }
  let allowed = 0;
  const t3 = performance.now();
  for (let i = 0; i < o.decisions; i++) {
    const d = decide(bundles[i % bundles.length]!, requests[i % requests.length]!);
    if (d.decision === 'ALLOW') allowed++;
  }
  const decisionsPerSecond = o.decisions / ((performance.now() - t3) / 1000);
  if (allowed < 0) throw new Error('unreachable');

  const mem = process.memoryUsage();
  return {
    name: 'policy',
    workloads: o.workloads,
    namespaces: o.namespaces,
    authorizationPolicies: o.authorizationPolicies,
    peerAuthentications: o.peerAuthentications,
    fullCompileMs: Math.round(fullCompileMs),
    recomputeOnePolicyMs: Math.round(recomputeOnePolicyMs * 100) / 100,
    recomputedWorkloads,
    recomputeRootPolicyMs: Math.round(recomputeRootPolicyMs),
    decisionsPerSecond: Math.round(decisionsPerSecond),
    heapUsedMiB: Math.round(mem.heapUsed / 2 ** 20),
    rssMiB: Math.round(mem.rss / 2 ** 20),
  };
}

// Run alone: `node dist/bench/policy.js [--small]`.
if (process.argv[1]?.endsWith('/bench/policy.js')) {
  const small = process.argv.includes('--small');
  try {
    const r = runPolicyBench(
      small
        ? {
            workloads: 500,
            namespaces: 25,
            authorizationPolicies: 100,
            peerAuthentications: 25,
            decisions: 5_000,
          }
        : {},
    );
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  } catch (e) {
    process.stderr.write(`${String(e)}\n`);
    process.exitCode = 1;
  }
}

/**
 * The policy scale run as a `npm run bench` case. The table's columns are certificate-shaped,
 * so this case maps: certs/s ← check decisions/s, p50 ms ← recompute after one namespaced
 * policy change, p99 ms ← recompute after one root-namespace policy change; every figure
 * (full compile time, heap) is printed as one JSON line on stderr.
 */
export function policyBenchCase(): BenchCase {
  return {
    name: 'policy-scale (decisions/s; p50=recompute 1 policy, p99=recompute root policy)',
    target: 'recompute ≪ full compile',
    run(options: BenchOptions): Promise<Measurement> {
      const r = runPolicyBench(
        options.quick
          ? {
              workloads: 1_000,
              namespaces: 50,
              authorizationPolicies: 200,
              peerAuthentications: 50,
              decisions: 10_000,
            }
          : {},
      );
      process.stderr.write(`${JSON.stringify(r)}\n`);
      return Promise.resolve({
        certs_per_s: r.decisionsPerSecond,
        p50_ms: r.recomputeOnePolicyMs,
        p99_ms: r.recomputeRootPolicyMs,
        rss_mb: r.rssMiB,
      });
    },
  };
}
