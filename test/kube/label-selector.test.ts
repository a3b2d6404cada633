// Label selectors of the mesh config's discoverySelectors, as istiod converts and matches them
// (pkg/config/mesh/labelselector/labelselector.go, then k8s.io/apimachinery/pkg/labels).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCastellanError } from '../../src/errors.js';
import {
  isLabelKey,
  isLabelValue,
  matchesLabelSelector,
  parseLabelSelector,
} from '../../src/kube/label-selector.js';
import { parseDiscoverySelectors } from '../../src/kube/discovery-namespaces.js';

const matches = (raw: unknown, labels: Record<string, string>): boolean =>
  matchesLabelSelector(parseLabelSelector(raw, 's'), labels);

test('matchLabels and the four operators match as in Kubernetes', () => {
  assert.equal(matches({ matchLabels: { a: '1' } }, { a: '1', b: '2' }), true);
  assert.equal(matches({ matchLabels: { a: '1' } }, { a: '2' }), false);
  assert.equal(matches({ matchLabels: { a: '1', b: '2' } }, { a: '1' }), false, 'all must hold');
  const expr = (operator: string, values?: string[]): unknown => ({
    matchExpressions: [{ key: 'tier', operator, ...(values ? { values } : {}) }],
  });
  assert.equal(matches(expr('In', ['web', 'api']), { tier: 'api' }), true);
  assert.equal(matches(expr('In', ['web']), {}), false);
  assert.equal(matches(expr('NotIn', ['web']), { tier: 'api' }), true);
  // NotIn also holds when the label is absent (labels.Requirement.Matches).
  assert.equal(matches(expr('NotIn', ['web']), {}), true);
  assert.equal(matches(expr('NotIn', ['web']), { tier: 'web' }), false);
  assert.equal(matches(expr('Exists'), { tier: '' }), true);
  assert.equal(matches(expr('Exists'), {}), false);
  assert.equal(matches(expr('DoesNotExist'), {}), true);
  assert.equal(matches(expr('DoesNotExist'), { tier: 'x' }), false);
});

test('an empty selector matches every namespace, a null one none (labelselector.go)', () => {
  assert.equal(matches({}, {}), true);
  assert.equal(matches({ matchLabels: {}, matchExpressions: [] }, { x: 'y' }), true);
  assert.equal(matches(null, { x: 'y' }), false);
});

test('what labels.NewRequirement refuses is refused, naming where', () => {
  const cases: [unknown, string][] = [
    ['text', 's: must be a label selector (matchLabels, matchExpressions)'],
    [{ matchLabel: {} }, 's.matchLabel: unknown field (matchLabels and matchExpressions only)'],
    [
      { matchLabels: { 'bad key!': 'v' } },
      's.matchLabels.bad key!: "bad key!" is not a valid label key',
    ],
    [
      { matchLabels: { k: 'bad value!' } },
      's.matchLabels.k: "bad value!" is not a valid label value',
    ],
    [{ matchLabels: { k: 3 } }, 's.matchLabels.k: 3 is not a valid label value'],
    [{ matchExpressions: {} }, 's.matchExpressions: must be a list'],
    [
      { matchExpressions: [{ key: 'k', operator: 'Gt', values: ['1'] }] },
      's.matchExpressions[0].operator: "Gt" is not a valid label selector operator (In, NotIn, Exists, DoesNotExist)',
    ],
    [
      { matchExpressions: [{ key: 'k', operator: 'In' }] },
      's.matchExpressions[0].values: must not be empty for operator In',
    ],
    [
      { matchExpressions: [{ key: 'k', operator: 'Exists', values: ['x'] }] },
      's.matchExpressions[0].values: must be empty for operator Exists',
    ],
    [
      { matchExpressions: [{ operator: 'Exists' }] },
      's.matchExpressions[0].key: undefined is not a valid label key',
    ],
  ];
  for (const [raw, message] of cases) {
    assert.throws(
      () => parseLabelSelector(raw, 's'),
      (e) => isCastellanError(e, 'invalid-argument') && e.message === message,
      message,
    );
  }
});

test('label keys and values as apimachinery validates them', () => {
  for (const k of ['app', 'kubernetes.io/metadata.name', 'a.b-c/x_y.z', 'A1']) {
    assert.ok(isLabelKey(k), k);
  }
  for (const k of ['', '/x', 'UPPER.io/x', '-x', 'x-', 'a/b/c!', 'x'.repeat(64)]) {
    assert.ok(!isLabelKey(k), k);
  }
  for (const v of ['', 'on', 'a.b_c-d', 'x'.repeat(63)]) assert.ok(isLabelValue(v), v);
  for (const v of ['-a', 'a b', 'x'.repeat(64)]) assert.ok(!isLabelValue(v), v);
});

test('discoverySelectors of a mesh config: absent or empty selects all; errors name the entry', () => {
  assert.deepEqual(parseDiscoverySelectors('', 'm'), []);
  assert.deepEqual(parseDiscoverySelectors('trustDomain: td\n', 'm'), []);
  assert.deepEqual(parseDiscoverySelectors('discoverySelectors: []\n', 'm'), []);
  assert.equal(
    parseDiscoverySelectors('discoverySelectors: [{matchLabels: {a: b}}]', 'm').length,
    1,
  );
  for (const [yaml, message] of [
    ['discoverySelectors: {a: b}', 'm discoverySelectors: must be a list of label selectors'],
    ['[1, 2]', 'm: must be a MeshConfig object'],
    ['a: [', 'm: not YAML'],
    [
      'discoverySelectors: [{matchLabels: {a: b}}, {matchLabels: {"x y": z}}]',
      'm discoverySelectors[1].matchLabels.x y: "x y" is not a valid label key',
    ],
  ] as const) {
    assert.throws(
      () => parseDiscoverySelectors(yaml, 'm'),
      (e) => isCastellanError(e, 'invalid-argument') && e.message.startsWith(message),
      message,
    );
  }
});
