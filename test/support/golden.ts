import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** The one switch that rewrites golden files: `UPDATE_GOLDEN=1 npm run test:only`. */
export const UPDATING_GOLDEN = process.env['UPDATE_GOLDEN'] === '1';

/** Compares generated text with its golden file, or rewrites the file under UPDATE_GOLDEN=1. */
export function assertGolden(actual: string, file: string): void {
  if (UPDATING_GOLDEN) writeFileSync(file, actual);
  assert.ok(existsSync(file), `missing golden file ${file}: run with UPDATE_GOLDEN=1`);
  assert.equal(
    actual,
    readFileSync(file, 'utf8'),
    `${file} differs: rerun with UPDATE_GOLDEN=1 if intended`,
  );
}
