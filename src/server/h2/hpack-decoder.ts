// HPACK (RFC 7541) header block decoder for the CA port's HTTP/2 server (./connection.ts).
//
// Written from the RFC. What it does, and where it is strict or loose:
// - Static table (Appendix A), dynamic table with eviction by size (entry = name + value + 32
//   octets), all four representations and the dynamic table size update (only at the start of a
//   block, at most the SETTINGS_HEADER_TABLE_SIZE we advertise).
// - Integers: at most 4 continuation octets (28 bits beyond the prefix); more is an error, even
//   an over-long encoding of a small number (an implementation limit, RFC 7541 5.1).
// - Huffman (Appendix B): a byte-at-a-time state machine built once at module load (256 states,
//   the internal nodes of the code tree, x 256 input octets -> next state + up to two symbols).
//   EOS in a string, padding longer than 7 bits or padding that is not all ones: errors (5.2).
// - Names and values are latin1 strings. A name with an uppercase ASCII letter is an error
//   (RFC 9113 8.2.1); no other field validation is done here (that is the caller's job).
// - Allocation: static-table strings are constants; a dynamic-table entry's strings are made once
//   when inserted and every indexed hit returns those very strings. Literal values that are not
//   indexed (nghttp2 never indexes :path) go through a small direct-mapped cache keyed by the raw
//   encoded octets (compared byte for byte), so a repeated literal is neither Huffman-decoded nor
//   allocated again.
// - Any failure throws HpackError (the caller answers COMPRESSION_ERROR and drops the
//   connection: the dynamic table is not restored after a failure part-way through a block).

// Huffman code (RFC 7541 Appendix B), index = symbol, 256 = EOS. Exported for the tests, which
// encode with it.
export const HUFFMAN_CODES: readonly number[] = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8,
  0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed,
  0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4,
  0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, 0x14, 0x3f8, 0x3f9,
  0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18, 0x0, 0x1,
  0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc, 0x1ffa,
  0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b,
  0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, 0x2b,
  0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd,
  0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, 0x3fffd6,
  0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf, 0xffffec, 0xffffed,
  0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 0x7fffe4, 0x1fffdc, 0x3fffd8,
  0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc,
  0x7fffe8, 0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf,
  0x7fffeb, 0x7fffec, 0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee,
  0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec, 0x3ffffe2,
  0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2, 0x1fffe3,
  0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5, 0x3ffffe8,
  0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6,
  0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4,
  0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8,
  0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0,
  0x3ffffee, 0x3fffffff,
];

export const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
  28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5,
  6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6,
  7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23,
  23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22,
  22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22,
  23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27,
  27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25,
  24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/** Any HPACK decoding failure; the caller treats it as a connection error COMPRESSION_ERROR. */
export class HpackError extends Error {
  constructor(message: string) {
    super(`HPACK: ${message}`);
    this.name = 'HpackError';
  }
}

// ---- Static table (RFC 7541 Appendix A), index 1..61; slot 0 unused. ----

