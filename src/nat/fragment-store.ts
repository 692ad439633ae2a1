// Held fragments: later fragments that came before the first of their datagram wait here for it
// (RFC 4787 REQ-14). The buffer is budgeted so that nobody can push out somebody else's
// datagram: it was 256 fragments shared by all, and 300 bogus fragments from the Internet made an
// inside host's out-of-order datagram drop (issue 16 item 8).
//
// - Bytes, not fragments, are budgeted (Linux budgets 4 MB per namespace the same way), in chunks
//   of 512 bytes: a fragment costs the chunks it occupies, so tiny ones are charged what they
//   really take.
// - Two classes with their own shares: outside sources (anyone on the Internet, forging any
//   source address) share an eighth of the buffer, inside sources the rest. An outsider can only
//   ever evict an outsider's fragment.
// - One source holds at most a quarter of its class, so filling a class takes four sources.
// - When a share is full, the oldest fragment of the offender goes: its own oldest when the
//   source is over its share, the class's oldest when the class is.
//
// The memory is preallocated (at the first fragment held) and the packet path allocates nothing:
// a fragment is copied into a chain of chunks, and when its first fragment comes, into a release
// area the caller drains after each call (takePending).
import { AddressIndex } from "./address-index.ts";

const CHUNK_SHIFT = 9;
export const FRAGMENT_CHUNK = 1 << CHUNK_SHIFT;

export const CLASS_INSIDE = 0;
export const CLASS_OUTSIDE = 1;

/** hold(): the fragment is held. */
export const HOLD_OK = 0;
/** hold(): larger than its source may hold at all; not held. */
export const HOLD_SOURCE_BUDGET = 1;
/** hold(): no room (released fragments not yet taken fill the buffer); not held. */
export const HOLD_FULL = 2;

const NONE = -1;

export class FragmentStore {
  private readonly chunks: number;
  private pool: Uint8Array | null = null;
  /** Next chunk of a fragment's chain, or of the free list. */
  private readonly chunkNext: Int32Array;
  private freeChunk = 0;
  private freeChunks: number;

  // Held fragments (at most one per chunk), struct of arrays.
  private readonly src: Uint32Array;
  private readonly dst: Uint32Array;
  /** protocol << 16 | IP id */
  private readonly key2: Uint32Array;
  private readonly len: Uint32Array;
  private readonly heldAt: Uint32Array;
  private readonly firstChunk: Int32Array;
  private readonly cls: Uint8Array;
  private readonly source: Int32Array;
  /** Age list of the fragment's class (oldest first); also the free list of fragment slots. */
  private readonly classPrev: Int32Array;
  private readonly classNext: Int32Array;
  /** Age list of the fragment's source. */
  private readonly sourcePrev: Int32Array;
  private readonly sourceNext: Int32Array;
  private freeSlot = 0;

  private readonly classHead = new Int32Array([NONE, NONE]);
  private readonly classTail = new Int32Array([NONE, NONE]);
  private readonly classChunks = new Int32Array(2);
  readonly classLimit = new Int32Array(2);
  readonly sourceLimit = new Int32Array(2);

  // Sources with fragments held: address, chunks, their age list; found through a hash index.
  private readonly sourceAddr: Uint32Array;
  private readonly sourceChunks: Int32Array;
  private readonly sourceHead: Int32Array;
  private readonly sourceTail: Int32Array;
  private readonly sourceIndex: AddressIndex;
  private freeSource = 0;

  // Released fragments waiting for the caller: copies in one area, with a queue of (offset, length).
  private readonly releaseBytes: number;
  private release: Uint8Array | null = null;
  private releaseUsed = 0;
  private readonly queue: Uint32Array;
  private queueHead = 0;
  private queued = 0;

  /** Held fragments, and the bytes they take (in whole chunks). */
  count = 0;
  /** Fragments the last hold() evicted: the source's own (over its share), the class's oldest. */
  evictedBySource = 0;
  evictedByClass = 0;
  /** Fragments the last takeHeld() could not release (the release area was full). */
  droppedOnRelease = 0;

