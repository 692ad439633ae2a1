// Fragments (RFC 4787 REQ-14): only the first fragment carries ports, so the engine decides on
// the first and remembers the outcome per datagram (source, destination, protocol, IP id);
// later fragments get the same address rewrite. Fragments that arrive before their first are
// held (fragment-store.ts: budgeted by bytes, per source, insiders apart from outsiders) and
// released once it comes, or dropped when they time out.
//
// The outcomes are kept per class too (inside and outside sources): first fragments from the
// Internet, forged or not, can only push out records of other outside datagrams, never the record
// an inside host's later fragments need.
import { CLASS_INSIDE, CLASS_OUTSIDE, FragmentStore } from "./fragment-store.ts";

export { CLASS_INSIDE, CLASS_OUTSIDE, HOLD_FULL, HOLD_OK, HOLD_SOURCE_BUDGET } from "./fragment-store.ts";

/** What to do with the rest of a datagram, decided on its first fragment. */
export const FRAG_FORWARD = 1;
export const FRAG_DROP = 2;
/** Several workers: the datagram's flow is another worker's; its fragments go there (fragment-handoff.ts). */
export const FRAG_HANDOFF = 3;

/** Outcomes of first fragments, a ring in creation order: all share one timeout, so the ring is the timer. */
class DatagramRing {
  private readonly capacity: number;
  readonly src: Uint32Array;
  readonly dst: Uint32Array;
  /** protocol << 16 | IP id */
  readonly key2: Uint32Array;
  readonly newSrc: Uint32Array;
  readonly newDst: Uint32Array;
  readonly action: Uint8Array;
  private readonly createdSec: Uint32Array;
  private head = 0;
  size = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.src = new Uint32Array(capacity);
    this.dst = new Uint32Array(capacity);
    this.key2 = new Uint32Array(capacity);
    this.newSrc = new Uint32Array(capacity);
    this.newDst = new Uint32Array(capacity);
    this.action = new Uint8Array(capacity);
    this.createdSec = new Uint32Array(capacity);
  }

  get byteLength(): number {
    return this.capacity * 25;
  }

  /** Records an outcome (the oldest record makes room when full). */
  record(
    src: number,
    dst: number,
    key2: number,
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
    this.key2[i] = key2;
    this.newSrc[i] = newSrc;
    this.newDst[i] = newDst;
    this.action[i] = action;
    this.createdSec[i] = nowSec;
    this.size++;
  }

  /**
   * The datagram's record, newest first (a recycled IP id must find the latest), or -1. The ring
   * is small and fragments are rare, so a scan is cheapest.
   */
  find(src: number, dst: number, key2: number): number {
    for (let n = this.size - 1; n >= 0; n--) {
      const i = (this.head + n) % this.capacity;
      if (this.key2[i] === key2 && this.src[i] === src && this.dst[i] === dst) return i;
    }
    return -1;
  }

  expire(nowSec: number, timeoutSec: number): void {
    while (this.size > 0 && this.createdSec[this.head] + timeoutSec <= nowSec) {
      this.head = (this.head + 1) % this.capacity;
      this.size--;
    }
  }
}

export class FragmentTracker {
  private readonly rings: [DatagramRing, DatagramRing];
  private readonly ringCapacity: number;
  readonly store: FragmentStore;
  private timeoutSec: number;

  /** `records`: outcomes remembered per class; `heldBytes`: the held-fragment buffer. */
  constructor(records: number, timeoutSec: number, heldBytes: number, hashSeed = 0) {
    this.ringCapacity = records;
    this.rings = [new DatagramRing(records), new DatagramRing(records)];
    this.store = new FragmentStore(heldBytes, hashSeed);
    this.timeoutSec = timeoutSec;
  }

  /** How long outcomes and held fragments are kept from now on (a reload). */
  setTimeout(timeoutSec: number): void {
    this.timeoutSec = timeoutSec;
  }

  get byteLength(): number {
    return this.rings[0].byteLength * 2 + this.store.byteLength;
  }

  get datagrams(): number {
    return this.rings[0].size + this.rings[1].size;
  }

  /** Records the outcome of a first fragment from a source of class c. */
  record(
    c: number,
    src: number,
    dst: number,
    proto: number,
    id: number,
    action: number,
    newSrc: number,
    newDst: number,
    nowSec: number,
  ): void {
    this.rings[c].record(src, dst, key2(proto, id), action, newSrc, newDst, nowSec);
  }

  /** The datagram's record (a reference for the accessors below), or -1. */
  find(c: number, src: number, dst: number, proto: number, id: number): number {
    const i = this.rings[c].find(src, dst, key2(proto, id));
    return i < 0 ? -1 : c * this.ringCapacity + i;
  }

  private ring(ref: number): DatagramRing {
    return this.rings[ref < this.ringCapacity ? CLASS_INSIDE : CLASS_OUTSIDE];
  }

  actionAt(ref: number): number {
    return this.ring(ref).action[ref % this.ringCapacity];
  }
  newSrcAt(ref: number): number {
    return this.ring(ref).newSrc[ref % this.ringCapacity];
  }
  newDstAt(ref: number): number {
    return this.ring(ref).newDst[ref % this.ringCapacity];
  }

  /** Holds a fragment that came before its first (HOLD_OK, or why not; see FragmentStore.hold). */
  hold(
    c: number,
    src: number,
    dst: number,
    proto: number,
    id: number,
    b: Uint8Array,
    off: number,
    len: number,
    nowSec: number,
  ): number {
    return this.store.hold(c, src, dst, key2(proto, id), b, off, len, nowSec);
  }

  /** Releases the datagram's held fragments through `apply` (see FragmentStore.takeHeld). */
  takeHeld(
    src: number,
    dst: number,
    proto: number,
    id: number,
    apply: (b: Uint8Array, off: number) => boolean,
  ): number {
    if (this.store.count === 0) {
      this.store.droppedOnRelease = 0;
      return 0;
    }
    return this.store.takeHeld(src, dst, key2(proto, id), apply);
  }

  /** Expires old records; returns how many held fragments timed out (the caller counts drops). */
  expire(nowSec: number): number {
    this.rings[0].expire(nowSec, this.timeoutSec);
    this.rings[1].expire(nowSec, this.timeoutSec);
    return this.store.count === 0 ? 0 : this.store.expire(nowSec, this.timeoutSec);
  }
}

function key2(proto: number, id: number): number {
  return ((proto << 16) | id) >>> 0;
}
