// The flow (session) table: one 64-byte record per flow in a single ArrayBuffer (one cache line,
// so a lookup touches the index slot and the record and nothing else), found through one hash
// index under two keys: the inside view (proto, inside addr:port, remote addr:port) and the
// outside view (proto, outside addr:port, remote addr:port).
import { IPPROTO_GRE } from "../packet/ipv4.ts";
import { HashIndex, hashTuple, randomSeed } from "./hash-index.ts";
import { plainAllocator, type TableAllocator } from "./table-memory.ts";

/** Words (u32) of a flow record. */
export const F_IN_ADDR = 0;
export const F_OUT_ADDR = 1;
export const F_REM_ADDR = 2;
/** inside port << 16 | outside port (ICMP echo: identifiers). */
export const F_PORTS = 3;
/** remote port << 16 | protocol << 8 | state byte (see STATE_* and SEEN_*). */
export const F_META = 4;
/** Seconds (engine clock) of the last packet. */
export const F_LAST_SEEN = 5;
/**
 * While the flow lives: the application-level gateway watching it (0: none), kept in the record
 * so the check costs no extra cache line. While the record is free: the free-list link.
 */
export const F_ALG = 6;
/** Next flow (index + 1) of the same endpoint mapping. */
export const F_MAP_NEXT = 7;
/** Float64 slots of a record (8 per record): packet and byte counters. */
export const D_PKTS_OUT = 4;
export const D_PKTS_IN = 5;
export const D_BYTES_OUT = 6;
export const D_BYTES_IN = 7;

export const FLOW_WORDS = 16;
export const FLOW_BYTES = FLOW_WORDS * 4;

/** State byte: bits 0-2 the state, bit 3 set when the flow was admitted inbound, bits 4-7 seen. */
export const STATE_MASK = 0x07;
export const STATE_ACTIVE = 0; // UDP, ICMP
// TCP (src/nat/tcp-state.ts), whichever side opened: the opener's SYN only; both SYNs seen but not
// both acknowledged (a SYN-ACK or crossing SYNs); both acknowledged.
export const STATE_SYN_SENT = 1;
export const STATE_SYN_RECEIVED = 2;
export const STATE_ESTABLISHED = 3;
export const STATE_FIN_WAIT = 4;
export const STATE_TIME_WAIT = 5;
export const STATE_CLOSED = 6;
/** Origin bit of the state byte: clear for a flow an inside host opened, set for one admitted inbound. */
export const ORIGIN_OUTBOUND = 0;
export const ORIGIN_INBOUND = 0x08;
export const SEEN_SYN_OUT = 0x10;
export const SEEN_SYN_IN = 0x20;
export const SEEN_FIN_OUT = 0x40;
export const SEEN_FIN_IN = 0x80;

export const STATE_NAMES = [
  "active",
  "syn-sent",
  "syn-received",
  "established",
  "fin-wait",
  "time-wait",
  "closed",
  "?",
];

export const NO_FLOW = -1;

export class FlowTable {
  readonly capacity: number;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;
  readonly index: HashIndex;
  private readonly seed: number;
  private freeHead = 0; // index + 1
  /**
   * Records from here on were never used: taken in order once the free list is empty, so the
   * unused part of the table stays zero (a snapshot stores only the pages with data).
   */
  private fresh = 0;
  count = 0;

  constructor(capacity: number, allocate: TableAllocator = plainAllocator, hashSeed = 0) {
    this.capacity = capacity;
    this.seed = randomSeed(hashSeed, 1);
    const buf = allocate(capacity * FLOW_BYTES);
    this.u32 = new Uint32Array(buf);
    this.f64 = new Float64Array(buf);
    this.index = new HashIndex(capacity * 2, allocate);
  }

  /** Records below this index may have been used; those from it on never were (all zero). */
  get highWater(): number {
    return this.fresh;
  }

  get byteLength(): number {
    return this.u32.byteLength + this.index.byteLength;
  }

  /** Takes a free record (zeroed counters) or returns NO_FLOW when the table is full. */
  alloc(): number {
    const h = this.freeHead;
    let i: number;
    if (h !== 0) {
      i = h - 1;
      this.freeHead = this.u32[i * FLOW_WORDS + F_ALG];
    } else if (this.fresh < this.capacity) i = this.fresh++;
    else return NO_FLOW;
    const base = i * FLOW_WORDS;
    // A loop, not fill(): TypedArray.prototype.fill is a call into C++ (~0.1 µs) per new flow.
    const u = this.u32;
    for (let w = 0; w < FLOW_WORDS; w++) u[base + w] = 0;
    this.count++;
    return i;
  }

  free(i: number): void {
    this.u32[i * FLOW_WORDS + F_META] = 0;
    this.u32[i * FLOW_WORDS + F_ALG] = this.freeHead;
    this.freeHead = i + 1;
    this.count--;
  }

  insideHash(proto: number, inAddr: number, inPort: number, remAddr: number, remPort: number): number {
    return hashTuple(this.seed, proto, inAddr, inPort, remAddr, remPort);
  }

  outsideHash(proto: number, outAddr: number, outPort: number, remAddr: number, remPort: number): number {
    return hashTuple(this.seed ^ 0x5bd1e995, proto, outAddr, outPort, remAddr, remPort);
  }

