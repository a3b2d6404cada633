#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with Node's own test runner.
// Usage: node scripts/run-tests.mjs [substring ...]  — only files whose path contains a substring.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'dist', 'test');
const filters = process.argv.slice(2);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

let files = walk(testDir).sort();
if (filters.length) files = files.filter((f) => filters.some((s) => relative(root, f).includes(s)));
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
// The whole run is bounded (the suite takes ~1.5 min): a test file whose process never exits
// (a server or timer left open) fails the run with a clear line instead of hanging CI.
const LIMIT_MS = Number(process.env.CASTELLAN_TEST_LIMIT_MS ?? 9 * 60_000);
const res = spawnSync(
  process.execPath,
  [
    '--import',
    join(testDir, 'support', 'setup.js'),
    '--test',
    '--test-concurrency=2',
    '--test-reporter=spec',
    ...files,
  ],
  {
    stdio: 'inherit',
    cwd: root,
    env: { ...process.env, CASTELLAN_TEST: '1' },
    timeout: LIMIT_MS,
    killSignal: 'SIGKILL',
  },
);
if (res.error?.code === 'ETIMEDOUT') {
  console.error(
    `run-tests: stopped after ${LIMIT_MS / 1000} s: a test file did not finish or exit (a handle left open?)`,
  );
}
process.exit(res.status ?? 1);