const STATIC_TABLE: readonly (readonly [string, string])[] = [
  ['', ''],
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = 61;
const STATIC_NAMES: readonly string[] = STATIC_TABLE.map((e) => e[0]);
const STATIC_VALUES: readonly string[] = STATIC_TABLE.map((e) => e[1]);

// ---- Huffman decoding (RFC 7541 Appendix B). ----

/** Table entry: bits 0-7 next state, 8-15 first symbol, 16-23 second symbol, 24-25 symbol count. */
const HUFF_FAIL = 1 << 26;
/** [state << 8 | octet] -> entry; states are the 256 internal nodes of the code tree, 0 = root. */
const HUFF_TABLE = new Uint32Array(256 * 256);
/** States a string may end in: the root, or 1..7 bits down the all-ones (EOS) path. */
const HUFF_ACCEPT = new Uint8Array(256);

(function buildHuffmanDecoder(): void {
  // child[node * 2 + bit]: > 0 internal node, < 0 leaf -(symbol + 1), 0 not yet made.
  const child = new Int32Array(256 * 2);
  let nodes = 1;
  for (let sym = 0; sym <= 256; sym++) {
    const code = HUFFMAN_CODES[sym] as number;
    const len = HUFFMAN_LENGTHS[sym] as number;
    let node = 0;
    for (let i = len - 1; i > 0; i--) {
      const slot = node * 2 + ((code >>> i) & 1);
      if (child[slot] === 0) child[slot] = nodes++;
      node = child[slot] as number;
    }
    child[node * 2 + (code & 1)] = -(sym + 1);
  }
  if (nodes !== 256) throw new Error(`HPACK Huffman table: ${nodes} internal nodes, not 256`);
  for (let node = 0, depth = 0; depth <= 7; depth++, node = child[node * 2 + 1] as number) {
    HUFF_ACCEPT[node] = 1;
  }
  for (let state = 0; state < 256; state++) {
    for (let octet = 0; octet < 256; octet++) {
      let node = state;
      let count = 0;
      let syms = 0;
      let entry = -1;
      for (let bit = 7; bit >= 0; bit--) {
        const next = child[node * 2 + ((octet >>> bit) & 1)] as number;
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -next - 1;
        if (sym === 256) {
          entry = HUFF_FAIL;
          break;
        }
        syms |= sym << (8 + 8 * count++);
        node = 0;
      }
      HUFF_TABLE[(state << 8) | octet] = entry === -1 ? node | syms | (count << 24) : entry;
    }
  }
})();

interface Latin1Sliceable {
  readonly latin1Slice: (this: Uint8Array, start: number, end: number) => string;
}
/** Buffer's native latin1 decoder; works on any Uint8Array as `this`. */
const latin1Slice = (Buffer.prototype as unknown as Latin1Sliceable).latin1Slice;

let huffOut = Buffer.allocUnsafe(4096);

function huffmanDecode(src: Uint8Array, start: number, end: number): string {
  // Shortest code is 5 bits: at most 8/5 symbols per octet.
  const most = (((end - start) * 8) / 5 + 1) | 0;
  if (huffOut.length < most) huffOut = Buffer.allocUnsafe(most);
  const out = huffOut;
  const table = HUFF_TABLE;
  let state = 0;
  let o = 0;
  for (let i = start; i < end; i++) {
    const e = table[(state << 8) | (src[i] as number)] as number;
    if (e >= HUFF_FAIL) throw new HpackError('EOS symbol in a Huffman-encoded string');
    const n = e >>> 24;
    if (n !== 0) {
      out[o++] = (e >>> 8) & 0xff;
      if (n === 2) out[o++] = (e >>> 16) & 0xff;
    }
    state = e & 0xff;
  }
  if (HUFF_ACCEPT[state] === 0) {
    throw new HpackError(
      'Huffman padding longer than 7 bits or not the most significant bits of EOS',
    );
  }
  return latin1Slice.call(out, 0, o);
}

function rawString(src: Uint8Array, start: number, end: number): string {
  return latin1Slice.call(src, start, end);
}

function checkName(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) throw new HpackError(`uppercase letter in header name "${name}"`);
  }
  return name;
}

// ---- The decoder. ----

/**
 * Literal-string cache: 8 slots in sets of two, literals up to 2 KiB encoded (a service-account
 * token, which nghttp2 sends never-indexed, fits): at most ≈ 32 KiB per connection, keys and
 * strings, small beside what its open streams may hold (connection.ts MAX_SESSION_BYTES). Before
 * the sets, `:path` and the token could share a slot and evict each other at every request.
 */
const CACHE_SLOTS = 8;
const CACHE_MAX_OCTETS = 2048;
const NO_KEY = Buffer.alloc(0);
/** Longer cached strings are compared natively (memcmp); shorter ones in a JS loop. */
const NATIVE_COMPARE_OCTETS = 48;

export interface HpackDecoderOptions {
  /** SETTINGS_HEADER_TABLE_SIZE we advertise (default 4096): the most a size update may ask. */
  maxTableSize?: number;
  /** Most header list bytes (name + value + 32 per field) in one block; default 64 KiB. */
  maxHeaderListBytes?: number;
}

