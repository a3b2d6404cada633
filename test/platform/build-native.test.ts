// scripts/build-native.mjs, which `npm run build` and `npm ci` run to compile native/: it does
// nothing when the addon is newer than its sources, rebuilds when a source is newer, and when
// node-gyp fails or cannot be found it says so and lets the install go on (the CA then uses
// node:crypto). A fake node-gyp records how it was called; the sources are a temp copy.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../support/paths.js';
import { tmp } from '../server/support/client.js';

const SCRIPT = join(projectRoot, 'scripts', 'build-native.mjs');

/** A copy of native/'s sources, and optionally an addon built `addonAge` seconds after them. */
function nativeCopy(addonAge?: number): { dir: string; addon: string } {
  const dir = tmp();
  for (const f of ['binding.gyp', 'p256_verify.c'])
    cpSync(join(projectRoot, 'native', f), join(dir, f));
  const addon = join(dir, 'build', 'Release', 'castellan_native.node');
  const sourcesAt = new Date(Date.now() - 3_600_000);
  for (const f of ['binding.gyp', 'p256_verify.c']) utimesSync(join(dir, f), sourcesAt, sourcesAt);
  if (addonAge !== undefined) {
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    writeFileSync(addon, 'an addon');
    const at = new Date(sourcesAt.getTime() + addonAge * 1000);
    utimesSync(addon, at, at);
  }
  return { dir, addon };
}

/** A node-gyp that records its arguments and directory in `log`, then exits with `code`. */
function fakeNodeGyp(log: string, code: number): string {
  const path = join(tmp(), 'node-gyp.js');
  writeFileSync(
    path,
    `require('node:fs').writeFileSync(${JSON.stringify(log)}, JSON.stringify({ args: process.argv.slice(2), cwd: process.cwd() }));\n` +
      `if (${code}) { console.log('gyp info it worked if it ends with ok'); console.error('gyp ERR! not ok'); }\n` +
      `process.exit(${code});\n`,
  );
  return path;
}

function build(env: Record<string, string | undefined>): { status: number | null; stderr: string } {
  const clean = { ...process.env };
  delete clean.npm_config_node_gyp;
  delete clean.npm_execpath;
  const res = spawnSync(process.execPath, [SCRIPT], {
    encoding: 'utf8',
    env: { ...clean, ...env },
    timeout: 60_000,
  });
  return { status: res.status, stderr: res.stderr };
}

describe('scripts/build-native.mjs', () => {
  test('an addon newer than its sources: nothing is run', () => {
    const { dir } = nativeCopy(60);
    const log = join(tmp(), 'called.json');
    const r = build({ CASTELLAN_NATIVE_DIR: dir, npm_config_node_gyp: fakeNodeGyp(log, 0) });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(existsSync(log), false, 'node-gyp was not run');
    assert.equal(r.stderr, '');
  });

  test('a source newer than the addon, or no addon: node-gyp rebuild in native/', () => {
    for (const age of [-60, undefined]) {
      const { dir } = nativeCopy(age);
      const log = join(tmp(), 'called.json');
      const r = build({ CASTELLAN_NATIVE_DIR: dir, npm_config_node_gyp: fakeNodeGyp(log, 0) });
      assert.equal(r.status, 0, r.stderr);
      const called = JSON.parse(readFileSync(log, 'utf8')) as { args: string[]; cwd: string };
      assert.deepEqual(called.args, ['rebuild']);
      assert.equal(called.cwd, dir);
    }
  });

  test('node-gyp fails: its output and why, and the install goes on (exit 0)', () => {
    const { dir } = nativeCopy();
    const log = join(tmp(), 'called.json');
    const r = build({ CASTELLAN_NATIVE_DIR: dir, npm_config_node_gyp: fakeNodeGyp(log, 1) });
    assert.equal(r.status, 0);
    assert.match(r.stderr, /gyp ERR! not ok/);
    assert.match(
      r.stderr,
      /the native P-256 CSR check was not built: node-gyp rebuild failed \(exit 1\); output above\. The CA checks P-256 CSRs with node:crypto instead/,
    );
  });

  test('a node-gyp that hangs is stopped at the bound, and the install goes on', () => {
    const { dir } = nativeCopy();
    const hanging = join(tmp(), 'node-gyp.js');
    writeFileSync(hanging, 'setTimeout(() => {}, 60_000);\n');
    const started = Date.now();
    const r = build({
      CASTELLAN_NATIVE_DIR: dir,
      npm_config_node_gyp: hanging,
      CASTELLAN_NATIVE_BUILD_TIMEOUT_MS: '500',
    });
    assert.equal(r.status, 0);
    assert.ok(Date.now() - started < 30_000, 'stopped long before the hanging node-gyp would end');
    assert.match(r.stderr, /node-gyp rebuild failed \(spawnSync .* ETIMEDOUT\)/);
  });

  test('no node-gyp to be found (run outside npm): said so, exit 0', () => {
    const { dir } = nativeCopy();
    const r = build({ CASTELLAN_NATIVE_DIR: dir });
    assert.equal(r.status, 0);
    assert.match(r.stderr, /node-gyp was not found: run the build through npm \(npm run build\)/);
    // npm's own path given, but no node-gyp beside it.
    const r2 = build({ CASTELLAN_NATIVE_DIR: dir, npm_execpath: join(tmp(), 'bin', 'npm-cli.js') });
    assert.match(r2.stderr, /node-gyp was not found/);
  });
});
