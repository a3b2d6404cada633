import { setFlagsFromString } from 'node:v8';

/**
 * Turns off V8's allocation-site pretenuring while `castellan serve` runs (both isolates: the
 * event loop and the crypto thread; V8's flags are the process's).
 *
 * Pretenuring is V8's guess that what one allocation site makes lives long: once most of a
 * site's objects have survived a young-generation collection, V8 makes the site's next objects
 * directly in the old generation. A CA's calls live about as long as one young-generation cycle
 * under load (≈ 10 ms in flight, a collection every ≈ 100 ms), so some sites sometimes cross
 * the threshold, and then it goes wrong for the rest of the process: a call's objects made in the
 * old generation point at the rest of the call, which therefore survives the young collections
 * too and is promoted; the old generation fills with finished calls, and the full collections
 * that free them pause the event loop. Whether a run tipped into it was chance: at P-256 c=64,
 * with pretenuring the event loop promoted 0.9–1.3 MB per young collection (≈ 2.4 KB per call),
 * scavenges paused it for 3.1–3.6 ms, and traced 10 s runs had 9–11 full collections; without,
 * 9–65 KB, 1.1–1.4 ms, and one. docs/performance.md, "Pretenuring", has the runs.
 *
 * Like --heap-growing-percent (./heap-growth.ts) it is read at run time: V8 consults it each time
 * it weighs a site's survival (test/cli/pretenuring.test.ts checks that on this Node).
 */
// V8's parser takes one or two dashes, and `no` with or without a separator after it.
const PRETENURING_FLAG = /^--?(no[-_]?)?allocation[-_]site[-_]pretenuring$/;

/** What stopPretenuring did: turned it off, or left the operator's flag. */
export type Pretenuring =
  | { readonly source: 'castellan'; readonly enabled: false }
  | { readonly source: 'node-flag'; readonly flag: string };

/**
 * Turns pretenuring off, unless node was started with its own `--[no-]allocation-site-
 * pretenuring` (node refuses V8 flags in NODE_OPTIONS, so node's arguments are the one place an
 * operator sets it). Call before serving starts.
 */
export function stopPretenuring(
  execArgv: readonly string[],
  setFlags: (flags: string) => void = setFlagsFromString,
): Pretenuring {
  const given = execArgv.find((a) => PRETENURING_FLAG.test(a));
  if (given !== undefined) return { source: 'node-flag', flag: given };
  setFlags('--no-allocation-site-pretenuring');
  return { source: 'castellan', enabled: false };
}