  constructor(bytes: number, hashSeed = 0) {
    const n = Math.max(8, Math.floor(bytes / FRAGMENT_CHUNK));
    this.chunks = n;
    this.freeChunks = n;
    this.chunkNext = new Int32Array(n);
    for (let i = 0; i < n; i++) this.chunkNext[i] = i + 1 < n ? i + 1 : NONE;
    this.src = new Uint32Array(n);
    this.dst = new Uint32Array(n);
    this.key2 = new Uint32Array(n);
    this.len = new Uint32Array(n);
    this.heldAt = new Uint32Array(n);
    this.firstChunk = new Int32Array(n);
    this.cls = new Uint8Array(n);
    this.source = new Int32Array(n);
    this.classPrev = new Int32Array(n);
    this.classNext = new Int32Array(n);
    this.sourcePrev = new Int32Array(n);
    this.sourceNext = new Int32Array(n);
    for (let i = 0; i < n; i++) this.classNext[i] = i + 1 < n ? i + 1 : NONE;
    const outside = Math.max(1, Math.floor(n / 8));
    this.classLimit[CLASS_OUTSIDE] = outside;
    this.classLimit[CLASS_INSIDE] = n - outside;
    for (const c of [CLASS_INSIDE, CLASS_OUTSIDE])
      this.sourceLimit[c] = Math.max(1, Math.floor(this.classLimit[c] / 4));
    this.sourceAddr = new Uint32Array(n);
    this.sourceChunks = new Int32Array(n);
    this.sourceHead = new Int32Array(n);
    this.sourceTail = new Int32Array(n);
    for (let i = 0; i < n; i++) this.sourceHead[i] = i + 1 < n ? i + 1 : NONE;
    this.sourceIndex = new AddressIndex(this.sourceAddr, hashSeed, 5);
    // Enough for everything one source may hold, released at once, and then some.
    this.releaseBytes = Math.max(this.sourceLimit[CLASS_INSIDE] * FRAGMENT_CHUNK * 2, 128 * 1024);
    this.queue = new Uint32Array(2 * n);
  }

  get byteLength(): number {
    const perSlot = 4 * 13 + 1;
    return (
      this.chunks * (4 + perSlot) +
      this.sourceIndex.byteLength +
      this.queue.byteLength +
      (this.pool?.byteLength ?? 0) +
      (this.release?.byteLength ?? 0)
    );
  }

  get heldBytes(): number {
    return (this.classChunks[CLASS_INSIDE] + this.classChunks[CLASS_OUTSIDE]) * FRAGMENT_CHUNK;
  }

  /** Bytes of the buffer free (with heldBytes, always the whole buffer). */
  get freeBytes(): number {
    return this.freeChunks * FRAGMENT_CHUNK;
  }

  get bufferBytes(): number {
    return this.chunks * FRAGMENT_CHUNK;
  }

  get pendingCount(): number {
    return this.queued;
  }

  private findSource(addr: number): number {
    return this.sourceIndex.find(addr);
  }

  private addSource(addr: number): number {
    const r = this.freeSource;
    this.freeSource = this.sourceHead[r];
    this.sourceAddr[r] = addr;
    this.sourceChunks[r] = 0;
    this.sourceHead[r] = NONE;
    this.sourceTail[r] = NONE;
    this.sourceIndex.insert(addr, r);
    return r;
  }

  private removeSource(r: number): void {
    this.sourceIndex.remove(this.sourceAddr[r], r);
    this.sourceHead[r] = this.freeSource;
    this.freeSource = r;
  }

  private chunksOf(f: number): number {
    return (this.len[f] + FRAGMENT_CHUNK - 1) >>> CHUNK_SHIFT;
  }

