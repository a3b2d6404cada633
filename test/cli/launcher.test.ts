// bin/castellan.js, the installed command, sizes libuv's thread pool to the cores before Node's
// ES module loader starts the pool (docs/performance.md), unless UV_THREADPOOL_SIZE is set.
// Measured from outside: the server's thread count (/proc/<pid>/task) moves with the pool size.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { binPath } from '../support/paths.js';
import { startServe } from '../server/support/serve-process.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Threads of a `castellan serve` started through bin/castellan.js with this pool setting. */
async function serveThreads(poolSize: string | undefined): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'castellan-launcher-'));
  dirs.push(dir);
  const env = { ...process.env };
  delete env['UV_THREADPOOL_SIZE'];
  if (poolSize !== undefined) env['UV_THREADPOOL_SIZE'] = poolSize;
  // No CSR check thread: its start-up would race the count.
  const serve = await startServe(['--data-dir', dir, '--csr-threads', '0'], dir, {
    entry: binPath,
    env,
  });
  try {
    return readdirSync(`/proc/${serve.child.pid}/task`).length;
  } finally {
    serve.child.kill('SIGTERM');
    await serve.exited;
  }
}

test('the pool is one thread per core unless UV_THREADPOOL_SIZE says otherwise', async () => {
  const cores = availableParallelism();
  // Three independent processes: started together, they take the time of one.
  const [unset, coresExplicit, threeMore] = await Promise.all([
    serveThreads(undefined),
    serveThreads(String(cores)),
    serveThreads(String(cores + 3)),
  ]);
  assert.equal(unset, coresExplicit, 'unset: as many pool threads as cores');
  assert.equal(threeMore, unset + 3, 'set: the setting wins');
});
