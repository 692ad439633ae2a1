// Endpoint mappings: inside address:port <-> outside address:port for one protocol, shared by
// every flow (session) of that inside endpoint whatever the remote (endpoint-independent mapping,
// RFC 4787 REQ-1, RFC 5382 REQ-1). A mapping lives while it has flows; its flows form a list,
// threaded through the flow records (F_MAP_NEXT), which only this table reads and writes.
import { F_MAP_NEXT, FLOW_WORDS, type FlowTable, NO_FLOW } from "./flow-table.ts";
import { HashIndex, hashTuple, randomSeed } from "./hash-index.ts";
import { plainAllocator, type TableAllocator } from "./table-memory.ts";

export const M_IN_ADDR = 0;
export const M_OUT_ADDR = 1;
/** inside port << 16 | outside port */
export const M_PORTS = 2;
/** First flow (index + 1) of the mapping; also the free-list link of a free record. */
export const M_HEAD = 3;
export const MAPPING_WORDS = 4;

export const NO_MAPPING = -1;

export class MappingTable {
  readonly capacity: number;
  readonly u32: Uint32Array;
  readonly proto: Uint8Array;
  readonly index: HashIndex;
  private readonly seed: number;
  /** The words of the flow records the mappings' lists run through. */
  private readonly flowWords: Uint32Array;
  private freeHead = 0;
  /** Records from here on were never used (taken in order once the free list is empty). */
  private fresh = 0;
  count = 0;

  constructor(capacity: number, flows: FlowTable, allocate: TableAllocator = plainAllocator, hashSeed = 0) {
    this.capacity = capacity;
    this.flowWords = flows.u32;
    this.seed = randomSeed(hashSeed, 2);
    this.u32 = new Uint32Array(allocate(capacity * MAPPING_WORDS * 4));
    this.proto = new Uint8Array(capacity);
    this.index = new HashIndex(capacity * 2, allocate);
  }

  /** Records below this index may have been used; those from it on never were (all zero). */
  get highWater(): number {
    return this.fresh;
  }

  get byteLength(): number {
    return this.u32.byteLength + this.proto.byteLength + this.index.byteLength;
  }

  insideHash(proto: number, addr: number, port: number): number {
    return hashTuple(this.seed, proto, addr, port, 0, 0);
  }

  outsideHash(proto: number, addr: number, port: number): number {
    return hashTuple(this.seed, proto, 0, 0, addr, port);
  }