export class HpackDecoder {
  private readonly maxTableSize: number;
  private readonly maxHeaderListBytes: number;
  /** Current dynamic table size limit (last size update, else maxTableSize). */
  private limit: number;
  /** Octets in the dynamic table (RFC 7541 4.1). */
  private bytes = 0;
  /** Ring of entries: `head` is the newest, `count` entries going back from it. */
  private readonly names: string[];
  private readonly values: string[];
  private readonly capacity: number;
  private head = 0;
  private count = 0;
  /** Read position in the block being decoded. */
  private pos = 0;
  private readonly cacheKeys: Buffer[] = new Array<Buffer>(CACHE_SLOTS).fill(NO_KEY);
  private readonly cacheHuff = new Uint8Array(CACHE_SLOTS);
  private readonly cacheStrings: string[] = new Array<string>(CACHE_SLOTS).fill('');
  /** Per pair of slots, the one used last (the other is replaced on a miss). */
  private readonly cacheRecent = new Uint8Array(CACHE_SLOTS >> 1);

  constructor(options: HpackDecoderOptions = {}) {
    this.maxTableSize = options.maxTableSize ?? 4096;
    this.maxHeaderListBytes = options.maxHeaderListBytes ?? 64 * 1024;
    this.limit = this.maxTableSize;
    // Every entry takes at least 32 octets.
    this.capacity = Math.floor(this.maxTableSize / 32) + 1;
    this.names = new Array<string>(this.capacity).fill('');
    this.values = new Array<string>(this.capacity).fill('');
  }

  /** The header list size (RFC 7541 4.1: name + value + 32 per field) of the last block decoded. */
  lastListBytes = 0;

