// An open-addressing hash index (linear probing, backward-shift deletion so no tombstones build up
// under churn). Each 8-byte slot holds the full 32-bit hash and a reference (0 = empty); the owner
// compares the real key on a hash match, so the index itself knows nothing about keys.
import { plainAllocator, type TableAllocator } from "./table-memory.ts";

export class HashIndex {
  readonly slots: Uint32Array;
  readonly mask: number;
  count = 0;

  /** `capacity` keys at most; the table is sized to keep the load at or below one half. */
  constructor(capacity: number, allocate: TableAllocator = plainAllocator) {
    let size = 16;
    while (size < capacity * 2) size *= 2;
    this.slots = new Uint32Array(allocate(size * 8));
    // Preallocated means resident: touch every page now (one write per 4 KiB), so the first
    // flows do not pay page faults on the packet path.
    for (let i = 0; i < this.slots.length; i += 1024) this.slots[i] = 0;
    this.mask = size - 1;
  }

  get byteLength(): number {
    return this.slots.byteLength;
  }

  insert(hash: number, ref: number): void {
    const s = this.slots;
    const mask = this.mask;
    let i = hash & mask;
    while (s[2 * i + 1] !== 0) i = (i + 1) & mask;
    s[2 * i] = hash;
    s[2 * i + 1] = ref;
    this.count++;
  }

  /** Removes the slot holding exactly (hash, ref); returns false when it is not there. */
  remove(hash: number, ref: number): boolean {
    const s = this.slots;
    const mask = this.mask;
    let i = hash & mask;
    for (;;) {
      const r = s[2 * i + 1];
      if (r === 0) return false;
      if (r === ref && s[2 * i] === hash) break;
      i = (i + 1) & mask;
    }
    // Backward shift: pull later members of the probe run into the hole when their home slot
    // allows it, so lookups never need to skip deleted entries.
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const r = s[2 * j + 1];
      if (r === 0) break;
      const home = s[2 * j] & mask;
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!inRange) {
        s[2 * hole] = s[2 * j];
        s[2 * hole + 1] = r;
        hole = j;
      }
    }
    s[2 * hole] = 0;
    s[2 * hole + 1] = 0;
    this.count--;
    return true;
  }

  clear(): void {
    this.slots.fill(0);
    this.count = 0;
  }
}

let seedState = 0;

/**
 * A per-table hash seed: random, so remote parties cannot aim collisions at the probe sequence;
 * derived from `fixed` (with `salt`, so tables sharing a fixed seed still hash apart) when it is
 * not 0.
 */
export function randomSeed(fixed = 0, salt = 0): number {
  if (fixed !== 0) return (Math.imul(fixed ^ salt, 0x9e3779b1) ^ salt) >>> 0 || 1;
  seedState = (seedState + 0x9e3779b9) >>> 0;
  return ((Math.random() * 0x100000000) ^ seedState) >>> 0;
}

/** Hash of a (protocol, address, port, address, port) key; murmur3-style mixing. */
export function hashTuple(
  seed: number,
  proto: number,
  a1: number,
  p1: number,
  a2: number,
  p2: number,
): number {
  let h = seed ^ proto;
  h = Math.imul(h ^ a1, 0xcc9e2d51);
  h = (h << 15) | (h >>> 17);
  h = Math.imul(h ^ a2, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  h = Math.imul(h ^ ((p1 << 16) | p2), 0xcc9e2d51);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
