// A listing of the flow table in bounded steps, for `masq conns`: the control plane runs on the
// packet loop's thread, so it takes the table a few hundred slots at a time and lets packets
// through in between. Nothing is allocated per slot: the flows to show are chosen with a bounded
// min-heap of (slot, last-seen second, identity) in typed arrays, 12 bytes per flow kept, and the
// caller builds a view only of the flows it emits.
//
// Order: newest activity first (largest last-seen second), the `limit` most recent when there
// are more. The table changes while the listing runs (it yields between steps): a flow is listed
// as it is when emitted, and one that ended (or whose slot now holds another flow) meanwhile is
// left out. Flows that began after the scan passed their slot are not listed.
import {
  F_IN_ADDR,
  F_LAST_SEEN,
  F_META,
  F_OUT_ADDR,
  F_PORTS,
  F_REM_ADDR,
  FLOW_WORDS,
  type FlowTable,
  STATE_MASK,
} from "./flow-table.ts";

/** Which flows a listing shows; an absent field matches every flow. */
export interface FlowFilter {
  /** IP protocol number (6, 17, 1). */
  proto?: number;
  /** State number (STATE_* of flow-table.ts). */
  state?: number;
  /** A flow matches when its inside, outside or remote address is in this prefix. */
  net?: { addr: number; mask: number };
}

const PHASE_SCAN = 0;
const PHASE_SORT = 1;
const PHASE_EMIT = 2;
const PHASE_DONE = 3;

/** Entries the heap starts with; it doubles up to its bound as flows are kept. */
const INITIAL_ENTRIES = 1024;

export class FlowListing {
  /** Live flows that matched the filter, counted while scanning. */
  matched = 0;
  private phase = PHASE_SCAN;
  /** Scan: the next slot. Sort: entries still in the heap. Emit: the next entry. */
  private cursor = 0;
  private size = 0;
  private readonly bound: number;
  private slot: Uint32Array;
  private seen: Uint32Array;
  private ident: Uint32Array;

  constructor(
    private readonly table: FlowTable,
    private readonly filter: FlowFilter,
    /** Flows to emit at most (the most recently active); Infinity for all. */
    limit: number,
  ) {
    this.bound = Math.max(0, Math.min(limit, table.capacity));
    const n = Math.min(this.bound, INITIAL_ENTRIES);
    this.slot = new Uint32Array(n);
    this.seen = new Uint32Array(n);
    this.ident = new Uint32Array(n);
  }

  get done(): boolean {
    return this.phase === PHASE_DONE;
  }

  /** Bytes the listing holds (its heap), for the caller's accounting. */
  get byteLength(): number {
    return this.slot.byteLength * 3;
  }

  /**
   * Does at most `budget` units of work (slots scanned, heap entries sorted or emitted); calls
   * `emit(f)` for each flow slot to show, in order. Call until `done`.
   */
  step(budget: number, emit: (f: number) => void): void {
    let left = budget;
    while (left > 0 && this.phase !== PHASE_DONE) {
      if (this.phase === PHASE_SCAN) left = this.scan(left);
      else if (this.phase === PHASE_SORT) left = this.sort(left);
      else left = this.emitSome(left, emit);
    }
  }

  private scan(budget: number): number {
    const t = this.table;
    const end = Math.min(t.capacity, this.cursor + budget);
    const u = t.u32;
    for (let f = this.cursor; f < end; f++) {
      if (!t.isLive(f) || !this.matches(f)) continue;
      this.matched++;
      if (this.bound > 0) this.offer(f, u[f * FLOW_WORDS + F_LAST_SEEN], identity(u, f));
    }
    const used = end - this.cursor;
    this.cursor = end;
    if (end === t.capacity) {
      this.phase = PHASE_SORT;
      this.cursor = this.size;
    }
    return budget - Math.max(1, used);
  }

