// `castellan policy check|bundle|lint` end to end through the compiled CLI (build first).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, projectRoot } from '../support/paths.js';

const fixtures = join(projectRoot, 'test', 'policy', 'fixtures', 'basic');
const policies = join(fixtures, 'policies.yaml');
let dir = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'castellan-policy-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, 'policy', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function input(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const base = readFileSync(join(fixtures, 'input.yaml'), 'utf8');

test('check --output json: an allowed request, with the documented keys', () => {
  const r = run(
    'check',
    '--policies',
    fixtures,
    '--input',
    join(fixtures, 'input.yaml'),
    '--output',
    'json',
  );
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(out).sort(), [
    'decision',
    'dryRun',
    'normalizedPath',
    'notes',
    'policy',
    'reason',
    'rule',
    'stage',
  ]);
  assert.equal(out['normalizedPath'], '/headers?x=1');
  assert.deepEqual(
    [out['decision'], out['stage'], out['policy'], out['rule']],
    ['ALLOW', 'allow', 'foo/allow-sleep', 0],
  );
});

test('check: a denied request still exits 0; text output explains the stage and policy', () => {
  const file = input('deny.yaml', base.replace('/headers?x=1', '/admin/users'));
  const r = run('check', '--policies', policies, '--input', file);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^DENY at stage deny by foo\/deny-admin rule 0/);
  assert.match(r.stdout, /mTLS: STRICT \(istio-system\/default, mesh level\)/);
});

test('check: plaintext to a STRICT port is denied at stage mtls', () => {
  const file = input('plain.yaml', base.replace('tls: mtls', 'tls: plaintext'));
  const r = run('check', '--policies', policies, '--input', file, '--output', 'json');
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual([out['decision'], out['stage']], ['DENY', 'mtls']);
});

test('check: a DELETE shows the dry-run DENY that would have denied it', () => {
  const file = input('delete.yaml', base.replace('method: GET', 'method: DELETE'));
  const out = JSON.parse(
    run('check', '--policies', policies, '--input', file, '--output', 'json').stdout,
  ) as {
    dryRun: { wouldBe: string; policy: string }[];
    decision: string;
  };
  assert.equal(out.decision, 'DENY');
  assert.deepEqual(
    out.dryRun.map((d) => [d.wouldBe, d.policy]),
    [['DENY', 'foo/dry-deny-delete']],
  );
});

test('unusable input: non-zero exit and a message naming the file or field', () => {
  const missing = run('check', '--policies', policies, '--input', join(dir, 'nope.yaml'));
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /nope\.yaml/);
  const bad = run(
    'check',
    '--policies',
    policies,
    '--input',
    input('bad.yaml', base.replace('port: 8000\n', 'port: eighty\n')),
  );
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /request\.port: must be a port number/);
  const yaml = run(
    'check',
    '--policies',
    input('broken.yaml', 'kind: [unclosed'),
    '--input',
    join(fixtures, 'input.yaml'),
  );
  assert.notEqual(yaml.code, 0);
  assert.match(yaml.stderr, /broken\.yaml: not valid YAML/);
});

test('a broken symbolic link named like a manifest is refused, naming it; others are ignored', () => {
  const folder = join(dir, 'with-broken-link');
  mkdirSync(folder);
  writeFileSync(join(folder, 'policies.yaml'), readFileSync(policies));
  symlinkSync('notes-gone.txt', join(folder, 'notes.txt'));
  const fine = run('lint', '--policies', folder);
  assert.equal(fine.code, 0, fine.stderr);

  symlinkSync('gone.yaml', join(folder, 'extra.yaml'));
  for (const args of [
    ['check', '--policies', folder, '--input', join(fixtures, 'input.yaml')],
    ['bundle', '--policies', folder, '--workload', join(fixtures, 'input.yaml')],
    ['lint', '--policies', folder],
  ]) {
    const r = run(...args);
    assert.equal(r.code, 2, `${args[0]}: invalid-argument exits 2; ${r.stderr}`);
    assert.equal(
      r.stderr,
      `castellan: ${join(folder, 'extra.yaml')}: cannot read: broken symbolic link to gone.yaml\n`,
    );
  }
});

