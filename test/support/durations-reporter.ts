// A node:test reporter that writes, once the run ends, how long each test file took as JSON:
// { "test/e2e/rotation.test.ts": 21034, ... } (ms, its process's start-up, hooks and tests).
// scripts/run-tests.mjs --record-durations passes it next to the spec reporter and keeps the
// figures in test/durations.json, by which it starts the longest files first.
import { relative } from 'node:path';

interface TestEvent {
  type: string;
  data?: { file?: string; name?: string; details?: { duration_ms?: number } };
}

const root = new URL('../../..', import.meta.url).pathname;

/** dist/test/x.test.js (what the runner reports) → test/x.test.ts (what the record names). */
function sourceName(file: string): string {
  return relative(root, file)
    .replace(/^dist\//, '')
    .replace(/\.js$/, '.ts');
}

export default async function* durationsReporter(
  source: AsyncIterable<TestEvent>,
): AsyncGenerator<string> {
  const times = new Map<string, number>();
  for await (const event of source) {
    // Each file is a test named by its path; test:complete comes when it ends (test:pass and
    // test:fail come in the order the files were given).
    const { file, name, details } = event.data ?? {};
    if (event.type !== 'test:complete' || !file || name !== file) continue;
    if (details?.duration_ms !== undefined) {
      times.set(sourceName(file), Math.round(details.duration_ms));
    }
  }
  const sorted = [...times].sort(([a], [b]) => (a < b ? -1 : 1));
  yield `${JSON.stringify(Object.fromEntries(sorted), null, 2)}\n`;
}
