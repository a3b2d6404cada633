// How `castellan serve` stops when it is not asked at a quiet moment: a SIGTERM during start-up,
// and its output going away (a closed pipe). Both once left a process that never exited
// (src/cli/serve/app.ts ServeApp.start, src/cli/serve/signals.ts stopSignal).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { binPath } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';
import { tmp } from '../server/support/client.js';

/** Generous: a loaded machine starts serve in 1–3 s. */
const EXIT_MS = 20_000;

const SERVE_ARGS = ['--grpc-addr', '127.0.0.1:0', '--monitoring-addr', '127.0.0.1:0'];

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** The child's exit, or undefined if it is still running after EXIT_MS (then it is killed). */
async function exitOf(child: ChildProcess): Promise<Exit | undefined> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return { code: child.exitCode, signal: child.signalCode };
  }
  let exited: Exit | undefined;
  child.once('exit', (code, signal) => (exited = { code, signal }));
  try {
    await waitFor('serve to exit', () => exited !== undefined, EXIT_MS);
  } catch {
    child.kill('SIGKILL');
    await once(child, 'exit');
    return undefined;
  }
  return exited;
}

describe('castellan serve stops', () => {
  for (const line of ['CA loaded', 'monitoring listening', 'serving certificate issued']) {
    test(`SIGTERM right after "${line}" (start-up): nothing is left listening, exit 0`, async () => {
      const child = spawn(
        process.execPath,
        [binPath, 'serve', '--data-dir', tmp(), ...SERVE_ARGS],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stderr = '';
      let sent = false;
      child.stdout.resume();
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (!sent && stderr.includes(`"msg":"${line}`)) {
          sent = true;
          child.kill('SIGTERM');
        }
      });
      const exit = await exitOf(child);
      assert.ok(sent, `never saw "${line}": ${stderr.slice(-2000)}`);
      assert.deepEqual(
        exit,
        { code: 0, signal: null },
        `serve did not exit: ${stderr.slice(-2000)}`,
      );
      assert.match(stderr, /"msg":"stopped"/);
      // Nothing opens once the stop was asked for.
      const asked = stderr.indexOf('"msg":"shutting down');
      assert.ok(asked >= 0, stderr.slice(-2000));
      assert.doesNotMatch(stderr.slice(asked), /listening"/, 'a listener opened after the stop');
    });
  }

  test('stderr alone closed (the audit lines can no longer be written), stdout still read: serve stops, exit 1', async () => {
    const child = spawn(process.execPath, [binPath, 'serve', '--data-dir', tmp(), ...SERVE_ARGS], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.resume();
    child.stderr.once('data', () => child.stderr.destroy());
    const exit = await exitOf(child);
    assert.deepEqual(exit, { code: 1, signal: null });
  });

  // `castellan serve 2>&1 | head -3`: stdout and stderr on one pipe whose reader goes away.
  // Before: after 2 or 3 lines the start line's write threw EPIPE, and on the way out
  // sonic-boom's synchronous flush of the buffered log lines retried the failed write forever —
  // serve neither served nor exited, and SIGTERM could not stop it.
  for (const lines of [1, 2, 3]) {
    test(`stdout and stderr on one pipe closed after ${lines} line(s): serve stops, exit 1`, async () => {
      const dir = tmp();
      const command = `exec "${process.execPath}" "${binPath}" serve --data-dir "${dir}" ${SERVE_ARGS.join(' ')} 2>&1`;
      const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'ignore'] });
      let seen = '';
      child.stdout.on('data', (d: Buffer) => {
        seen += d.toString();
        if (seen.split('\n').length > lines) child.stdout.destroy();
      });
      const exit = await exitOf(child);
      assert.deepEqual(exit, { code: 1, signal: null }, `serve did not exit; it wrote: ${seen}`);
    });
  }
});
