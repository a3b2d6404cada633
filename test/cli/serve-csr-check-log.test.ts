// What `castellan serve` says at start about its P-256 CSR check (reportCsrCheck): a warning with
// the loader's reason when the native check is absent, a debug line when it serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reportCsrCheck } from '../../src/cli/serve/command.js';
import { createLogger } from '../../src/log.js';
import { NATIVE_P256 } from '../../src/pki/fast/native-p256.js';

type LogLine = Record<string, unknown> | undefined;

function logged(binding: Parameters<typeof reportCsrCheck>[0]): LogLine[] {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (l: string) => lines.push(l) },
  });
  reportCsrCheck(binding, logger);
  return lines.map((l) => JSON.parse(l) as LogLine);
}

test('without the native check: one warning that says why', () => {
  const reason = '/app/native/build/Release/castellan_native.node was not built (npm run build …)';
  const [line, ...rest] = logged({ reason });
  assert.equal(rest.length, 0);
  assert.ok(line);
  assert.equal(line.level, 40); // warn
  assert.equal(line.reason, reason);
  assert.match(String(line.msg), /checked with node:crypto: the native check is not loaded/);
});

test('with it: a debug line, no warning', () => {
  const [line, ...rest] = logged({ verify: () => 1 });
  assert.equal(rest.length, 0);
  assert.ok(line);
  assert.equal(line.level, 20); // debug
  assert.match(String(line.msg), /checked natively/);
  // This installation's own binding: a warning exactly when the loader gave a reason.
  const [own, ...more] = logged(NATIVE_P256);
  assert.equal(more.length, 0);
  assert.ok(own);
  assert.equal(own.level, NATIVE_P256.reason === undefined ? 20 : 40);
});
