// An interrupted bench leaves nothing behind (bench/interrupt.ts): a SIGTERM to the bench alone,
// as `timeout` or a CI system sends it, while a case has `castellan serve` running. Before, the
// server ran on (reparented to init) and its data dir, CA key included, stayed in /tmp.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';

test('SIGTERM while a case runs: its servers stopped, its temporary dirs removed, exit 143', async () => {
  // The bench's own temporary dirs go under TMPDIR: a fresh one tells them apart.
  const tmp = mkdtempSync(join(tmpdir(), 'castellan-bench-interrupt-'));
  try {
    const bench = spawn(
      process.execPath,
      [join(projectRoot, 'dist', 'bench', 'main.js'), '--only', 'e2e serve start to /ready'],
      { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    bench.stderr.on('data', (d: Buffer) => (err += d.toString()));
    bench.stdout.resume();
    const exited = new Promise<number | string>((resolve) =>
      bench.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
    );
    const servers = (): string[] =>
      spawnSync('pgrep', ['-f', '--', `--data-dir ${tmp}/`], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean);
    await waitFor('a server of the case running', () => servers().length > 0, 30_000);
    assert.ok(readdirSync(tmp).some((d) => d.startsWith('castellan-bench-')));
    bench.kill('SIGTERM');
    assert.equal(await exited, 143, err);
    assert.match(err, /bench: SIGTERM: servers stopped, temporary files removed/);
    assert.deepEqual(readdirSync(tmp), [], 'no temporary dir left');
    await waitFor('no server left', () => servers().length === 0);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
