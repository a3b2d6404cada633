// The incremental compiler recomputes only the workloads a change can affect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyCompiler } from '../../src/policy/compiler.js';
import { DEFAULT_MESH } from '../../src/policy/mesh.js';
import { parseWorkload } from '../../src/policy/workload.js';
import { ap, resources } from './helpers.js';

function setup(): PolicyCompiler {
  const c = new PolicyCompiler(DEFAULT_MESH);
  for (const ns of ['foo', 'bar']) {
    for (const app of ['a', 'b']) {
      for (let i = 0; i < 3; i++) {
        c.upsertWorkload(
          parseWorkload({
            namespace: ns,
            name: `${app}-${i}`,
            labels: { app },
            ports: [{ number: 80, protocol: 'HTTP' }],
          }),
        );
      }
    }
  }
  return c;
}

const one = (yaml: string) => resources(yaml)[0]!;

test('a selector policy recomputes only the workloads it selects', () => {
  const c = setup();
  const changed = c.upsertPolicy(
    one(ap('foo', 'p', '{selector: {matchLabels: {app: a}}, rules: [{}]}')),
  );
  assert.deepEqual(changed.sort(), ['foo/a-0', 'foo/a-1', 'foo/a-2']);
  assert.equal(c.lastRecomputed, 3);
  assert.deepEqual(c.bundle('foo', 'a-0')!.authorization.allow.policies, ['foo/p']);
  assert.deepEqual(c.bundle('foo', 'b-0')!.authorization.allow.policies, []);
});

test('changing a selector recomputes the old and the new selection', () => {
  const c = setup();
  c.upsertPolicy(one(ap('foo', 'p', '{selector: {matchLabels: {app: a}}, rules: [{}]}')));
  const changed = c.upsertPolicy(
    one(ap('foo', 'p', '{selector: {matchLabels: {app: b}}, rules: [{}]}')),
  );
  assert.equal(c.lastRecomputed, 6);
  assert.equal(changed.length, 6);
  assert.deepEqual(c.bundle('foo', 'a-1')!.authorization.allow.policies, []);
  assert.deepEqual(c.bundle('foo', 'b-1')!.authorization.allow.policies, ['foo/p']);
});

test('a namespace policy recomputes its namespace; a root-namespace policy every namespace', () => {
  const c = setup();
  c.upsertPolicy(one(ap('bar', 'deny', '{action: DENY, rules: [{}]}')));
  assert.equal(c.lastRecomputed, 6);
  c.upsertPolicy(one(ap('istio-system', 'global', '{action: DENY, rules: [{}]}')));
  assert.equal(c.lastRecomputed, 12);
});

test('an unchanged re-apply produces no new bundle; listeners see real changes only', () => {
  const c = setup();
  const seen: string[] = [];
  c.onBundle((b) => seen.push(`${b.workload.namespace}/${b.workload.name}`));
  const policy = one(ap('foo', 'p', '{selector: {matchLabels: {app: a}}, rules: [{}]}'));
  c.upsertPolicy(policy);
  assert.equal(seen.length, 3);
  assert.deepEqual(c.upsertPolicy(policy), []);
  assert.equal(seen.length, 3);
});

test('removing a policy and a namespace', () => {
  const c = setup();
  c.upsertPolicy(one(ap('foo', 'p', '{rules: [{}]}')));
  assert.equal(c.removePolicy('AuthorizationPolicy', 'foo', 'p').length, 6);
  assert.deepEqual(c.bundle('foo', 'a-0')!.authorization.allow.policies, []);
  c.removeNamespace('foo');
  assert.equal(c.bundle('foo', 'a-0'), undefined);
  assert.equal(c.workloadCount, 6);
});

test('an incremental bundle equals a from-scratch bundle', () => {
  const c = setup();
  c.upsertPolicy(one(ap('foo', 'p', '{selector: {matchLabels: {app: a}}, rules: [{}]}')));
  c.upsertPolicy(
    one(ap('foo', 'q', '{action: DENY, rules: [{to: [{operation: {paths: [/x]}}]}]}')),
  );
  c.removePolicy('AuthorizationPolicy', 'foo', 'p');
  const fresh = setup();
  fresh.upsertPolicy(
    one(ap('foo', 'q', '{action: DENY, rules: [{to: [{operation: {paths: [/x]}}]}]}')),
  );
  assert.equal(c.bundle('foo', 'a-2')!.hash, fresh.bundle('foo', 'a-2')!.hash);
});
