#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with Node's own test runner.
// Usage: node scripts/run-tests.mjs [--record-durations] [substring ...]
//   substring: only files whose path contains one of them.
//   --record-durations: also keep each file's time in test/durations.json (the files run, the
//   others left as they were; commit it when a long file was added or made short).
//
// Files start longest first, by test/durations.json: the runner takes them in the order given,
// two at a time, and a long file started last keeps one lane busy after the other has run dry.
// Files the record does not know yet start first (they may be long); the rest by name.
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const testDir = join(root, 'dist', 'test');
const durationsFile = join(root, 'test', 'durations.json');
const measuredFile = join(testDir, 'durations.measured.json');
const args = process.argv.slice(2);
const record = args.includes('--record-durations');
const filters = args.filter((a) => a !== '--record-durations');

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

/** dist/test/x.test.js → test/x.test.ts, the name test/durations.json uses. */
const sourceName = (file) =>
  relative(root, file)
    .replace(/^dist\//, '')
    .replace(/\.js$/, '.ts');

const recorded = existsSync(durationsFile) ? JSON.parse(readFileSync(durationsFile, 'utf8')) : {};
const known = (file) => recorded[sourceName(file)] ?? Infinity;

// tsc's incremental build never deletes outputs: a compiled test whose source was renamed or
// removed would still run (and pass or fail for code that no longer exists). Only compiled tests
// with a source file count.
let files = walk(testDir)
  .filter((f) => existsSync(join(root, relative(join(root, 'dist'), f)).replace(/\.js$/, '.ts')))
  .sort();
if (filters.length) files = files.filter((f) => filters.some((s) => relative(root, f).includes(s)));
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
files.sort((a, b) => known(b) - known(a) || (a < b ? -1 : 1));

// The whole run is bounded (the suite takes ~1.5 min): a test file whose process never exits
// (a server or timer left open) fails the run with a clear line instead of hanging CI.
const LIMIT_MS = Number(process.env.CASTELLAN_TEST_LIMIT_MS ?? 9 * 60_000);
// Test files at once: one per core here. A run started from inside another (test/platform/
// node24.test.ts) asks for 1, so the two runs together keep to the machine's two cores.
const CONCURRENCY = Number(process.env.CASTELLAN_TEST_CONCURRENCY ?? 2);
const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout'];
if (record) {
  rmSync(measuredFile, { force: true });
  reporters.push(
    `--test-reporter=${join(testDir, 'support', 'durations-reporter.js')}`,
    `--test-reporter-destination=${measuredFile}`,
  );
}
const res = spawnSync(
  process.execPath,
  [
    '--import',
    join(testDir, 'support', 'setup.js'),
    '--test',
    `--test-concurrency=${CONCURRENCY}`,
    ...reporters,
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
} else if (record) {
  // Written by the reporter when the run ends; a run cut short leaves the record as it was.
  const measured = existsSync(measuredFile) ? readFileSync(measuredFile, 'utf8') : '';
  if (measured.trim() === '') {
    console.error('run-tests: no file times measured; test/durations.json left as it was');
  } else {
    const all = new Set(walk(testDir).map(sourceName));
    const merged = Object.entries({ ...recorded, ...JSON.parse(measured) })
      .filter(([file]) => all.has(file))
      .sort(([a], [b]) => (a < b ? -1 : 1));
    writeFileSync(durationsFile, `${JSON.stringify(Object.fromEntries(merged), null, 2)}\n`);
    console.log(`run-tests: file times written to ${relative(root, durationsFile)}`);
  }
}
process.exit(res.status ?? 1);
