// A child process for test/reliability/crash-safe-state.test.ts: runs the local runtime's start
// (`serve` without --kube, no listeners) on a data dir and SIGKILLs itself just before its N-th
// filesystem change — as a crash, an OOM kill or a node drain would, at that exact moment.
//
//   node --import dist/test/support/setup.js start-killed-at.js <dataDir> <N>
//
// Prints {"changes": <count>, "serial": <the served CA's serial>} when it got through all of them
// alive (N beyond the last change).
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const [dataDir, killAtArg] = process.argv.slice(2);
if (dataDir === undefined || killAtArg === undefined) throw new Error('usage: <dataDir> <N>');
const killAt = Number(killAtArg);
let changes = 0;

// The calls that change the data dir (reads are not crash points). Replacing them on the
// CommonJS object and syncing updates every module's `import { rename } from 'node:fs/promises'`.
const promises = fs.promises as unknown as Record<string, (...args: unknown[]) => unknown>;
for (const name of ['open', 'writeFile', 'rename', 'link', 'mkdir', 'rmdir', 'rm', 'unlink']) {
  const original = promises[name];
  if (!original) continue;
  promises[name] = (...args: unknown[]) => {
    // `open` only changes the folder when it creates a file.
    const changesFolder = name !== 'open' || (typeof args[1] === 'string' && args[1] !== 'r');
    if (changesFolder && ++changes === killAt) process.kill(process.pid, 'SIGKILL');
    return original.apply(fs.promises, args);
  };
}
syncBuiltinESMExports();

const { startLocalRuntime } = await import('../../../src/cli/serve/local-runtime.js');
const { completeServeOptions } = await import('../../../src/cli/serve/options.js');
const { systemClock } = await import('../../../src/clock.js');
const { silentLogger } = await import('../../../src/log.js');
const runtime = await startLocalRuntime(completeServeOptions({ dataDir }), {
  clock: systemClock,
  logger: silentLogger,
  env: {},
});
await runtime.publishTrustBundle();
const serial = runtime.caState.current()?.bundle.signingCert.serialNumber;
await runtime.close();
process.stdout.write(JSON.stringify({ changes, serial }));
