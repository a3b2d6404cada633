// Builds native/ (the P-256 CSR check, native/p256_verify.c) with node-gyp, as `npm run build`
// and `npm ci` (prepare) run it. Idempotent: nothing is done when the addon is newer than its
// sources. A failed build is reported and does not fail the install: the CA then checks P-256
// CSRs with node:crypto, correct but slower (src/pki/fast/native-p256.ts says why it is absent,
// and `castellan serve` logs it). test/pki/fast/native-p256.test.ts fails where it should load.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// CASTELLAN_NATIVE_DIR: another copy of native/ (test/platform/build-native.test.ts).
const nativeDir =
  process.env.CASTELLAN_NATIVE_DIR ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
const addon = join(nativeDir, 'build', 'Release', 'castellan_native.node');
const sources = ['binding.gyp', 'p256_verify.c'].map((f) => join(nativeDir, f));

const mtime = (path) => statSync(path).mtimeMs;
if (existsSync(addon) && sources.every((s) => mtime(s) <= mtime(addon))) process.exit(0);

// npm hands its own node-gyp to the scripts it runs; outside npm, the one beside npm's CLI.
const nodeGyp =
  process.env.npm_config_node_gyp ??
  (process.env.npm_execpath
    ? join(
        dirname(process.env.npm_execpath),
        '..',
        'node_modules',
        'node-gyp',
        'bin',
        'node-gyp.js',
      )
    : undefined);
if (!nodeGyp || !existsSync(nodeGyp)) {
  warn('node-gyp was not found: run the build through npm (npm run build)');
} else {
  // Bounded: outside npm's nodedir setting node-gyp fetches Node's headers, which a closed
  // network would otherwise hold for ever. CASTELLAN_NATIVE_BUILD_TIMEOUT_MS: for the tests.
  const run = spawnSync(process.execPath, [nodeGyp, 'rebuild'], {
    cwd: nativeDir,
    encoding: 'utf8',
    timeout: Number(process.env.CASTELLAN_NATIVE_BUILD_TIMEOUT_MS ?? 300_000),
  });
  if (run.status !== 0) {
    process.stderr.write(run.stdout + run.stderr);
    warn(`node-gyp rebuild failed (${run.error?.message ?? `exit ${run.status}`}); output above`);
  }
}

function warn(why) {
  process.stderr.write(
    `castellan: the native P-256 CSR check was not built: ${why}. ` +
      'The CA checks P-256 CSRs with node:crypto instead: the same results, more CPU ' +
      '(docs/performance.md, "A native P-256 check").\n',
  );
}
