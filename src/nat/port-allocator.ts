// Outside ports per (outside address, protocol): a bitmap over the configured range, so taking,
// releasing and testing a port are O(1) and exhaustion is known at once from a counter.
//
// RFC 4787 REQ-3 (and RFC 5382 REQ-3 for TCP): an inside port in 0-1023 is mapped to an outside
// port in 0-1023, one in 1024-65535 to one in 1024-65535. Where the range has ports on both sides
// of 1024 (pool mode's default, which owns the whole address), a TCP or UDP allocator keeps the
// two classes apart; a range on one side only (interface mode's 61000-65534) is one class.
import type { PortRange } from "./config.ts";
import { type PortSlice, portClasses, sliceOfClass, WHOLE_RANGE } from "./port-slices.ts";

export const NO_PORT = -1;

/** The first port of the unprivileged class (RFC 4787 REQ-3: 0-1023 and 1024-65535). */
export const UNPRIVILEGED_FIRST = 1024;

export class PortAllocator {
  private readonly first: number;
  private readonly last: number;
  private readonly size: number;
  /** One bitmap of `words` words per outside address; bit set = port in use. */
  private readonly bits: Uint32Array;
  private readonly words: number;
  /** Free ports per address in this worker's slice, both classes together. */
  readonly free: Uint32Array;
  /**
   * The offset (port - first) where the unprivileged class begins, 0 when the range is one class;
   * `lowFree` counts the free ports below it per address.
   */
  private readonly split: number;
  private readonly lowFree: Uint32Array;
  /**
   * The offsets [lo, hi) of this worker's slice of each class (port-slices.ts): the low class
   * (below `split`, empty when the range is one class) and the other. Only they are allocated
   * and counted free; a port outside them is taken only by name (a pin on the owner's behalf).
   */
  private readonly lowLo: number;
  private readonly lowHi: number;
  private readonly highLo: number;
  private readonly highHi: number;
  private rng: number;

  /**
   * `keepClass`: keep inside ports below 1024 below 1024 and the others above (TCP, UDP).
   * `slice`: the worker's share of each class (the whole range with one worker).
   */
  constructor(
    range: PortRange,
    addresses: number,
    seed = 0x2545f491,
    keepClass = false,
    slice: PortSlice = WHOLE_RANGE,
  ) {
    this.first = range.first;
    this.last = range.last;
    this.size = range.last - range.first + 1;
    this.words = (this.size + 31) >>> 5;
    this.bits = new Uint32Array(this.words * addresses);
    this.split =
      keepClass && range.first < UNPRIVILEGED_FIRST && range.last >= UNPRIVILEGED_FIRST
        ? UNPRIVILEGED_FIRST - range.first
        : 0;
    const classes = portClasses(range, keepClass).map((c) => sliceOfClass(c, slice));
    const offsets = (c: PortRange | undefined) =>
      c ? [c.first - range.first, c.last - range.first + 1] : [0, 0];
    [this.lowLo, this.lowHi] = classes.length === 2 ? offsets(classes[0]) : [0, 0];
    [this.highLo, this.highHi] = offsets(classes[classes.length - 1]);
    this.free = new Uint32Array(addresses).fill(this.lowHi - this.lowLo + this.highHi - this.highLo);
    this.lowFree = new Uint32Array(addresses).fill(this.lowHi - this.lowLo);
    this.rng = seed >>> 0 || 1;
  }

  get byteLength(): number {
    return this.bits.byteLength + this.free.byteLength + this.lowFree.byteLength;
  }

  inRange(port: number): boolean {
    return port >= this.first && port <= this.last;
  }

  /** Whether offset o (port - first) is in this worker's slice. */
  private owns(o: number): boolean {
    return (o >= this.lowLo && o < this.lowHi) || (o >= this.highLo && o < this.highHi);
  }

  /** Free ports on the address in the class an inside port `port` is mapped into. */
  freeFor(addrIdx: number, port: number): number {
    if (this.split === 0) return this.free[addrIdx];
    return port < UNPRIVILEGED_FIRST ? this.lowFree[addrIdx] : this.free[addrIdx] - this.lowFree[addrIdx];
  }

  isFree(addrIdx: number, port: number): boolean {
    if (!this.inRange(port)) return false;
    const o = port - this.first;
    return (this.bits[addrIdx * this.words + (o >>> 5)] & (1 << (o & 31))) === 0;
  }

