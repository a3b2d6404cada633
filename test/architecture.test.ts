// Dependencies point one way: I/O at the edges, pure logic in the middle. This test fails on
// an import that crosses a layer the wrong way, on a forbidden package, and on any import cycle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { projectRoot } from './support/paths.js';

const srcRoot = join(projectRoot, 'src');

/** Which layers each layer may import. `core` is the files directly under src/. */
const ALLOWED: Record<string, string[]> = {
  core: [],
  pki: ['core'],
  ca: ['core', 'pki'],
  authn: ['core', 'pki'],
  policy: ['core'],
  api: ['core'],
  kube: ['core', 'pki', 'ca', 'authn', 'policy'],
  server: ['core', 'pki', 'ca', 'authn', 'policy', 'api'],
  agent: ['core', 'pki', 'api'],
  cli: ['core', 'pki', 'ca', 'authn', 'policy', 'api', 'kube', 'server', 'agent'],
};
/** Packages only one layer may use. */
const PACKAGE_OWNERS: Record<string, string[]> = {
  '@kubernetes/client-node': ['kube'],
};
/** Pure layers: no I/O modules. */
const PURE = new Set(['pki', 'policy']);
const IO_MODULES = [
  'node:fs',
  'node:fs/promises',
  'node:net',
  'node:http',
  'node:https',
  'node:http2',
  'node:child_process',
  'node:dgram',
  'node:tls',
];

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

function layerOf(file: string): string {
  const rel = relative(srcRoot, file).split('/');
  return rel.length === 1 ? 'core' : (rel[0] as string);
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"`;]*?from\s*['"]([^'"]+)['"]/g))
    specs.push(m[1] as string);
  for (const m of text.matchAll(/(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g))
    specs.push(m[1] as string);
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.push(m[1] as string);
  return specs;
}

const files = walk(srcRoot);
/** file -> the src files it imports, built once for both tests. */
const graph = new Map<string, string[]>(
  files.map((file) => [
    file,
    importsOf(file)
      .filter((s) => s.startsWith('.'))
      .map((s) => resolve(dirname(file), s).replace(/\.js$/, '.ts')),
  ]),
);

test('src/ imports respect the layers', () => {
  const violations: string[] = [];
  for (const file of files) {
    const layer = layerOf(file);
    const allowed = ALLOWED[layer];
    if (!allowed) {
      violations.push(
        `${relative(srcRoot, file)}: folder "${layer}" has no layer rule; add it to this test`,
      );
      continue;
    }
    for (const spec of importsOf(file)) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
        const tl = layerOf(target);
        if (tl !== layer && !allowed.includes(tl)) {
          violations.push(
            `${relative(srcRoot, file)} (${layer}) imports ${relative(srcRoot, target)} (${tl})`,
          );
        }
      } else {
        for (const [pkg, owners] of Object.entries(PACKAGE_OWNERS)) {
          if ((spec === pkg || spec.startsWith(pkg + '/')) && !owners.includes(layer)) {
            violations.push(
              `${relative(srcRoot, file)} (${layer}) imports ${pkg}, which only ${owners.join(', ')} may use`,
            );
          }
        }
        const bare = spec.startsWith('node:') ? spec : `node:${spec}`;
        if (PURE.has(layer) && IO_MODULES.includes(bare)) {
          violations.push(`${relative(srcRoot, file)} (${layer}, pure) imports ${spec}`);
        }
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('src/ has no import cycles', () => {
  assert.ok(files.length > 5, 'the walk found the source files');
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const stack: string[] = [];
  const visit = (f: string): void => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'visiting') {
      cycles.push(
        [...stack.slice(stack.indexOf(f)), f].map((p) => relative(srcRoot, p)).join(' -> '),
      );
      return;
    }
    state.set(f, 'visiting');
    stack.push(f);
    for (const t of graph.get(f) ?? []) visit(t);
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) visit(f);
  assert.deepEqual(cycles, []);
});

/** Imports that load a module when the file runs: static, not `import type`/`export type`. */
function loadedAtStart(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(
    /(?:^|\n)\s*(import|export)\b(\s+type\b)?[^'"`;]*?from\s*['"]([^'"]+)['"]/g,
  )) {
    if (!m[2]) specs.push(m[3] as string);
  }
  for (const m of text.matchAll(/(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g))
    specs.push(m[1] as string);
  return specs;
}

// Kubernetes mode is loaded only when asked for (`await import('./kube-runtime.js')`): a serve in
// local mode without @kubernetes/client-node holds ≈ 19 MB of old generation under load, and
// with it ≈ 45 MB, full collections 3–4× longer and start-up ≈ 0.5 s slower. A one-line static
// import of a helper from src/kube/root-rotation.ts into the CLI's options did exactly that
// (2026-12-07, found by the bench: RSS 246–266 MB instead of ≈ 170).
test('serve in local mode loads no module that loads @kubernetes/client-node', () => {
  // What `castellan serve` loads without --kube: the CLI entry, serve's command and the modules
  // it imports when it runs (app.ts imports kube-runtime.ts only for --kube, dynamically).
  const entries = ['main.ts', 'serve/command.ts', 'serve/cluster.ts', 'serve/app.ts'].map((f) =>
    join(srcRoot, 'cli', f),
  );
  const seen = new Set<string>();
  const via = new Map<string, string>();
  const queue = [...entries];
  const offenders: string[] = [];
  while (queue.length > 0) {
    const file = queue.shift() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of loadedAtStart(file)) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
        if (!via.has(target)) via.set(target, file);
        queue.push(target);
      } else if (
        spec === '@kubernetes/client-node' ||
        spec.startsWith('@kubernetes/client-node/')
      ) {
        const chain = [file];
        while (via.has(chain[0] as string)) chain.unshift(via.get(chain[0] as string) as string);
        offenders.push(chain.map((f) => relative(srcRoot, f)).join(' -> '));
      }
    }
  }
  assert.ok(seen.size > 20, 'the walk followed the CLI entry');
  assert.deepEqual(offenders, []);
});
