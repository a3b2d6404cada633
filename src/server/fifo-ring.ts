// A first-in, first-out queue on one array, with removal from the middle in O(1): admission's
// waiting calls (./admission.ts).
//
// Why not a Map, which it replaced: a Map used as a queue (insert at the end, delete at the
// front) gets a new hash table from V8 every few dozen operations, and what a replaced table
// still points at is only let go by the collector that frees the table. Measured at P-256 c=64
// (docs/performance.md, "What the event loop promoted"): with the Map, the event loop promoted
// ≈ 1.6 KB per request to V8's old generation; with this array, ≈ 1.2 KB (and ≈ 0.3 KB once the
// waiting calls stopped holding AbortControllers). Here one array is reused: every slot is
// cleared as it is left, and an array that is replaced (grown, or compacted after many removals)
// is emptied first, so nothing it held is kept alive by it.

/** What the ring holds: it keeps each item's position in `ringIndex` (−1 when not queued). */
export interface RingItem {
  ringIndex: number;
}

export class FifoRing<T extends RingItem> {
  private slots: (T | undefined)[];
  /** Positions (not indexes): the first slot in use, possibly a hole; one past the last. */
  private head = 0;
  private tail = 0;
  private count = 0;

  constructor(initialCapacity = 16) {
    this.slots = new Array<T | undefined>(Math.max(1, initialCapacity)).fill(undefined);
  }

  get size(): number {
    return this.count;
  }

  /** The array's length, for tests: it grows with the most ever queued at once, not with use. */
  get capacity(): number {
    return this.slots.length;
  }

  push(item: T): void {
    if (this.tail - this.head === this.slots.length) this.rebuild();
    item.ringIndex = this.tail;
    this.slots[this.tail % this.slots.length] = item;
    this.tail++;
    this.count++;
  }

  /** The first item in, taken out; undefined when empty. */
  shift(): T | undefined {
    while (this.head < this.tail) {
      const i = this.head % this.slots.length;
      const item = this.slots[i];
      this.slots[i] = undefined;
      this.head++;
      if (item !== undefined) {
        this.taken(item);
        return item;
      }
    }
    return undefined;
  }

  /** Takes `item` out wherever it is; false when it is not queued here. */
  remove(item: T): boolean {
    const at = item.ringIndex;
    if (at < this.head || at >= this.tail) return false;
    const i = at % this.slots.length;
    if (this.slots[i] !== item) return false;
    this.slots[i] = undefined;
    this.taken(item);
    return true;
  }

  private taken(item: T): void {
    item.ringIndex = -1;
    this.count--;
    // Empty: positions start again from 0 (every slot is already clear).
    if (this.count === 0) this.head = this.tail = 0;
  }

  /**
   * Full from head to tail: into a new array, twice as long unless removals left at least half
   * of it as holes; the old array is cleared before it is dropped.
   */
  private rebuild(): void {
    const old = this.slots;
    const length = this.count * 2 > old.length ? old.length * 2 : old.length;
    const slots = new Array<T | undefined>(length).fill(undefined);
    let n = 0;
    for (let at = this.head; at < this.tail; at++) {
      const item = old[at % old.length];
      if (item === undefined) continue;
      item.ringIndex = n;
      slots[n++] = item;
    }
    old.fill(undefined);
    this.slots = slots;
    this.head = 0;
    this.tail = n;
  }
}