  /**
   * Holds a copy of the fragment at b[off, off+len) from `src` of class `c`; HOLD_OK, or why not.
   * `evictedBySource` and `evictedByClass` say what it pushed out (the caller counts the drops).
   */
  hold(
    c: number,
    src: number,
    dst: number,
    key2: number,
    b: Uint8Array,
    off: number,
    len: number,
    nowSec: number,
  ): number {
    this.evictedBySource = 0;
    this.evictedByClass = 0;
    const need = (len + FRAGMENT_CHUNK - 1) >>> CHUNK_SHIFT;
    if (need > this.sourceLimit[c]) return HOLD_SOURCE_BUDGET;
    let s = this.findSource(src);
    while (s !== NONE && this.sourceChunks[s] + need > this.sourceLimit[c]) {
      this.evict(this.sourceHead[s], s);
      this.evictedBySource++;
    }
    while (this.classChunks[c] + need > this.classLimit[c] && this.classHead[c] !== NONE) {
      this.evict(this.classHead[c], s);
      this.evictedByClass++;
    }
    if (this.freeChunks < need) {
      if (s !== NONE && this.sourceChunks[s] === 0) this.removeSource(s);
      return HOLD_FULL;
    }
    if (s === NONE) s = this.addSource(src);
    if (this.pool === null) this.pool = new Uint8Array(this.chunks * FRAGMENT_CHUNK);
    const f = this.freeSlot;
    this.freeSlot = this.classNext[f];
    // Copy into a chain of free chunks.
    const first = this.freeChunk;
    let k = first;
    let last = first;
    for (let at = 0; at < len; at += FRAGMENT_CHUNK) {
      const n = Math.min(len - at, FRAGMENT_CHUNK);
      copyBytes(this.pool, k << CHUNK_SHIFT, b, off + at, n);
      last = k;
      k = this.chunkNext[k];
    }
    this.freeChunk = k;
    this.chunkNext[last] = NONE;
    this.freeChunks -= need;
    this.src[f] = src;
    this.dst[f] = dst;
    this.key2[f] = key2;
    this.len[f] = len;
    this.heldAt[f] = nowSec;
    this.firstChunk[f] = first;
    this.cls[f] = c;
    this.source[f] = s;
    // Newest at the tails.
    this.classNext[f] = NONE;
    this.classPrev[f] = this.classTail[c];
    if (this.classTail[c] !== NONE) this.classNext[this.classTail[c]] = f;
    else this.classHead[c] = f;
    this.classTail[c] = f;
    this.sourceNext[f] = NONE;
    this.sourcePrev[f] = this.sourceTail[s];
    if (this.sourceTail[s] !== NONE) this.sourceNext[this.sourceTail[s]] = f;
    else this.sourceHead[s] = f;
    this.sourceTail[s] = f;
    this.classChunks[c] += need;
    this.sourceChunks[s] += need;
    this.count++;
    return HOLD_OK;
  }

  /** Removes held fragment f (its source goes too once empty, unless it is `keep`). */
  private evict(f: number, keep: number): void {
    const c = this.cls[f];
    const s = this.source[f];
    const need = this.chunksOf(f);
    const cp = this.classPrev[f];
    const cn = this.classNext[f];
    if (cp !== NONE) this.classNext[cp] = cn;
    else this.classHead[c] = cn;
    if (cn !== NONE) this.classPrev[cn] = cp;
    else this.classTail[c] = cp;
    const sp = this.sourcePrev[f];
    const sn = this.sourceNext[f];
    if (sp !== NONE) this.sourceNext[sp] = sn;
    else this.sourceHead[s] = sn;
    if (sn !== NONE) this.sourcePrev[sn] = sp;
    else this.sourceTail[s] = sp;
    this.classChunks[c] -= need;
    this.sourceChunks[s] -= need;
    if (this.sourceChunks[s] === 0 && s !== keep) this.removeSource(s);
    // The chain goes back to the front of the free list.
    let last = this.firstChunk[f];
    while (this.chunkNext[last] !== NONE) last = this.chunkNext[last];
    this.chunkNext[last] = this.freeChunk;
    this.freeChunk = this.firstChunk[f];
    this.freeChunks += need;
    this.classNext[f] = this.freeSlot;
    this.freeSlot = f;
    this.count--;
  }

