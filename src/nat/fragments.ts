// Fragments (RFC 4787 REQ-14): only the first fragment carries ports, so the engine decides on
// the first and remembers the outcome per datagram (source, destination, protocol, IP id);
// later fragments get the same address rewrite. Fragments that arrive before their first are
// held (bounded in count and bytes) and released once it comes, or dropped when they time out.

/** What to do with the rest of a datagram, decided on its first fragment. */
export const FRAG_FORWARD = 1;
export const FRAG_DROP = 2;

export interface HeldFragment {
  src: number;
  dst: number;
  key2: number;
  data: Uint8Array;
  heldAtSec: number;
}

export class FragmentTracker {
  private readonly capacity: number;
  // Datagram records, a ring in creation order: all share one timeout, so the oldest is always
  // the next to expire and the ring is the timer.
  private readonly src: Uint32Array;
  private readonly dst: Uint32Array;
  /** protocol << 16 | IP id */
  private readonly key2: Uint32Array;
  private readonly newSrc: Uint32Array;
  private readonly newDst: Uint32Array;
  private readonly action: Uint8Array;
  private readonly createdSec: Uint32Array;
  private head = 0;
  private size = 0;
  private readonly timeoutSec: number;
  private readonly maxHeld: number;
  private readonly maxHeldBytes: number;
  held: HeldFragment[] = [];
  heldBytes = 0;

  constructor(capacity: number, timeoutSec: number, maxHeld: number, maxHeldBytes: number) {
    this.capacity = capacity;
    this.src = new Uint32Array(capacity);
    this.dst = new Uint32Array(capacity);
    this.key2 = new Uint32Array(capacity);
    this.newSrc = new Uint32Array(capacity);
    this.newDst = new Uint32Array(capacity);
    this.action = new Uint8Array(capacity);
    this.createdSec = new Uint32Array(capacity);
    this.timeoutSec = timeoutSec;
    this.maxHeld = maxHeld;
    this.maxHeldBytes = maxHeldBytes;
  }

  get byteLength(): number {
    return this.capacity * 25;
  }

  get datagrams(): number {
    return this.size;
  }

  /** Records the outcome of a first fragment (the oldest record makes room when full). */
  record(
    src: number,
    dst: number,
    proto: number,
    id: number,
    action: number,
    newSrc: number,
    newDst: number,
    nowSec: number,
  ): void {
    if (this.size === this.capacity) {
      this.head = (this.head + 1) % this.capacity;
      this.size--;
    }
    const i = (this.head + this.size) % this.capacity;
    this.src[i] = src;
    this.dst[i] = dst;
    this.key2[i] = ((proto << 16) | id) >>> 0;
    this.newSrc[i] = newSrc;
    this.newDst[i] = newDst;
    this.action[i] = action;
    this.createdSec[i] = nowSec;
    this.size++;
  }

  /**
   * Finds the datagram's record, newest first (a recycled IP id must find the latest). Returns
   * the ring position or -1. The ring is small and fragments are rare, so a scan is cheapest.
   */
  find(src: number, dst: number, proto: number, id: number): number {
    const k2 = ((proto << 16) | id) >>> 0;
    for (let n = this.size - 1; n >= 0; n--) {
      const i = (this.head + n) % this.capacity;
      if (this.key2[i] === k2 && this.src[i] === src && this.dst[i] === dst) return i;
    }
    return -1;
  }

  actionAt(i: number): number {
    return this.action[i];
  }
  newSrcAt(i: number): number {
    return this.newSrc[i];
  }
  newDstAt(i: number): number {
    return this.newDst[i];
  }

  /** Holds a copy of a fragment that came before its first; false when the buffer is full. */
  hold(
    src: number,
    dst: number,
    proto: number,
    id: number,
    b: Uint8Array,
    off: number,
    len: number,
    nowSec: number,
  ): boolean {
    if (this.held.length >= this.maxHeld || this.heldBytes + len > this.maxHeldBytes) return false;
    this.held.push({
      src,
      dst,
      key2: ((proto << 16) | id) >>> 0,
      data: b.slice(off, off + len),
      heldAtSec: nowSec,
    });
    this.heldBytes += len;
    return true;
  }

  /** Removes and returns the held fragments of a datagram (in arrival order). */
  takeHeld(src: number, dst: number, proto: number, id: number): HeldFragment[] | null {
    if (this.held.length === 0) return null;
    const k2 = ((proto << 16) | id) >>> 0;
    let out: HeldFragment[] | null = null;
    const keep: HeldFragment[] = [];
    for (const h of this.held) {
      if (h.key2 === k2 && h.src === src && h.dst === dst) {
        if (out === null) out = [];
        out.push(h);
        this.heldBytes -= h.data.length;
      } else keep.push(h);
    }
    if (out !== null) this.held = keep;
    return out;
  }

  /** Expires old records; returns how many held fragments timed out (the caller counts drops). */
  expire(nowSec: number): number {
    while (this.size > 0 && this.createdSec[this.head] + this.timeoutSec <= nowSec) {
      this.head = (this.head + 1) % this.capacity;
      this.size--;
    }
    if (this.held.length === 0) return 0;
    let dropped = 0;
    const keep: HeldFragment[] = [];
    for (const h of this.held) {
      if (h.heldAtSec + this.timeoutSec <= nowSec) {
        dropped++;
        this.heldBytes -= h.data.length;
      } else keep.push(h);
    }
    this.held = keep;
    return dropped;
  }
}
