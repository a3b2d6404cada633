import { Writable } from 'node:stream';

/**
 * A log destination that keeps every line written to it (pino writes one JSON line per call),
 * for a test to read what a component logged or audited.
 */
export function logLinesDestination(): { destination: Writable; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { destination, lines };
}
