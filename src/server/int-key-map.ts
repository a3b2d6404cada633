// A map from non-negative integer keys to values, on two arrays that are reused for as long as
// they are big enough: the open HTTP/2 streams of a connection (h2/connection.ts) and the crypto
// thread's calls in flight (csr-check-threads.ts), each with one insert and one delete per call.
//
// Why not a Map: V8 gives a Map a new hash table every few insert/delete pairs (to reclaim
// deleted entries, or to shrink it), and the table it replaces keeps pointing at the entries it
// held and at its successor (for iterators that may still walk it). A map that lives long sits in
// the old generation, and once one of its tables does too, every table after it and every entry
// they held survive the young-generation collections through that chain: calls long finished
// reach the old generation, and the full collections that free them pause the event loop.
// Measured at P-256 c=64 (docs/performance.md, "Nepotism"): the event loop promoted ≈ 2.4 KB
// per request with Maps here, whole calls (their streams, decoded requests and handler state).
// Here nothing is allocated per insert or delete, every slot is cleared as it is left, and
// arrays that are replaced (grown or shrunk) are emptied first, as FifoRing does (./fifo-ring.ts).
//
// Open addressing with linear probing, and deletion by shifting the entries after the removed
// one back (no tombstones, so a table that only churns never needs rebuilding). Keys are not
// secret: a client that picks stream ids to share one home slot makes each lookup walk at most
// the entries held, which the caller bounds (1000 open streams per connection); V8 hashes a
// Map's small-integer keys without a seed too.

const MIN_CAPACITY = 8;

// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- any value but undefined, which marks a free slot
export class IntKeyMap<T extends {} | null> {
  private keys: Float64Array;
  /** undefined: a free slot (values are never undefined). */
  private vals: (T | undefined)[];
  private mask: number;
  /** 32 − log2(capacity): the hash's top bits index the table. */
  private shift: number;
  private count = 0;

  constructor() {
    this.keys = new Float64Array(MIN_CAPACITY);
    this.vals = new Array<T | undefined>(MIN_CAPACITY).fill(undefined);
    this.mask = MIN_CAPACITY - 1;
    this.shift = 32 - Math.log2(MIN_CAPACITY);
  }

  get size(): number {
    return this.count;
  }

  /** The table's length, for tests: it follows the most entries held at once, not use. */
  get capacity(): number {
    return this.vals.length;
  }

  get(key: number): T | undefined {
    const i = this.find(key);
    return i < 0 ? undefined : this.vals[i];
  }

  has(key: number): boolean {
    return this.find(key) >= 0;
  }

  /** Adds `key`, or replaces its value. */
  set(key: number, value: T): void {
    if (!Number.isSafeInteger(key) || key < 0) {
      throw new RangeError(`IntKeyMap: key ${key} is not a non-negative safe integer`);
    }
    const at = this.find(key);
    if (at >= 0) {
      this.vals[at] = value;
      return;
    }
    // At most half full: probes stay short.
    if ((this.count + 1) * 2 > this.vals.length) this.resize(this.vals.length * 2);
    this.insert(key, value);
    this.count++;
  }

  /** Removes `key`; false when it was not there. */
  delete(key: number): boolean {
    let i = this.find(key);
    if (i < 0) return false;
    this.vals[i] = undefined;
    this.count--;
    // Entries after i whose probe passed over i move back into it (Knuth's algorithm R).
    const mask = this.mask;
    for (let j = (i + 1) & mask; this.vals[j] !== undefined; j = (j + 1) & mask) {
      // A Float64Array index in range: a number (the type says `number | undefined`).
      const key = this.keys[j] as number;
      if (((j - this.home(key)) & mask) >= ((j - i) & mask)) {
        this.keys[i] = key;
        this.vals[i] = this.vals[j];
        this.vals[j] = undefined;
        i = j;
      }
    }
    // A burst's table is given back once it is a sixteenth full (to a quarter of its size, where
    // it is then at most a quarter full: far from growing again).
    if (this.vals.length > 64 && this.count * 16 <= this.vals.length) {
      this.resize(this.vals.length / 4);
    }
    return true;
  }

  /** The values, in no particular order: a copy, so the map may change while it is walked. */
  values(): T[] {
    const out: T[] = [];
    for (const v of this.vals) if (v !== undefined) out.push(v);
    return out;
  }

  clear(): void {
    if (this.vals.length > MIN_CAPACITY) {
      this.vals.fill(undefined);
      this.keys = new Float64Array(MIN_CAPACITY);
      this.vals = new Array<T | undefined>(MIN_CAPACITY).fill(undefined);
      this.mask = MIN_CAPACITY - 1;
      this.shift = 32 - Math.log2(MIN_CAPACITY);
    } else this.vals.fill(undefined);
    this.count = 0;
  }

  /**
   * Fibonacci hashing (the product's top bits) of both 32-bit halves: stream ids are odd and
   * call ids consecutive, and either spreads evenly.
   */
  private home(key: number): number {
    return Math.imul((key | 0) ^ ((key / 4294967296) | 0), 0x9e3779b1) >>> this.shift;
  }

  private find(key: number): number {
    const mask = this.mask;
    for (let i = this.home(key); this.vals[i] !== undefined; i = (i + 1) & mask) {
      if (this.keys[i] === key) return i;
    }
    return -1;
  }

  private insert(key: number, value: T): void {
    let i = this.home(key);
    while (this.vals[i] !== undefined) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.vals[i] = value;
  }

  private resize(capacity: number): void {
    const keys = this.keys;
    const vals = this.vals;
    this.keys = new Float64Array(capacity);
    this.vals = new Array<T | undefined>(capacity).fill(undefined);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i];
      if (v !== undefined) this.insert(keys[i] as number, v);
    }
    // Emptied: if the old array is already in the old generation, it holds nothing alive.
    vals.fill(undefined);
  }
}
