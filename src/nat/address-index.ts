// Records found by one IPv4 address (inside hosts, fragment sources): a hash index over the
// owner's column of addresses. Record i is stored as reference i + 1 (0 marks an empty slot).
import { HashIndex, hashTuple, randomSeed } from "./hash-index.ts";

export class AddressIndex {
  private readonly index: HashIndex;
  private readonly seed: number;
  private readonly addrs: Uint32Array;

  /** `addrs`: the owner's address of each record (read on a hash match); `salt` tells tables apart. */
  constructor(addrs: Uint32Array, hashSeed: number, salt: number) {
    this.addrs = addrs;
    this.index = new HashIndex(addrs.length);
    this.seed = randomSeed(hashSeed, salt);
  }

  get byteLength(): number {
    return this.index.byteLength;
  }

  private hash(addr: number): number {
    return hashTuple(this.seed, 0, addr, 0, 0, 0);
  }

  /** The record holding addr, or -1. */
  find(addr: number): number {
    const h = this.hash(addr);
    const s = this.index.slots;
    const mask = this.index.mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const ref = s[2 * i + 1];
      if (ref === 0) return -1;
      if (s[2 * i] === h && this.addrs[ref - 1] === addr) return ref - 1;
    }
  }

  /** Indexes record i under addr (its address, already in the owner's column). */
  insert(addr: number, i: number): void {
    this.index.insert(this.hash(addr), i + 1);
  }

  remove(addr: number, i: number): void {
    this.index.remove(this.hash(addr), i + 1);
  }
}