  /**
   * Releases the held fragments of datagram (src, dst, key2), oldest first: each is copied into
   * the release area and handed to `apply(area, offset)` (which rewrites it in place); those it
   * accepts are queued for takePending. Returns how many were queued. Those that found no room
   * are counted in `droppedOnRelease`.
   */
  takeHeld(src: number, dst: number, key2: number, apply: (b: Uint8Array, off: number) => boolean): number {
    this.droppedOnRelease = 0;
    const s = this.findSource(src);
    if (s === NONE) return 0;
    let queued = 0;
    for (let f = this.sourceHead[s]; f !== NONE; ) {
      const next = this.sourceNext[f];
      if (this.key2[f] === key2 && this.dst[f] === dst) {
        const at = this.copyOut(f);
        if (at < 0) this.droppedOnRelease++;
        else if (apply(this.release as Uint8Array, at)) {
          const q = (this.queueHead + this.queued) % this.chunks;
          this.queue[2 * q] = at;
          this.queue[2 * q + 1] = this.len[f];
          this.queued++;
          queued++;
        } else this.releaseUsed = at;
        // Whatever became of it, it is no longer held (the last one takes its source along).
        this.evict(f, NONE);
        if (this.sourceChunks[s] === 0) break;
      }
      f = next;
    }
    return queued;
  }

  /** Copies held fragment f to the release area; its offset there, or -1 when there is no room. */
  private copyOut(f: number): number {
    const len = this.len[f];
    if (this.releaseUsed + len > this.releaseBytes || this.queued === this.chunks) return -1;
    if (this.release === null) this.release = new Uint8Array(this.releaseBytes);
    const pool = this.pool as Uint8Array;
    const at = this.releaseUsed;
    let k = this.firstChunk[f];
    for (let done = 0; done < len; done += FRAGMENT_CHUNK) {
      const n = Math.min(len - done, FRAGMENT_CHUNK);
      const from = k << CHUNK_SHIFT;
      copyBytes(this.release, at + done, pool, from, n);
      k = this.chunkNext[k];
    }
    this.releaseUsed = at + len;
    return at;
  }

  /**
   * The next released fragment, undefined when none is left. The view is valid until the next call
   * that holds or releases fragments (the caller sends it at once).
   */
  takePending(): Uint8Array | undefined {
    if (this.queued === 0) return undefined;
    const q = this.queueHead;
    const at = this.queue[2 * q];
    const len = this.queue[2 * q + 1];
    this.queueHead = (q + 1) % this.chunks;
    this.queued--;
    // All taken: the area starts over (the view returned now stays intact until then).
    if (this.queued === 0) this.releaseUsed = 0;
    return (this.release as Uint8Array).subarray(at, at + len);
  }

  /** Drops fragments held `timeoutSec` or longer; returns how many (the caller counts them). */
  expire(nowSec: number, timeoutSec: number): number {
    let n = 0;
    for (let c = CLASS_INSIDE; c <= CLASS_OUTSIDE; c++)
      for (
        let f = this.classHead[c];
        f !== NONE && this.heldAt[f] + timeoutSec <= nowSec;
        f = this.classHead[c]
      ) {
        this.evict(f, NONE);
        n++;
      }
    return n;
  }

  /** Bytes (whole chunks) held by class c. */
  classBytes(c: number): number {
    return this.classChunks[c] * FRAGMENT_CHUNK;
  }
}

/** Copies n bytes without making a view (subarray) per copy: no allocation on the packet path. */
function copyBytes(to: Uint8Array, at: number, from: Uint8Array, off: number, n: number): void {
  for (let i = 0; i < n; i++) to[at + i] = from[off + i];
}