  /** Heapsort in place, one extraction per unit: a min-heap sorts into newest first. */
  private sort(budget: number): number {
    let left = budget;
    while (left > 0 && this.cursor > 1) {
      const last = --this.cursor;
      this.swap(0, last);
      this.siftDown(0, last);
      left--;
    }
    if (this.cursor <= 1) {
      this.phase = PHASE_EMIT;
      this.cursor = 0;
    }
    return left;
  }

  private emitSome(budget: number, emit: (f: number) => void): number {
    const t = this.table;
    const u = t.u32;
    let left = budget;
    while (left > 0 && this.cursor < this.size) {
      const k = this.cursor++;
      const f = this.slot[k];
      left--;
      // Still the flow that was chosen, and still one the filter wants?
      if (t.isLive(f) && identity(u, f) === this.ident[k] && this.matches(f)) emit(f);
    }
    if (this.cursor >= this.size) this.phase = PHASE_DONE;
    return left;
  }

  private matches(f: number): boolean {
    const u = this.table.u32;
    const b = f * FLOW_WORDS;
    const q = this.filter;
    const meta = u[b + F_META];
    if (q.proto !== undefined && ((meta >>> 8) & 0xff) !== q.proto) return false;
    if (q.state !== undefined && (meta & STATE_MASK) !== q.state) return false;
    const net = q.net;
    if (net !== undefined) {
      const m = net.mask;
      const a = net.addr;
      if (
        (u[b + F_IN_ADDR] & m) >>> 0 !== a &&
        (u[b + F_OUT_ADDR] & m) >>> 0 !== a &&
        (u[b + F_REM_ADDR] & m) >>> 0 !== a
      )
        return false;
    }
    return true;
  }

  /** Keeps the `bound` most recent flows: a min-heap on the last-seen second. */
  private offer(f: number, seen: number, ident: number): void {
    if (this.size < this.bound) {
      if (this.size === this.slot.length) this.grow();
      let i = this.size++;
      this.slot[i] = f;
      this.seen[i] = seen;
      this.ident[i] = ident;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (this.seen[parent] <= this.seen[i]) break;
        this.swap(i, parent);
        i = parent;
      }
      return;
    }
    if (seen <= this.seen[0]) return;
    this.slot[0] = f;
    this.seen[0] = seen;
    this.ident[0] = ident;
    this.siftDown(0, this.size);
  }

  private siftDown(start: number, n: number): void {
    const s = this.seen;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const c = r < n && s[r] < s[l] ? r : l;
      if (s[i] <= s[c]) return;
      this.swap(i, c);
      i = c;
    }
  }

  private swap(i: number, j: number): void {
    const a = this.slot;
    const s = this.seen;
    const d = this.ident;
    let t = a[i];
    a[i] = a[j];
    a[j] = t;
    t = s[i];
    s[i] = s[j];
    s[j] = t;
    t = d[i];
    d[i] = d[j];
    d[j] = t;
  }

  private grow(): void {
    const n = Math.min(this.bound, Math.max(INITIAL_ENTRIES, this.slot.length * 2));
    const widen = (a: Uint32Array) => {
      const b = new Uint32Array(n);
      b.set(a);
      return b;
    };
    this.slot = widen(this.slot);
    this.seen = widen(this.seen);
    this.ident = widen(this.ident);
  }
}

/**
 * A 32-bit digest of a flow's key words (addresses, ports, protocol): tells whether a slot still
 * holds the flow the scan chose. A collision would list a newer flow in its place, no worse.
 */
function identity(u: Uint32Array, f: number): number {
  const b = f * FLOW_WORDS;
  let h = Math.imul(u[b + F_IN_ADDR] ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ u[b + F_OUT_ADDR] ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ u[b + F_REM_ADDR] ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ u[b + F_PORTS] ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ (u[b + F_META] & 0xffffff00) ^ (h >>> 16), 0x85ebca6b);
  return (h ^ (h >>> 15)) >>> 0;
}