  lookupInside(proto: number, addr: number, port: number): number {
    const h = this.insideHash(proto, addr, port);
    const s = this.index.slots;
    const mask = this.index.mask;
    const u = this.u32;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const ref = s[2 * i + 1];
      if (ref === 0) return NO_MAPPING;
      if (s[2 * i] === h && (ref & 1) === 1) {
        const m = (ref - 1) >>> 1;
        const b = m * MAPPING_WORDS;
        if (u[b + M_IN_ADDR] === addr && u[b + M_PORTS] >>> 16 === port && this.proto[m] === proto) return m;
      }
    }
  }

  lookupOutside(proto: number, addr: number, port: number): number {
    const h = this.outsideHash(proto, addr, port);
    const s = this.index.slots;
    const mask = this.index.mask;
    const u = this.u32;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const ref = s[2 * i + 1];
      if (ref === 0) return NO_MAPPING;
      if (s[2 * i] === h && (ref & 1) === 0) {
        const m = (ref - 2) >>> 1;
        const b = m * MAPPING_WORDS;
        if (u[b + M_OUT_ADDR] === addr && (u[b + M_PORTS] & 0xffff) === port && this.proto[m] === proto)
          return m;
      }
    }
  }

  /** Creates and indexes a mapping; NO_MAPPING when the table is full. */
  add(proto: number, inAddr: number, inPort: number, outAddr: number, outPort: number): number {
    const h = this.freeHead;
    let m: number;
    if (h !== 0) {
      m = h - 1;
      this.freeHead = this.u32[m * MAPPING_WORDS + M_HEAD];
    } else if (this.fresh < this.capacity) m = this.fresh++;
    else return NO_MAPPING;
    const b = m * MAPPING_WORDS;
    this.u32[b + M_IN_ADDR] = inAddr;
    this.u32[b + M_OUT_ADDR] = outAddr;
    this.u32[b + M_PORTS] = ((inPort << 16) | outPort) >>> 0;
    this.u32[b + M_HEAD] = 0;
    this.proto[m] = proto;
    this.index.insert(this.insideHash(proto, inAddr, inPort), (m << 1) + 1);
    this.index.insert(this.outsideHash(proto, outAddr, outPort), (m << 1) + 2);
    this.count++;
    return m;
  }

  remove(m: number): void {
    const b = m * MAPPING_WORDS;
    const u = this.u32;
    const proto = this.proto[m];
    this.index.remove(this.insideHash(proto, u[b + M_IN_ADDR], u[b + M_PORTS] >>> 16), (m << 1) + 1);
    this.index.remove(this.outsideHash(proto, u[b + M_OUT_ADDR], u[b + M_PORTS] & 0xffff), (m << 1) + 2);
    u[b + M_HEAD] = this.freeHead;
    this.freeHead = m + 1;
    this.count--;
  }

  /**
   * Moves mapping m to outside address `outAddr`, same port (the public address changed, and a
   * pinned mapping goes with it): its outside key is indexed anew; m and its inside key stay.
   */
  moveOutside(m: number, outAddr: number): void {
    const b = m * MAPPING_WORDS;
    const u = this.u32;
    const proto = this.proto[m];
    const port = u[b + M_PORTS] & 0xffff;
    this.index.remove(this.outsideHash(proto, u[b + M_OUT_ADDR], port), (m << 1) + 2);
    u[b + M_OUT_ADDR] = outAddr;
    this.index.insert(this.outsideHash(proto, outAddr, port), (m << 1) + 2);
  }

  /** Puts flow f (a new one) at the head of mapping m's list. */
  attachFlow(m: number, f: number): void {
    const headAt = m * MAPPING_WORDS + M_HEAD;
    this.flowWords[f * FLOW_WORDS + F_MAP_NEXT] = this.u32[headAt];
    this.u32[headAt] = f + 1;
  }

  /** Takes flow f off mapping m's list (nothing when it is not on it). */
  detachFlow(m: number, f: number): void {
    const fu = this.flowWords;
    const headAt = m * MAPPING_WORDS + M_HEAD;
    const next = fu[f * FLOW_WORDS + F_MAP_NEXT];
    if (this.u32[headAt] === f + 1) {
      this.u32[headAt] = next;
      return;
    }
    for (let ref = this.u32[headAt]; ref !== 0; ) {
      const rb = (ref - 1) * FLOW_WORDS;
      if (fu[rb + F_MAP_NEXT] === f + 1) {
        fu[rb + F_MAP_NEXT] = next;
        return;
      }
      ref = fu[rb + F_MAP_NEXT];
    }
  }

  hasFlows(m: number): boolean {
    return this.u32[m * MAPPING_WORDS + M_HEAD] !== 0;
  }

  /** The newest flow of mapping m, or NO_FLOW; nextFlow walks on to older ones. */
  firstFlow(m: number): number {
    return this.u32[m * MAPPING_WORDS + M_HEAD] - 1;
  }

  /** The flow after f on its mapping's list, or NO_FLOW. */
  nextFlow(f: number): number {
    return this.flowWords[f * FLOW_WORDS + F_MAP_NEXT] - 1;
  }

  /** How many flows mapping m has (walks the list: for listings). */
  flowCount(m: number): number {
    let n = 0;
    for (let f = this.firstFlow(m); f !== NO_FLOW; f = this.nextFlow(f)) n++;
    return n;
  }
}
