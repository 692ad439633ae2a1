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
    // This worker's offsets [lo, hi) of the class and the words that hold them.
    const low = this.split !== 0 && preferred < UNPRIVILEGED_FIRST;
    const lo = low ? this.lowLo : this.highLo;
    const hi = low ? this.lowHi : this.highHi;
    const firstWord = lo >>> 5;
    const span = ((hi - 1) >>> 5) - firstWord + 1;
    const base = addrIdx * this.words;
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    const start = this.rng % span;
    const wantParity = parity ? preferred & 1 : -1;
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < span; k++) {
        const wi = firstWord + ((start + k) % span);
        let used = this.bits[base + wi];
        if (used === 0xffffffff || used === -1) continue;
        // Scan the free bits of this word.
        for (let bit = 0; bit < 32; bit++) {
          if (used & (1 << bit)) continue;
          const o = (wi << 5) + bit;
          if (o < lo) continue;
          if (o >= hi) break;
          const port = this.first + o;
          if (pass === 0 && wantParity >= 0 && (port & 1) !== wantParity) continue;
          this.bits[base + wi] = used | (1 << bit);
          used = this.bits[base + wi];
          this.free[addrIdx]--;
          if (o < this.split) this.lowFree[addrIdx]--;
          return port;
        }
      }
      if (wantParity < 0) break;
    }
    return NO_PORT;
  }
}
