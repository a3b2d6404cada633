// Bundles: deterministic, versioned, hashed; golden files under test/policy/golden/.
// Regenerate the goldens deliberately with UPDATE_GOLDEN=1 and review the diff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serializeBundle } from '../../src/policy/policy-bundle.js';
import { parseManifestText } from '../../src/policy/documents.js';
import { bundleForWorkload } from '../../src/policy/evaluate.js';
import { parseMesh } from '../../src/policy/mesh.js';
import { parseResources } from '../../src/policy/parse-resources.js';
import { assertGolden } from '../support/golden.js';
import { parseWorkload } from '../../src/policy/workload.js';
import { projectRoot } from '../support/paths.js';

const fixtures = join(projectRoot, 'test', 'policy', 'fixtures', 'basic');
const golden = join(projectRoot, 'test', 'policy', 'golden');

function load(): { text: string; input: Record<string, unknown> } {
  const text = readFileSync(join(fixtures, 'policies.yaml'), 'utf8');
  const input = parseManifestText(
    readFileSync(join(fixtures, 'input.yaml'), 'utf8'),
    'input.yaml',
  )[0]!.object as Record<string, unknown>;
  return { text, input };
}

function bundleText(policyText: string, input: Record<string, unknown>): string {
  const resources = parseResources(parseManifestText(policyText, 'policies.yaml')).resources;
  return serializeBundle(
    bundleForWorkload(resources, parseMesh(input['mesh']), parseWorkload(input['workload'])),
  );
}

for (const [name, workloadPatch] of [
  ['httpbin-1', {}],
  ['other-app', { name: 'other-1', labels: { app: 'other' } }],
] as const) {
  test(`bundle of foo/${name} matches its golden file`, () => {
    const { text, input } = load();
    const workload = { ...(input['workload'] as object), ...workloadPatch };
    const actual = bundleText(text, { ...input, workload });
    const file = join(golden, `basic-${name}.json`);
    assertGolden(actual, file);
  });
}

test('the same inputs give a byte-identical bundle, whatever the document order', () => {
  const { text, input } = load();
  const reversed = text.split(/^---$/m).reverse().join('\n---\n');
  assert.equal(bundleText(text, input), bundleText(reversed, input));
});

test('the hash is the sha256 of the canonical bundle without its hash, and changes with the input', () => {
  const { text, input } = load();
  const bundle = JSON.parse(bundleText(text, input)) as Record<string, unknown>;
  const { hash, ...body } = bundle;
  // Canonical JSON: keys sorted at every level, compact.
  const canon = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canon)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
          )
        : v;
  assert.equal(
    hash,
    `sha256:${createHash('sha256')
      .update(JSON.stringify(canon(body)))
      .digest('hex')}`,
  );
  const changed = JSON.parse(bundleText(text.replace('/headers', '/ip'), input)) as Record<
    string,
    unknown
  >;
  assert.notEqual(changed['hash'], hash);
  assert.equal(bundle['apiVersion'], 'castellan.io/v1');
  assert.equal(bundle['kind'], 'PolicyBundle');
});

test('bundle groups rules by action in evaluation order and keeps dry-run rules apart', () => {
  const { text, input } = load();
  const b = JSON.parse(bundleText(text, input)) as {
    authorization: Record<string, { policies: string[] }>;
    dryRun: Record<string, { policies: string[] }>;
    workload: { spiffeId: string };
  };
  assert.deepEqual(Object.keys(b.authorization), ['allow', 'audit', 'custom', 'deny']);
  assert.deepEqual(b.authorization['deny']!.policies, ['foo/deny-admin']);
  assert.deepEqual(b.dryRun['deny']!.policies, ['foo/dry-deny-delete']);
  assert.equal(b.workload.spiffeId, 'spiffe://cluster.local/ns/foo/sa/httpbin');
});