  /** Marks a specific port used; false when it is outside the range or taken. */
  take(addrIdx: number, port: number): boolean {
    if (!this.isFree(addrIdx, port)) return false;
    const o = port - this.first;
    this.bits[addrIdx * this.words + (o >>> 5)] |= 1 << (o & 31);
    if (!this.owns(o)) return true;
    this.free[addrIdx]--;
    if (o < this.split) this.lowFree[addrIdx]--;
    return true;
  }

  release(addrIdx: number, port: number): void {
    if (!this.inRange(port)) return;
    const o = port - this.first;
    const w = addrIdx * this.words + (o >>> 5);
    const bit = 1 << (o & 31);
    if ((this.bits[w] & bit) === 0) return;
    this.bits[w] &= ~bit;
    if (!this.owns(o)) return;
    this.free[addrIdx]++;
    if (o < this.split) this.lowFree[addrIdx]++;
  }

  /**
   * Takes a port: `preferred` when it is in this worker's slice and free (port preservation);
   * otherwise a free port of the slice of `preferred`'s class from a random starting point (so
   * mappings are hard to guess, RFC 6056 spirit). With `parity` the port keeps the parity of `preferred` when one of that parity
   * is free (RFC 4787 REQ-4). NO_PORT when the address has none left in that class.
   */
  allocate(addrIdx: number, preferred: number, parity: boolean): number {
    if (this.inRange(preferred) && this.owns(preferred - this.first) && this.take(addrIdx, preferred))
      return preferred;
    if (this.freeFor(addrIdx, preferred) === 0) return NO_PORT;
    // This worker's offsets of the class [lo, hi) and the words that hold them.
    const lo = this.classLo(preferred);
    const hi = this.classHi(preferred);
    const firstWord = lo >>> 5;
    const lastWord = (hi - 1) >>> 5;
    const base = addrIdx * this.words;
    this.rng = nextRandom(this.rng);
    let wi = firstWord + (this.rng % (lastWord - firstWord + 1));
    // Masks of the usable bits: the class's bounds in its first and last word, and the ports of
    // preferred's parity (port = first + word * 32 + bit, so a bit's parity is first's + its own).
    const loMask = -1 << (lo & 31);
    const hiBit = (hi - 1) & 31;
    const hiMask = hiBit === 31 ? -1 : (1 << (hiBit + 1)) - 1;
    const parityMask = ((this.first ^ preferred) & 1) === 0 ? 0x55555555 : 0xaaaaaaaa | 0;
    for (let pass = parity ? 0 : 1; pass < 2; pass++) {
      const want = pass === 0 ? parityMask : -1;
      for (let k = lastWord - firstWord; k >= 0; k--) {
        let free = ~this.bits[base + wi] & want;
        if (wi === firstWord) free &= loMask;
        if (wi === lastWord) free &= hiMask;
        if (free !== 0) {
          // The lowest usable bit of the word.
          const bit = 31 - Math.clz32(free & -free);
          this.bits[base + wi] |= 1 << bit;
          this.free[addrIdx]--;
          const o = (wi << 5) + bit;
          if (o < this.split) this.lowFree[addrIdx]--;
          return this.first + o;
        }
        wi = wi === lastWord ? firstWord : wi + 1;
      }
    }
    return NO_PORT;
  }

  /**
   * Loads the bitmap words allocate(addrIdx, preferred) reads first: preferred's own and the one
   * its random search would start at (the generator's next value, not drawn). A pool address
   * owns 8 KB of bitmap per protocol, so each is a cache miss of its own; loaded early, they
   * overlap the flow lookups' misses instead of following them. Returns a meaningless number
   * (the caller adds it to a sink so the loads are not optimized away).
   */
  warm(addrIdx: number, preferred: number): number {
    const base = addrIdx * this.words;
    const lo = this.classLo(preferred);
    const firstWord = lo >>> 5;
    const start = nextRandom(this.rng) % (((this.classHi(preferred) - 1) >>> 5) - firstWord + 1);
    const own = this.inRange(preferred) ? this.bits[base + ((preferred - this.first) >>> 5)] : 0;
    return own + this.bits[base + firstWord + start];
  }

  /** The first offset (port - first) of this worker's slice of the class `port` is mapped into. */
  private classLo(port: number): number {
    return this.split !== 0 && port < UNPRIVILEGED_FIRST ? this.lowLo : this.highLo;
  }

  /** One past the last offset of that slice. */
  private classHi(port: number): number {
    return this.split !== 0 && port < UNPRIVILEGED_FIRST ? this.lowHi : this.highHi;
  }
}

/** xorshift32: the allocator's random starting points (never 0 from a non-zero state). */
function nextRandom(x: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}
