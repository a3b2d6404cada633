// `castellan policy check|bundle|lint` end to end through the compiled CLI (build first).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, projectRoot } from '../support/paths.js';
import { castellanInProcess } from '../support/cli-in-process.js';

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

/**
 * The same command through the CLI's main() in this process: a spawned one costs ~0.7 s of CPU
 * before it parses a flag. For the input checks; the spawned `run` proves the process wiring.
 */
function runInProcess(
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return castellanInProcess(['policy', ...args]);
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
    'policy',
    'reason',
    'rule',
    'stage',
  ]);
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

test('check: plaintext to a STRICT port is denied at stage mtls', async () => {
  const file = input('plain.yaml', base.replace('tls: mtls', 'tls: plaintext'));
  const r = await runInProcess(
    'check',
    '--policies',
    policies,
    '--input',
    file,
    '--output',
    'json',
  );
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual([out['decision'], out['stage']], ['DENY', 'mtls']);
});

test('check: a DELETE shows the dry-run DENY that would have denied it', async () => {
  const file = input('delete.yaml', base.replace('method: GET', 'method: DELETE'));
  const out = JSON.parse(
    (await runInProcess('check', '--policies', policies, '--input', file, '--output', 'json'))
      .stdout,
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

test('unusable input: non-zero exit and a message naming the file or field', async () => {
  const missing = run('check', '--policies', policies, '--input', join(dir, 'nope.yaml'));
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /nope\.yaml/);
  const bad = await runInProcess(
    'check',
    '--policies',
    policies,
    '--input',
    input('bad.yaml', base.replace('port: 8000\n', 'port: eighty\n')),
  );
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /request\.port: must be a port number/);
  const yaml = await runInProcess(
    'check',
    '--policies',
    input('broken.yaml', 'kind: [unclosed'),
    '--input',
    join(fixtures, 'input.yaml'),
  );
  assert.notEqual(yaml.code, 0);
  assert.match(yaml.stderr, /broken\.yaml: not valid YAML/);
});

test('a broken symbolic link named like a manifest is refused, naming it; others are ignored', async () => {
  const folder = join(dir, 'with-broken-link');
  mkdirSync(folder);
  writeFileSync(join(folder, 'policies.yaml'), readFileSync(policies));
  symlinkSync('notes-gone.txt', join(folder, 'notes.txt'));
  const fine = await runInProcess('lint', '--policies', folder);
  assert.equal(fine.code, 0, fine.stderr);

  symlinkSync('gone.yaml', join(folder, 'extra.yaml'));
  // The first as the spawned command, the others through main() in this process.
  for (const [i, args] of [
    ['check', '--policies', folder, '--input', join(fixtures, 'input.yaml')],
    ['bundle', '--policies', folder, '--workload', join(fixtures, 'input.yaml')],
    ['lint', '--policies', folder],
  ].entries()) {
    const r = i === 0 ? run(...args) : await runInProcess(...args);
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

test('lint prints diagnostics naming policy, field and reason; other kinds are ignored', async () => {
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
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /error: AuthorizationPolicy foo\/bad: spec\.rules: DENY action without `rules`/,
  );
  assert.match(
    r.stdout,
    /warning: AuthorizationPolicy foo\/typo: spec\.rules\[0\]\.from\[0\]\.source\.principal: unknown field/,
  );
  assert.doesNotMatch(r.stdout, /Service/);
  const json = JSON.parse(
    (await runInProcess('lint', '--policies', file, '--output', 'json')).stdout,
  ) as unknown[];
  assert.ok(json.length >= 3);
});

test('a mounted ConfigMap folder is read once, not also through ..data and its timestamped folder', async () => {
  const cm = join(dir, 'configmap');
  mkdirSync(join(cm, '..2026_11_21_00_00_00.1'), { recursive: true });
  writeFileSync(join(cm, '..2026_11_21_00_00_00.1', 'policies.yaml'), readFileSync(policies));
  symlinkSync('..2026_11_21_00_00_00.1', join(cm, '..data'));
  symlinkSync(join('..data', 'policies.yaml'), join(cm, 'policies.yaml'));
  const r = await runInProcess('lint', '--policies', cm);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /defined twice/);
  assert.equal(r.stdout, (await runInProcess('lint', '--policies', policies)).stdout);
});
