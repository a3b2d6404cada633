/**
 * The request path as Envoy's HTTP connection manager hands it to the filters (RBAC included),
 * under Istio's `meshConfig.pathNormalization`.
 *
 * Istio maps each mode onto three HttpConnectionManager options
 * (pilot/pkg/networking/core/listener_builder.go, buildHTTPConnectionManager):
 *
 * | mode                       | normalize_path | merge_slashes | path_with_escaped_slashes_action |
 * | -------------------------- | -------------- | ------------- | -------------------------------- |
 * | NONE                       | false          | false         | KEEP_UNCHANGED                   |
 * | BASE (and DEFAULT)         | true           | false         | KEEP_UNCHANGED                   |
 * | MERGE_SLASHES              | true           | true          | KEEP_UNCHANGED                   |
 * | DECODE_AND_MERGE_SLASHES   | true           | true          | UNESCAPE_AND_FORWARD             |
 *
 * and Envoy applies them in ConnectionManagerUtility::maybeNormalizePath, in this order: the
 * fragment is dropped; `%2F`/`%5C` are decoded (UNESCAPE_AND_FORWARD); the path is canonicalized
 * (PathUtil::canonicalPath: `;params` stripped from `.`/`..` segments, then Chromium's URL path
 * canonicalizer); slashes are merged (PathUtil::mergeSlashes). A path the canonicalizer refuses
 * is answered 400 before any filter runs. The query string is never touched.
 *
 * Written here because no npm URL library reproduces Envoy's snapshot of Chromium's path
 * canonicalizer (WHATWG parsers neither decode `%2E` segments the same way nor refuse `%00`);
 * each step is tested against Envoy's own cases (test/common/http/path_utility_test.cc).
 */

export const PATH_NORMALIZATIONS = [
  'NONE',
  'BASE',
  'MERGE_SLASHES',
  'DECODE_AND_MERGE_SLASHES',
] as const;
export type PathNormalization = (typeof PATH_NORMALIZATIONS)[number];

/** What the filters see of a request path, or why Envoy refused it before they ran. */
export type NormalizedPath =
  | {
      readonly ok: true;
      /** The `:path` header after normalization, query string included. */
      readonly path: string;
      /** `:path` without query and fragment: what RBAC's url_path matcher compares. */
      readonly urlPath: string;
    }
  | { readonly ok: false; readonly status: 400 | 404; readonly reason: string };

/** Applies Envoy's request path handling for one Istio pathNormalization mode. */
export function normalizeRequestPath(raw: string, mode: PathNormalization): NormalizedPath {
  // Most paths have nothing any mode changes: no dot, escape, backslash, query, fragment or `//`.
  if (PLAIN_PATH.test(raw) && (mode === 'NONE' || mode === 'BASE' || !raw.includes('//'))) {
    return { ok: true, path: raw, urlPath: raw };
  }
  // ActiveStream::decodeHeaders: only origin-form paths reach the filters.
  if (!raw.startsWith('/')) {
    return {
      ok: false,
      status: 404,
      reason: `the path "${raw}" does not start with "/": Envoy answers 404 before any filter`,
    };
  }
  // maybeNormalizePath: the fragment is thrown away (it never reaches a filter).
  const hash = raw.indexOf('#');
  let path = hash < 0 ? raw : raw.slice(0, hash);
  if (mode === 'DECODE_AND_MERGE_SLASHES') path = unescapeSlashes(path);
  if (mode !== 'NONE') {
    const canonical = canonicalPath(path);
    if (canonical === null) {
      return {
        ok: false,
        status: 400,
        reason: `Envoy cannot normalize the path "${raw}" (an escaped NUL, %00) and answers 400 before any filter`,
      };
    }
    path = canonical;
  }
  if (mode === 'MERGE_SLASHES' || mode === 'DECODE_AND_MERGE_SLASHES') path = mergeSlashes(path);
  return { ok: true, path, urlPath: removeQueryAndFragment(path) };
}

