// The tests whose outcome depends on the runtime, run again on Node 24: the container image's
// runtime (Dockerfile), while the machines and the rest of the suite run Node 20. Node 24 changed
// how HTTP/2 servers close their sessions and end failed ones, V8's young generation and OpenSSL
// (docs/performance.md, "On Node 24"); each of those broke something here that Node 20 could not
// show. scripts/setup-node24.sh (run by scripts/setup-test-deps.sh) installs that Node in .cache/
// (linux-x64 only; elsewhere this test skips). Left out: the PKCS#11 tests, which take their time
// and exercise nothing Node 24 changed (pkcs11js is an N-API addon, the same on both).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../support/paths.js';

const NODE24 = join(projectRoot, '.cache', 'node24', 'bin', 'node');
const LINUX_X64 = process.platform === 'linux' && process.arch === 'x64';

/** What run-tests.mjs matches (substrings of the compiled paths). */
const RUNTIME_SENSITIVE = [
  'test/server/ca-server.test', // graceful stop and HTTP/2 session close
  'test/reliability/connections.test', // sessions nghttp2 ended, handshakes, keepalive
  'test/cli/serve.test', // the process: SIGTERM drains calls in flight
  'test/cli/heap-growth.test', // V8 flags set at run time
  'test/pki/fast/', // CSR key import paths by OpenSSL version, against the reference
  'test/server/csr-check', // the crypto thread and its V8 resource limits
  'test/charts/dockerfile.test', // the image's entrypoint flags
];

test(
  'the runtime-sensitive tests pass on Node 24, the image runtime',
  {
    skip: !LINUX_X64
      ? 'Node 24 is fetched for linux-x64 only'
      : existsSync(NODE24) || process.env['CI'] === 'true'
        ? false
        : 'no Node 24 in .cache/ (bash scripts/setup-node24.sh installs it)',
  },
  () => {
    assert.ok(existsSync(NODE24), `${NODE24} missing: CI runs scripts/setup-node24.sh first`);
    const res = spawnSync(NODE24, [join('scripts', 'run-tests.mjs'), ...RUNTIME_SENSITIVE], {
      cwd: projectRoot,
      encoding: 'utf8',
      timeout: 5 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
      // Not this runner's own variables (CASTELLAN_TEST is set again by run-tests.mjs); one file
      // at a time, beside the two this run has going.
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, CASTELLAN_TEST_CONCURRENCY: '1' },
    });
    const summary = res.stdout
      .split('\n')
      .filter((l) => /^ℹ (tests|pass|fail)|^✖/.test(l))
      .join('\n');
    assert.equal(res.status, 0, `on Node 24:\n${summary}\n${res.stderr.slice(-2000)}`);
    const passed = /^ℹ pass (\d+)$/m.exec(res.stdout);
    assert.ok(passed && Number(passed[1]) > 40, `on Node 24: ${summary}`);
  },
);
