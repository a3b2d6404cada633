import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets a heap's old generation grow past what survived its last full collection
 * before the next one, in percent, while `castellan serve` runs (both isolates: the event loop
 * and the crypto thread).
 *
 * V8's own factor is dynamic, up to 4× (300%) on a machine with this much memory, and under
 * sustained load it stays high. The garbage a CA leaves in the old generation is small in the JS
 * heap, but it holds native memory until a full collection frees it: node:http2 hands every
 * request header value over as an external string made directly in the old generation, each
 * holding nghttp2's buffer, and the crypto thread's CryptoKey of every CSR holds an OpenSSL key.
 * With the default, the server's resident memory reached 218–255 MB at P-256 c=64 (15 s runs);
 * at 70% it stayed at 158–178 MB, certs/s within the run-to-run noise, p999 lower (shorter full
 * collections), p99 the same or a few ms higher (more of them): docs/performance.md, "Resident
 * memory under load". 100% gave 190 MB; 50% little less than 70% for more GC work.
 *
 * V8 reads this flag each time it sets a heap's next limit, so setting it at run time works
 * (test/cli/heap-growth.test.ts checks that on this Node); flags V8 reads only when an isolate is
 * made, such as --max-semi-space-size, would need a second node process.
 *
 * It bounds the old generation only. Node 24's V8 also grows the young generation to 64 MB
 * semi-spaces here (Node 20's stop at 16), and that alone took serve to 269–275 MB at P-256 c=64;
 * with `NODE_OPTIONS=--max-semi-space-size=16` (which node accepts there) 198–204 MB, at the same
 * rate (docs/performance.md, "On Node 24").
 */
export const SERVE_HEAP_GROWING_PERCENT = 70;

/** `--heap-growing-percent` as node accepts it (one or two dashes; dashes or underscores). */
const GROWING_FLAG = /^--?heap[-_]growing[-_]percent(=|$)/;

/** What limitHeapGrowth did: set our value, or left the one node was started with. */
export type HeapGrowth =
  | { readonly source: 'castellan'; readonly percent: number }
  | { readonly source: 'node-flag'; readonly flag: string };

/**
 * Sets V8's old-generation growth for serving, unless node was started with its own
 * `--heap-growing-percent` (node refuses the flag in NODE_OPTIONS, so node's arguments are the
 * one place an operator sets it). Call before serving starts.
 */
export function limitHeapGrowth(
  execArgv: readonly string[],
  setFlags: (flags: string) => void = setFlagsFromString,
): HeapGrowth {
  const given = execArgv.find((a) => GROWING_FLAG.test(a));
  if (given !== undefined) return { source: 'node-flag', flag: given };
  setFlags(`--heap-growing-percent=${SERVE_HEAP_GROWING_PERCENT}`);
  return { source: 'castellan', percent: SERVE_HEAP_GROWING_PERCENT };
}