test('bundle prints the golden bundle byte for byte', () => {
  const r = run('bundle', '--policies', fixtures, '--workload', join(fixtures, 'input.yaml'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    readFileSync(join(projectRoot, 'test', 'policy', 'golden', 'basic-httpbin-1.json'), 'utf8'),
  );
});

test('lint prints diagnostics naming policy, field and reason, and exits 1 on an error; other kinds are ignored', () => {
  const file = input(
    'lint.yaml',
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: foo}
spec:
  action: DENY
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: foo}
spec:
  rules: [{from: [{source: {principal: [x]}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: svc}
`,
  );
  const r = run('lint', '--policies', file);
  assert.equal(r.code, 1, `an error fails a CI gate; ${r.stderr}`);
  assert.equal(r.stderr, '');
  assert.match(
    r.stdout,
    /error: AuthorizationPolicy foo\/bad: spec\.rules: DENY action without `rules`/,
  );
  assert.match(
    r.stdout,
    /warning: AuthorizationPolicy foo\/typo: spec\.rules\[0\]\.from\[0\]\.source\.principal: unknown field/,
  );
  assert.doesNotMatch(r.stdout, /Service/);
  const json = JSON.parse(run('lint', '--policies', file, '--output', 'json').stdout) as unknown[];
  assert.ok(json.length >= 3);
});

test('lint with warnings only exits 0', () => {
  const file = input(
    'warn.yaml',
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: http-only, namespace: foo}
spec: {action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}
`,
  );
  const r = run('lint', '--policies', file);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^warning: AuthorizationPolicy foo\/http-only: spec\.rules\[0\]: this DENY rule uses only HTTP attributes/,
  );
});

test('check explains the normalized path and names a policy Istio would refuse, and one Kubernetes would', () => {
  const policiesFile = input(
    'refused.yaml',
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin/secret]}}], from: [{source: {ipBlocks: ["10.0.0.300"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: both, namespace: foo}
spec: {selector: {matchLabels: {app: httpbin}}, targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]}
`,
  );
  const file = input(
    'normalize.yaml',
    base
      .replace('/headers?x=1', '/admin//./secret')
      .replace(
        'mesh: { rootNamespace: istio-system, trustDomain: cluster.local }',
        'mesh: { pathNormalization: { normalization: MERGE_SLASHES } }',
      ),
  );
  const r = run('check', '--policies', policiesFile, '--input', file);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^DENY at stage deny by foo\/deny-admin rule 0/);
  assert.match(
    r.stdout,
    /\n {2}path: \/admin\/secret \(normalized from \/admin\/\/\.\/secret; pathNormalization MERGE_SLASHES\)\n/,
  );
  assert.match(
    r.stdout,
    /note: AuthorizationPolicy foo\/deny-admin has an error: spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks: bad IP address or CIDR range \(10\.0\.0\.300\) \(Istio's validation webhook rejects this\)/,
  );
  assert.match(
    r.stdout,
    /note: AuthorizationPolicy foo\/both is left out: spec: only one of targetRefs or selector can be set/,
  );
  const json = JSON.parse(
    run('check', '--policies', policiesFile, '--input', file, '--output', 'json').stdout,
  ) as {
    normalizedPath: string;
    notes: string[];
  };
  assert.equal(json.normalizedPath, '/admin/secret');
  assert.ok(json.notes.some((n) => n.includes('has an error')));
});

test('a mounted ConfigMap folder is read once, not also through ..data and its timestamped folder', () => {
  const cm = join(dir, 'configmap');
  mkdirSync(join(cm, '..2026_11_21_00_00_00.1'), { recursive: true });
  writeFileSync(join(cm, '..2026_11_21_00_00_00.1', 'policies.yaml'), readFileSync(policies));
  symlinkSync('..2026_11_21_00_00_00.1', join(cm, '..data'));
  symlinkSync(join('..data', 'policies.yaml'), join(cm, 'policies.yaml'));
  const r = run('lint', '--policies', cm);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /defined twice/);
  assert.equal(r.stdout, run('lint', '--policies', policies).stdout);
});
