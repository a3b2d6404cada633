// Runs some of the suite again on another Node line, installed into .cache/node<major> by
// scripts/setup-node.sh (run by scripts/setup-test-deps.sh; linux-x64 only, elsewhere it skips).
// The machines and the rest of the suite run Node 20.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../support/paths.js';

const LINUX_X64 = process.platform === 'linux' && process.arch === 'x64';

/**
 * The tests whose outcome depends on the runtime (what run-tests.mjs matches: substrings of the
 * compiled paths). Node 24 changed how HTTP/2 servers close their sessions and end failed ones,
 * V8's young generation and OpenSSL (docs/performance.md, "On Node 24"); each of those broke
 * something here that Node 20 could not show. Left out: the PKCS#11 tests, which take their time
 * and exercise nothing a Node line changes (pkcs11js is an N-API addon, the same on all).
 */
export const RUNTIME_SENSITIVE: readonly string[] = [
  'test/server/ca-server.test', // graceful stop and HTTP/2 session close
  'test/reliability/connections.test', // sessions nghttp2 ended, handshakes, keepalive
  'test/cli/serve.test', // the process: SIGTERM drains calls in flight
  'test/cli/heap-growth.test', // V8 flags set at run time
  'test/cli/pretenuring.test', // the same
  'test/pki/fast/', // CSR key import paths by OpenSSL version, against the reference
  'test/server/csr-check', // the crypto thread and its V8 resource limits
  'test/charts/dockerfile.test', // the image's entrypoint flags
];

/**
 * One test: `files` (run-tests.mjs substrings) pass on `.cache/node<major>`, at least
 * `minPassed` of them. Skipped off linux-x64, or when that Node is not installed outside CI.
 */
export function passesOnNode(
  major: number,
  name: string,
  files: readonly string[],
  minPassed: number,
): void {
  const node = join(projectRoot, '.cache', `node${major}`, 'bin', 'node');
  test(
    name,
    {
      skip: !LINUX_X64
        ? `Node ${major} is fetched for linux-x64 only`
        : existsSync(node) || process.env['CI'] === 'true'
          ? false
          : `no Node ${major} in .cache/ (bash scripts/setup-node.sh ${major} installs it)`,
    },
    () => {
      assert.ok(existsSync(node), `${node} missing: CI runs scripts/setup-node.sh ${major} first`);
      const res = spawnSync(node, [join('scripts', 'run-tests.mjs'), ...files], {
        cwd: projectRoot,
        encoding: 'utf8',
        timeout: 5 * 60_000,
        maxBuffer: 64 * 1024 * 1024,
        // Not this runner's own variables (CASTELLAN_TEST is set again by run-tests.mjs); one
        // file at a time, beside the two this run has going.
        env: { ...process.env, NODE_TEST_CONTEXT: undefined, CASTELLAN_TEST_CONCURRENCY: '1' },
      });
      const summary = res.stdout
        .split('\n')
        .filter((l) => /^ℹ (tests|pass|fail)|^✖/.test(l))
        .join('\n');
      assert.equal(res.status, 0, `on Node ${major}:\n${summary}\n${res.stderr.slice(-2000)}`);
      const passed = /^ℹ pass (\d+)$/m.exec(res.stdout);
      assert.ok(passed && Number(passed[1]) >= minPassed, `on Node ${major}: ${summary}`);
    },
  );
}