  /** Decodes one complete header block. Returns flat [name0, value0, name1, value1, ...]. */
  decode(block: Uint8Array): string[] {
    const out: string[] = [];
    const end = block.length;
    let listBytes = 0;
    this.pos = 0;
    // Dynamic table size updates: only at the start of a block (RFC 7541 4.2).
    while (this.pos < end && ((block[this.pos] as number) & 0xe0) === 0x20) {
      const size = this.readInt(block, 5);
      if (size > this.maxTableSize) {
        throw new HpackError(
          `table size update to ${size}, above the ${this.maxTableSize} allowed`,
        );
      }
      this.limit = size;
      this.evictTo(size);
    }
    while (this.pos < end) {
      const b = block[this.pos] as number;
      let name: string;
      let value: string;
      if (b >= 0x80) {
        // Indexed header field (6.1).
        let index = b & 0x7f;
        if (index === 0x7f) index = this.readInt(block, 7);
        else this.pos++;
        if (index === 0) throw new HpackError('index 0');
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index] as string;
          value = STATIC_VALUES[index] as string;
        } else {
          const slot = this.slotOf(index);
          name = this.names[slot] as string;
          value = this.values[slot] as string;
        }
      } else if (b >= 0x40) {
        // Literal with incremental indexing (6.2.1).
        const index = this.readInt(block, 6);
        name = index === 0 ? checkName(this.readString(block)) : this.nameAt(index);
        value = this.readString(block);
        this.insert(name, value);
      } else if (b >= 0x20) {
        throw new HpackError('dynamic table size update after the start of the block');
      } else {
        // Literal without indexing (6.2.2) or never indexed (6.2.3): 4-bit prefix.
        const index = this.readInt(block, 4);
        name = index === 0 ? checkName(this.readCachedString(block)) : this.nameAt(index);
        value = this.readCachedString(block);
      }
      listBytes += name.length + value.length + 32;
      if (listBytes > this.maxHeaderListBytes) {
        throw new HpackError(`header list above ${this.maxHeaderListBytes} bytes`);
      }
      out.push(name, value);
    }
    this.lastListBytes = listBytes;
    return out;
  }

  /** Octets in the dynamic table now (for tests). */
  get dynamicTableSize(): number {
    return this.bytes;
  }

  /** The dynamic table, newest first (for tests). */
  dynamicTableEntries(): [string, string][] {
    const entries: [string, string][] = [];
    for (let i = 0; i < this.count; i++) {
      const slot = this.slotOf(STATIC_COUNT + 1 + i);
      entries.push([this.names[slot] as string, this.values[slot] as string]);
    }
    return entries;
  }

  /** Ring slot of dynamic index `index` (62 = newest); HpackError when out of range. */
  private slotOf(index: number): number {
    const back = index - STATIC_COUNT - 1;
    if (back >= this.count) throw new HpackError(`index ${index} beyond the table`);
    const slot = this.head - back;
    return slot < 0 ? slot + this.capacity : slot;
  }

  private nameAt(index: number): string {
    return index <= STATIC_COUNT
      ? (STATIC_NAMES[index] as string)
      : (this.names[this.slotOf(index)] as string);
  }

  /** Integer with an N-bit prefix (5.1) at this.pos (which is < block.length). */
  private readInt(block: Uint8Array, prefixBits: number): number {
    const end = block.length;
    let p = this.pos;
    const mask = (1 << prefixBits) - 1;
    let value = (block[p++] as number) & mask;
    if (value === mask) {
      let shift = 0;
      let b: number;
      do {
        if (p >= end) throw new HpackError('truncated integer');
        if (shift > 21) throw new HpackError('integer too large');
        b = block[p++] as number;
        value += (b & 0x7f) << shift;
        shift += 7;
      } while (b & 0x80);
    }
    this.pos = p;
    return value;
  }

  /** String literal (5.2): sets this.pos past it; returns [start, end) via the fields below. */
  private strStart = 0;
  private strHuff = 0;
  private stringBounds(block: Uint8Array): number {
    if (this.pos >= block.length) throw new HpackError('truncated block: string expected');
    this.strHuff = (block[this.pos] as number) & 0x80;
    const len = this.readInt(block, 7);
    const start = this.pos;
    const end = start + len;
    if (end > block.length) throw new HpackError('string length past the end of the block');
    this.strStart = start;
    this.pos = end;
    return end;
  }

  private readString(block: Uint8Array): string {
    const end = this.stringBounds(block);
    const start = this.strStart;
    return this.strHuff !== 0 ? huffmanDecode(block, start, end) : rawString(block, start, end);
  }

  /** As readString, through the literal cache: the same octets give the same string object. */
  private readCachedString(block: Uint8Array): string {
    const end = this.stringBounds(block);
    const start = this.strStart;
    const huff = this.strHuff;
    const len = end - start;
    if (len === 0) return '';
    if (len > CACHE_MAX_OCTETS) {
      return huff !== 0 ? huffmanDecode(block, start, end) : rawString(block, start, end);
    }
    // Two ways per set: the two literals a gRPC client repeats (`:path`, which nghttp2 never
    // indexes, and `authorization`, which it sends never-indexed) never evict each other.
    const set =
      (len * 31 +
        (block[start] as number) +
        (block[start + (len >> 1)] as number) * 7 +
        (block[end - 1] as number) * 131 +
        huff) &
      ((CACHE_SLOTS >> 1) - 1);
    for (let way = 0; way < 2; way++) {
      const slot = set * 2 + way;
      const key = this.cacheKeys[slot] as Buffer;
      if (key.length !== len || this.cacheHuff[slot] !== huff) continue;
      let hit: boolean;
      if (len > NATIVE_COMPARE_OCTETS) hit = key.compare(block, start, end) === 0;
      else {
        let i = 0;
        while (i < len && key[i] === block[start + i]) i++;
        hit = i === len;
      }
      if (hit) {
        this.cacheRecent[set] = way;
        return this.cacheStrings[slot] as string;
      }
    }
    const str = huff !== 0 ? huffmanDecode(block, start, end) : rawString(block, start, end);
    const way = 1 - (this.cacheRecent[set] as number);
    const slot = set * 2 + way;
    this.cacheRecent[set] = way;
    const copy = Buffer.allocUnsafeSlow(len);
    copy.set(block.subarray(start, end));
    this.cacheKeys[slot] = copy;
    this.cacheHuff[slot] = huff;
    this.cacheStrings[slot] = str;
    return str;
  }

  /** Adds an entry (4.4): evicts oldest first; an entry larger than the limit empties the table. */
  private insert(name: string, value: string): void {
    const size = name.length + value.length + 32;
    if (size > this.limit) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.limit - size);
    let head = this.head + 1;
    if (head === this.capacity) head = 0;
    this.head = head;
    this.names[head] = name;
    this.values[head] = value;
    this.count++;
    this.bytes += size;
  }

  private evictTo(size: number): void {
    while (this.bytes > size) {
      let slot = this.head - (this.count - 1);
      if (slot < 0) slot += this.capacity;
      this.bytes -= (this.names[slot] as string).length + (this.values[slot] as string).length + 32;
      this.names[slot] = '';
      this.values[slot] = '';
      this.count--;
    }
  }
}