/** PathUtil::removeQueryAndFragment. */
export function removeQueryAndFragment(path: string): string {
  const q = path.search(/[?#]/);
  return q < 0 ? path : path.slice(0, q);
}

function splitQuery(path: string): [string, string] {
  const q = path.indexOf('?');
  return q < 0 ? [path, ''] : [path.slice(0, q), path.slice(q)];
}

/** PathUtil::unescapeSlashes: `%2F`/`%2f` → `/` and `%5C`/`%5c` → `\` before the query. */
export function unescapeSlashes(path: string): string {
  const [head, query] = splitQuery(path);
  if (!head.includes('%')) return path;
  return head.replace(/%2[fF]|%5[cC]/g, (m) => (m[1] === '2' ? '/' : '\\')) + query;
}

/** PathUtil::mergeSlashes: runs of `/` before the query become one, ends kept. */
export function mergeSlashes(path: string): string {
  const [head, query] = splitQuery(path);
  if (!head.includes('//')) return path;
  const prefix = head.startsWith('/') ? '/' : '';
  const suffix = head.endsWith('/') ? '/' : '';
  return `${prefix}${head
    .split('/')
    .filter((s) => s !== '')
    .join('/')}${suffix}${query}`;
}

/**
 * PathUtil::stripParametersFromDotSegments (Envoy 2026 security release, on by default with
 * normalize_path): `..;x` and `.;x` segments lose their parameters so that canonicalization
 * collapses them.
 */
export function stripParametersFromDotSegments(path: string): string {
  const cut = path.search(/[?#]/);
  const head = cut < 0 ? path : path.slice(0, cut);
  if (!head.includes('.;')) return path;
  const rest = cut < 0 ? '' : path.slice(cut);
  const segments = head
    .split('/')
    .map((s) => (s.startsWith('..;') ? '..' : s.startsWith('.;') ? '.' : s));
  return segments.join('/') + rest;
}

/** PathUtil::canonicalPath: the path before the query canonicalized; null when refused. */
export function canonicalPath(path: string): string | null {
  const [head, query] = splitQuery(stripParametersFromDotSegments(path));
  const canonical = canonicalizePath(head);
  return canonical === null ? null : canonical + query;
}

// Character classes of Envoy's snapshot of Chromium's url_canon_path.cc (kPathCharLookup).
const SPECIAL = 1;
const ESCAPE_BIT = 2;
const ESCAPE = ESCAPE_BIT | SPECIAL;
const UNESCAPE = 4;
const INVALID_BIT = 8;
const INVALID = INVALID_BIT | SPECIAL;

const PATH_CHAR = ((): Uint8Array => {
  const t = new Uint8Array(256).fill(ESCAPE); // controls, DEL and every high-bit byte
  t[0] = INVALID;
  for (const c of "!$&'()*+,/:;=@[]") t[c.charCodeAt(0)] = 0; // passed through as they are
  for (const c of '-_~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz') {
    t[c.charCodeAt(0)] = UNESCAPE; // unreserved: copied, and decoded when escaped
  }
  t['.'.charCodeAt(0)] = SPECIAL;
  return t;
})();

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const PERCENT = 0x25;
const DOT = 0x2e;
const HEX = '0123456789ABCDEF';

function isHex(b: number | undefined): boolean {
  return (
    b !== undefined &&
    ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66))
  );
}

function hexValue(b: number): number {
  return b <= 0x39 ? b - 0x30 : (b | 0x20) - 0x61 + 10;
}

/** The escaped byte at `at` (`%XY`), or -1 when there is no valid escape there. */
function decodeEscaped(bytes: ArrayLike<number>, at: number, end: number): number {
  if (at + 3 > end || !isHex(bytes[at + 1]) || !isHex(bytes[at + 2])) return -1;
  return (hexValue(bytes[at + 1] as number) << 4) | hexValue(bytes[at + 2] as number);
}

/** IsDot: 1 for `.`, 3 for `%2e`/`%2E`, else 0. */
function dotLength(bytes: Uint8Array, at: number, end: number): number {
  if (bytes[at] === DOT) return 1;
  if (
    bytes[at] === PERCENT &&
    at + 3 <= end &&
    bytes[at + 1] === 0x32 &&
    (bytes[at + 2] === 0x65 || bytes[at + 2] === 0x45)
  ) {
    return 3;
  }
  return 0;
}

function isUrlSlash(b: number | undefined): boolean {
  return b === SLASH || b === BACKSLASH;
}

type DotKind = 'name' | 'current' | 'parent';

/** ClassifyAfterDot: what the dot segment starting before `after` means, and what it consumed. */
function classifyAfterDot(bytes: Uint8Array, after: number, end: number): [DotKind, number] {
  if (after === end) return ['current', 0];
  if (isUrlSlash(bytes[after])) return ['current', 1];
  const second = dotLength(bytes, after, end);
  if (second > 0) {
    const next = after + second;
    if (next === end) return ['parent', second];
    if (isUrlSlash(bytes[next])) return ['parent', second + 1];
  }
  return ['name', 0];
}

/**
 * Chromium's CanonicalizePath as Envoy snapshotted it: a leading `/`, backslashes as slashes,
 * `.`/`..` segments (also escaped, `%2e`) resolved without going above the root, escaped
 * unreserved characters decoded, characters outside the path set escaped; an escaped NUL fails.
 * The input is read as UTF-8 bytes; the output is ASCII.
 */
function canonicalizePath(path: string): string | null {
  // Most paths are plain segments: nothing to resolve, decode or escape.
  if (PLAIN_PATH.test(path)) return path;
  const bytes = new TextEncoder().encode(path);
  const end = bytes.length;
  const out: number[] = [];
  if (end === 0) return '/';
  if (!isUrlSlash(bytes[0])) out.push(SLASH);
  let ok = true;
  let lastInvalidPercent = Number.MIN_SAFE_INTEGER;
  const pushEscaped = (b: number): void => {
    out.push(PERCENT, HEX.charCodeAt(b >> 4), HEX.charCodeAt(b & 15));
  };
  for (let i = 0; i < end; i++) {
    const ch = bytes[i] as number;
    const flags = PATH_CHAR[ch] as number;
    if (!(flags & SPECIAL)) {
      out.push(ch);
      continue;
    }
    const dot = dotLength(bytes, i, end);
    if (dot > 0) {
      if (out.length > 0 && out[out.length - 1] === SLASH) {
        const [kind, consumed] = classifyAfterDot(bytes, i + dot, end);
        if (kind === 'name') out.push(DOT);
        else if (kind === 'parent') backUpToPreviousSlash(out);
        i += dot - 1 + (kind === 'name' ? 0 : consumed);
      } else {
        out.push(DOT);
        i += dot - 1;
      }
    } else if (ch === BACKSLASH) {
      out.push(SLASH);
    } else if (ch === PERCENT) {
      const value = decodeEscaped(bytes, i, end);
      if (value < 0) {
        // Not an escape: kept as a bare '%', remembered for CheckForNestedEscapes.
        lastInvalidPercent = out.length;
        out.push(PERCENT);
        continue;
      }
      i += 2;
      const valueFlags = PATH_CHAR[value] as number;
      if (valueFlags & UNESCAPE) {
        out.push(value);
        if (lastInvalidPercent >= out.length - 3) {
          checkForNestedEscapes(bytes, i + 1, end, lastInvalidPercent, out);
        }
      } else {
        // Kept escaped exactly as written (hex case untouched).
        out.push(PERCENT, bytes[i - 1] as number, bytes[i] as number);
        if (valueFlags & INVALID_BIT) ok = false;
      }
    } else if (flags & INVALID_BIT) {
      pushEscaped(ch);
      ok = false;
    } else if (flags & ESCAPE_BIT) {
      pushEscaped(ch);
    }
  }
  return ok ? asciiString(out) : null;
}

/** A leading slash, then only characters copied unchanged, and no dot at all. */
const PLAIN_PATH = /^\/[\w\-~!$&'()*+,/:;=@[\]]*$/;

function asciiString(codes: readonly number[]): string {
  let s = '';
  for (let i = 0; i < codes.length; i += 4096) {
    s += String.fromCharCode(...codes.slice(i, i + 4096));
  }
  return s;
}

/** BackUpToPreviousSlash: drops the last segment; never above the first slash. */
function backUpToPreviousSlash(out: number[]): void {
  let i = out.length - 1;
  if (i === 0) return;
  i--;
  while (out[i] !== SLASH && i > 0) i--;
  out.length = i + 1;
}

/**
 * CheckForNestedEscapes: after decoding an escape right behind a bare '%', make sure the output
 * does not now spell a different escape (`%%30%30` must not become `%00`); if it would, that
 * '%' is written as `%25`.
 */
function checkForNestedEscapes(
  bytes: Uint8Array,
  next: number,
  end: number,
  lastInvalidPercent: number,
  out: number[],
): void {
  const length = out.length;
  const lastUnescaped = out[length - 1] as number;
  const appendNext = lastInvalidPercent === length - 2;
  if (appendNext) {
    if (next === end || (bytes[next] as number) >= 0x80) return;
    out.push(bytes[next] as number);
  }
  if (decodeEscaped(out, lastInvalidPercent, out.length) >= 0) {
    if (!appendNext) out.push(out[lastInvalidPercent + 1] as number);
    out[lastInvalidPercent + 1] = 0x32;
    out[lastInvalidPercent + 2] = 0x35;
    out.push(lastUnescaped);
  } else if (appendNext) {
    out.length = length;
  }
}