  /** The flow whose inside view is this tuple, or NO_FLOW. */
  lookupInside(proto: number, inAddr: number, inPort: number, remAddr: number, remPort: number): number {
    const h = this.insideHash(proto, inAddr, inPort, remAddr, remPort);
    const s = this.index.slots;
    const mask = this.index.mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const ref = s[2 * i + 1];
      if (ref === 0) return NO_FLOW;
      // Inside keys have an odd reference ((flow << 1 | 0) + 1).
      if (s[2 * i] === h && (ref & 1) === 1) {
        const f = (ref - 1) >>> 1;
        if (this.hasInsideView(f, proto, inAddr, inPort, remAddr, remPort)) return f;
      }
    }
  }

  /** The flow whose outside view is this tuple, or NO_FLOW. */
  lookupOutside(proto: number, outAddr: number, outPort: number, remAddr: number, remPort: number): number {
    const h = this.outsideHash(proto, outAddr, outPort, remAddr, remPort);
    const s = this.index.slots;
    const mask = this.index.mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const ref = s[2 * i + 1];
      if (ref === 0) return NO_FLOW;
      if (s[2 * i] === h && (ref & 1) === 0) {
        const f = (ref - 2) >>> 1;
        if (this.hasOutsideView(f, proto, outAddr, outPort, remAddr, remPort)) return f;
      }
    }
  }

  /**
   * Whether record f is a live flow with this inside view (free records have a zero meta word).
   * The addresses may come signed or unsigned (the bits are compared), as in the lookups.
   */
  hasInsideView(
    f: number,
    proto: number,
    inAddr: number,
    inPort: number,
    remAddr: number,
    remPort: number,
  ): boolean {
    const b = f * FLOW_WORDS;
    const u = this.u32;
    return (
      (u[b + F_IN_ADDR] ^ inAddr) === 0 &&
      (u[b + F_REM_ADDR] ^ remAddr) === 0 &&
      u[b + F_PORTS] >>> 16 === inPort &&
      (u[b + F_META] & 0xffffff00) >>> 0 === ((remPort << 16) | (proto << 8)) >>> 0
    );
  }

  /** Whether record f is a live flow with this outside view. */
  hasOutsideView(
    f: number,
    proto: number,
    outAddr: number,
    outPort: number,
    remAddr: number,
    remPort: number,
  ): boolean {
    const b = f * FLOW_WORDS;
    const u = this.u32;
    return (
      (u[b + F_OUT_ADDR] ^ outAddr) === 0 &&
      (u[b + F_REM_ADDR] ^ remAddr) === 0 &&
      (u[b + F_PORTS] & 0xffff) === outPort &&
      (u[b + F_META] & 0xffffff00) >>> 0 === ((remPort << 16) | (proto << 8)) >>> 0
    );
  }

  /** Adds both keys of a record whose address, port and meta words are set. */
  link(f: number): void {
    this.index.insert(this.insideKeyOf(f), (f << 1) + 1);
    this.index.insert(this.outsideKeyOf(f), (f << 1) + 2);
  }

  unlink(f: number): void {
    this.index.remove(this.insideKeyOf(f), (f << 1) + 1);
    this.index.remove(this.outsideKeyOf(f), (f << 1) + 2);
  }

  // A GRE flow's packets carry one key only, the receiver's (PPTP's call id, RFC 2637 §4.1): the
  // remote's on the way out, ours on the way in. So its inside key leaves out the inside port (the
  // inside host's call id) and its outside key the remote port; for every other protocol the
  // record's fields are the keys (address-only flows have zero ports: src/nat/generic-flow.ts).
  private insideKeyOf(f: number): number {
    const b = f * FLOW_WORDS;
    const u = this.u32;
    const proto = (u[b + F_META] >>> 8) & 0xff;
    const inPort = proto === IPPROTO_GRE ? 0 : u[b + F_PORTS] >>> 16;
    return this.insideHash(proto, u[b + F_IN_ADDR], inPort, u[b + F_REM_ADDR], u[b + F_META] >>> 16);
  }

  private outsideKeyOf(f: number): number {
    const b = f * FLOW_WORDS;
    const u = this.u32;
    const proto = (u[b + F_META] >>> 8) & 0xff;
    const remPort = proto === IPPROTO_GRE ? 0 : u[b + F_META] >>> 16;
    return this.outsideHash(proto, u[b + F_OUT_ADDR], u[b + F_PORTS] & 0xffff, u[b + F_REM_ADDR], remPort);
  }

  /** Free records have a zero meta word (protocol 0 never starts a flow). */
  isLive(f: number): boolean {
    return this.u32[f * FLOW_WORDS + F_META] !== 0;
  }

  proto(f: number): number {
    return (this.u32[f * FLOW_WORDS + F_META] >>> 8) & 0xff;
  }

  stateByte(f: number): number {
    return this.u32[f * FLOW_WORDS + F_META] & 0xff;
  }

  setStateByte(f: number, s: number): void {
    const b = f * FLOW_WORDS + F_META;
    this.u32[b] = (this.u32[b] & 0xffffff00) | s;
  }

  // The endpoints of record f, for readers above the engine (src/alg): the word layout stays here.
  inAddr(f: number): number {
    return this.u32[f * FLOW_WORDS + F_IN_ADDR];
  }

  outAddr(f: number): number {
    return this.u32[f * FLOW_WORDS + F_OUT_ADDR];
  }

  remAddr(f: number): number {
    return this.u32[f * FLOW_WORDS + F_REM_ADDR];
  }

  inPort(f: number): number {
    return this.u32[f * FLOW_WORDS + F_PORTS] >>> 16;
  }

  outPort(f: number): number {
    return this.u32[f * FLOW_WORDS + F_PORTS] & 0xffff;
  }

  remPort(f: number): number {
    return this.u32[f * FLOW_WORDS + F_META] >>> 16;
  }
}
