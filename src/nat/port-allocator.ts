// Outside ports per (outside address, protocol): a bitmap over the configured range, so taking,
// releasing and testing a port are O(1) and exhaustion is known at once from a counter.
import type { PortRange } from "./config.ts";

export const NO_PORT = -1;

export class PortAllocator {
  private readonly first: number;
  private readonly last: number;
  private readonly size: number;
  /** One bitmap of `words` words per outside address; bit set = port in use. */
  private readonly bits: Uint32Array;
  private readonly words: number;
  readonly free: Uint32Array;
  private rng: number;

  constructor(range: PortRange, addresses: number, seed = 0x2545f491) {
    this.first = range.first;
    this.last = range.last;
    this.size = range.last - range.first + 1;
    this.words = (this.size + 31) >>> 5;
    this.bits = new Uint32Array(this.words * addresses);
    this.free = new Uint32Array(addresses).fill(this.size);
    this.rng = seed >>> 0 || 1;
  }

  get byteLength(): number {
    return this.bits.byteLength + this.free.byteLength;
  }

  inRange(port: number): boolean {
    return port >= this.first && port <= this.last;
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
    this.free[addrIdx]--;
    return true;
  }

  release(addrIdx: number, port: number): void {
    if (!this.inRange(port)) return;
    const o = port - this.first;
    const w = addrIdx * this.words + (o >>> 5);
    const bit = 1 << (o & 31);
    if ((this.bits[w] & bit) === 0) return;
    this.bits[w] &= ~bit;
    this.free[addrIdx]++;
  }

  /**
   * Takes a port: `preferred` when it is in range and free (port preservation); otherwise a free
   * port from a random starting point (so mappings are hard to guess, RFC 6056 spirit). With
   * `parity` the port keeps the parity of `preferred` when one of that parity is free (RFC 4787
   * REQ-4). NO_PORT when the address has none left.
   */
  allocate(addrIdx: number, preferred: number, parity: boolean): number {
    if (this.take(addrIdx, preferred)) return preferred;
    if (this.free[addrIdx] === 0) return NO_PORT;
    const base = addrIdx * this.words;
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    const startWord = this.rng % this.words;
    const wantParity = parity ? preferred & 1 : -1;
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < this.words; k++) {
        const wi = (startWord + k) % this.words;
        let used = this.bits[base + wi];
        if (used === 0xffffffff || used === -1) continue;
        // Scan the free bits of this word.
        for (let bit = 0; bit < 32; bit++) {
          if (used & (1 << bit)) continue;
          const o = (wi << 5) + bit;
          if (o >= this.size) break;
          const port = this.first + o;
          if (pass === 0 && wantParity >= 0 && (port & 1) !== wantParity) continue;
          this.bits[base + wi] = used | (1 << bit);
          used = this.bits[base + wi];
          this.free[addrIdx]--;
          return port;
        }
      }
      if (wantParity < 0) break;
    }
    return NO_PORT;
  }
}
