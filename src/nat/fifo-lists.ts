// Many first-in-first-out lists over one set of records (indices 0..capacity-1), each record in at
// most one list: intrusive and doubly linked in typed arrays, so adding, removing and finding a
// list's oldest cost O(1) and allocate nothing.

/** "No record" in the links (they hold index + 1). */
const NONE = 0;

export class FifoLists {
  private readonly next: Uint32Array;
  private readonly prev: Uint32Array;
  /** The list (index + 1) each record is in, 0 when in none. */
  private readonly listOf: Uint32Array;
  private readonly head: Uint32Array;
  private readonly tail: Uint32Array;

  constructor(capacity: number, lists: number) {
    this.next = new Uint32Array(capacity);
    this.prev = new Uint32Array(capacity);
    this.listOf = new Uint32Array(capacity);
    this.head = new Uint32Array(lists);
    this.tail = new Uint32Array(lists);
  }

  get byteLength(): number {
    return (
      this.next.byteLength +
      this.prev.byteLength +
      this.listOf.byteLength +
      this.head.byteLength +
      this.tail.byteLength
    );
  }

  has(i: number): boolean {
    return this.listOf[i] !== NONE;
  }

  /** Appends record i as the newest of `list`; it must be in no list. */
  push(list: number, i: number): void {
    const t = this.tail[list];
    this.listOf[i] = list + 1;
    this.prev[i] = t;
    this.next[i] = NONE;
    if (t === NONE) this.head[list] = i + 1;
    else this.next[t - 1] = i + 1;
    this.tail[list] = i + 1;
  }

  /** Takes record i out of its list (nothing when it is in none). */
  remove(i: number): void {
    const l = this.listOf[i];
    if (l === NONE) return;
    const list = l - 1;
    const p = this.prev[i];
    const n = this.next[i];
    if (p === NONE) this.head[list] = n;
    else this.next[p - 1] = n;
    if (n === NONE) this.tail[list] = p;
    else this.prev[n - 1] = p;
    this.listOf[i] = NONE;
  }

  /** The oldest record of `list`, or -1 when it is empty. */
  oldest(list: number): number {
    return this.head[list] - 1;
  }

  /** The record after i in its list (the next younger), or -1. */
  after(i: number): number {
    return this.next[i] - 1;
  }
}
