// Local mode's policy folder: read, followed, and applied object by object.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCastellanError } from '../../src/errors.js';
import { PolicyCompiler } from '../../src/policy/compiler.js';
import { DEFAULT_MESH } from '../../src/policy/mesh.js';
import type { SyncResult } from '../../src/policy/compiler-sync.js';
import { PolicyDirSource } from '../../src/server/policy-dir-source.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { tmp } from './support/client.js';

const PODS = `
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {namespace: shop, name: web-1, labels: {app: web}}
  spec: {serviceAccountName: web}
- apiVersion: v1
  kind: Pod
  metadata: {namespace: shop, name: web-2, labels: {app: web}}
  spec: {serviceAccountName: web}
- apiVersion: v1
  kind: Pod
  metadata: {namespace: shop, name: done-1, labels: {app: web}}
  status: {phase: Succeeded}
`;
const WORKLOADS = `
workloads:
- {namespace: shop, name: db-1, labels: {app: db}, serviceAccount: db, ports: [{number: 5432, protocol: TCP}]}
`;
const ap = (name: string, app: string, method: string) => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {namespace: shop, name: ${name}}
spec:
  selector: {matchLabels: {app: ${app}}}
  rules: [{to: [{operation: {methods: [${method}]}}]}]
`;

function setup(clock = new ManualClock()) {
  const dir = tmp();
  mkdirSync(join(dir, 'policies'));
  writeFileSync(join(dir, 'pods.yaml'), PODS);
  writeFileSync(join(dir, 'workloads.yml'), WORKLOADS);
  writeFileSync(join(dir, 'policies', 'web.yaml'), ap('web', 'web', 'GET'));
  writeFileSync(join(dir, 'README.md'), 'not a manifest');
  const compiler = new PolicyCompiler(DEFAULT_MESH);
  const published: string[] = [];
  compiler.onBundle((b) => published.push(`${b.workload.namespace}/${b.workload.name}`));
  const syncs: SyncResult[] = [];
  const source = new PolicyDirSource({
    dir,
    compiler,
    clock,
    pollMs: 60_000,
    onSync: (r) => syncs.push(r),
  });
  return { dir, compiler, published, source, syncs };
}

test('pods, List items and workloads files become workloads; finished pods do not', async () => {
  const { compiler, source } = setup();
  await source.start();
  await source.stop();
  assert.deepEqual(
    compiler
      .allBundles()
      .map((b) => b.workload.name)
      .sort(),
    ['db-1', 'web-1', 'web-2'],
  );
  assert.ok(JSON.stringify(compiler.bundle('shop', 'web-1')).includes('shop/web'));
  assert.ok(!JSON.stringify(compiler.bundle('shop', 'db-1')).includes('shop/web'));
});

test('a change recomputes only the workloads it affects; unchanged re-reads do nothing', async () => {
  const { dir, compiler, published, source } = setup();
  await source.start();
  await source.stop();
  published.length = 0;
  assert.equal(await source.check(), undefined, 'nothing changed');

  writeFileSync(join(dir, 'policies', 'db.yaml'), ap('db', 'db', 'GET'));
  let r = await source.check();
  assert.deepEqual(
    { changes: r?.changes, recomputed: r?.recomputed },
    { changes: 1, recomputed: 1 },
  );
  assert.deepEqual(published.splice(0), ['shop/db-1']);

  // Same objects in other files and order: no change.
  rmSync(join(dir, 'policies', 'db.yaml'));
  writeFileSync(join(dir, 'all.yaml'), `${ap('db', 'db', 'GET')}\n---\n`);
  r = await source.check();
  assert.equal(r?.changes, 0);

  writeFileSync(join(dir, 'policies', 'web.yaml'), ap('web', 'web', 'POST'));
  r = await source.check();
  assert.equal(r?.recomputed, 2);
  assert.deepEqual(published.splice(0).sort(), ['shop/web-1', 'shop/web-2']);

  rmSync(join(dir, 'policies', 'web.yaml'));
  r = await source.check();
  assert.equal(r?.recomputed, 2);
  assert.ok(!JSON.stringify(compiler.bundle('shop', 'web-1')).includes('shop/web'));
  assert.equal(compiler.bundle('shop', 'db-1')?.hash !== undefined, true);
});

test('a file that stops parsing keeps its last good content; files mounted ConfigMap-style (symlinks into ..data) are read', async () => {
  const { dir, compiler, source } = setup();
  await source.start();
  await source.stop();
  const before = compiler.bundle('shop', 'web-1')!.hash;
  writeFileSync(join(dir, 'policies', 'web.yaml'), 'kind: [unclosed');
  const r = await source.check();
  assert.equal(r?.changes, 0);
  assert.equal(compiler.bundle('shop', 'web-1')!.hash, before);

  mkdirSync(join(dir, '..2026_01_01'));
  writeFileSync(join(dir, '..2026_01_01', 'extra.yaml'), ap('extra', 'web', 'PUT'));
  symlinkSync('..2026_01_01', join(dir, '..data'));
  symlinkSync(join('..data', 'extra.yaml'), join(dir, 'extra.yaml'));
  await source.check();
  const text = JSON.stringify(compiler.bundle('shop', 'web-1'));
  assert.ok(text.includes('shop/extra'));
  assert.ok(text.includes('"PUT"'));
});

test('content whose apply failed is applied again on the next poll, though unchanged', async () => {
  const { dir, compiler, source } = setup();
  await source.start();
  await source.stop();
  const upsert = compiler.upsertPolicy.bind(compiler);
  let failures = 1;
  compiler.upsertPolicy = (r) => {
    if (failures-- > 0) throw new Error('compiler failed');
    return upsert(r);
  };
  writeFileSync(join(dir, 'policies', 'db.yaml'), ap('db', 'db', 'GET'));
  assert.equal(await source.check(), undefined, 'the failed apply reports nothing');
  assert.ok(!JSON.stringify(compiler.bundle('shop', 'db-1')).includes('shop/db'));

  const r = await source.check();
  assert.equal(r?.changes, 1);
  assert.ok(JSON.stringify(compiler.bundle('shop', 'db-1')).includes('shop/db'));
  assert.equal(await source.check(), undefined, 'once applied, the same content is not re-applied');
});

test('a missing folder is refused at start, naming it', async () => {
  const dir = join(tmp(), 'nope');
  const source = new PolicyDirSource({
    dir,
    compiler: new PolicyCompiler(DEFAULT_MESH),
    clock: new ManualClock(),
  });
  await assert.rejects(source.start(), (e: unknown) => {
    assert.ok(isCastellanError(e, 'invalid-argument'));
    assert.match(e.message, /nope/);
    return true;
  });
});

test('the folder is re-read every poll interval on the clock, and stop() ends the polling', async () => {
  const clock = new ManualClock();
  const { dir, compiler, source, syncs } = setup(clock);
  const started = clock.now();
  await source.start();
  assert.equal(syncs.length, 1, 'the first read');
  assert.equal(clock.nextDue(), started + 60_000, 'the next read is one interval away');
  writeFileSync(join(dir, 'policies', 'db.yaml'), ap('db', 'db', 'GET'));
  await clock.advance(60_000);
  const polled = await waitFor('the poll to apply db.yaml', () => syncs[1]);
  assert.equal(polled.changes, 1);
  assert.ok(JSON.stringify(compiler.bundle('shop', 'db-1')).includes('shop/db'));
  await source.stop();
  assert.equal(clock.pending, 0, 'no timer left after stop()');
});
