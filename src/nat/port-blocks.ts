// Port blocks (`[cgnat] port_block`, RFC 6888 REQ-4, RFC 7422 §1 / VPP's port-block logging): an
// inside host gets a block of contiguous outside ports of its paired address on its first
// mapping, and another when its blocks are full, up to `maxPerHost` blocks per protocol. Its
// mappings take ports of its own blocks only, so one log record per block (EV_PORT_BLOCK_ADDED /
// DELETED) says who held every port in it. A block whose last mapping went keeps its owner for
// the reuse delay (RFC 6888 REQ-8: 120 s) and is then freed, its deletion logged; the owner may
// use it again meanwhile. Blocks lie in the unprivileged class of the range (1024 and up where the
// range has it) of this worker's slice (port-slices.ts); a block allocator is made only with
// `[cgnat]` on, so the allocator and the slow path are unchanged without it.
//
// The table is flat typed arrays over (outside address, block); a host's blocks are found by a
// scan of its address's blocks (the slow path only: a new mapping, a mapping gone, a second's
// sweep while blocks wait). Nothing allocates.
import type { PortRange } from "./config.ts";
import { NO_PORT, type PortAllocator } from "./port-allocator.ts";
import { type PortSlice, portClasses, sliceOfClass, WHOLE_RANGE } from "./port-slices.ts";

/** RFC 6888 REQ-8: a port is not given to another host for 120 s after its last mapping went. */
export const BLOCK_REUSE_DELAY_MS = 120_000;

const FREE = 0;
const OWNED = 1;
/** Empty, kept for its owner until `emptySince` + the delay. */
const COOLING = 2;

/** What the block table reports (the engine logs it): a block given to or taken from a host. */
export interface BlockSink {
  blockAdded(proto: number, inAddr: number, outIdx: number, first: number, last: number): void;
  blockDeleted(proto: number, inAddr: number, outIdx: number, first: number, last: number): void;
}

/** Freed blocks remembered per protocol for `masq whois --at` (the oldest are forgotten first). */
export const BLOCK_HISTORY = 4096;

/**
 * A block's holder as whois reports it: engine-clock times, `untilMs` -1 while it is held;
 * deterministic mode's fixed range has proto 0 (every protocol) and `sinceMs` -1 (always).
 */
export interface BlockHolder {
  proto: number;
  inAddr: number;
  first: number;
  last: number;
  sinceMs: number;
  untilMs: number;
}

/** Why allocate() gave no port. */
export const BLOCK_QUOTA = -2;

export class PortBlocks {
  readonly size: number;
  readonly maxPerHost: number;
  /** Blocks per outside address, and the first port of block 0. */
  readonly perAddress: number;
  readonly first: number;
  private readonly owner: Uint32Array;
  private readonly state: Uint8Array;
  private readonly used: Uint16Array;
  private readonly emptySince: Float64Array;
  private readonly addedMs: Float64Array;
  /** A ring of freed blocks: owner, block, given and freed times; `histNext` counts all freed. */
  private readonly histOwner = new Uint32Array(BLOCK_HISTORY);
  private readonly histBlock = new Uint32Array(BLOCK_HISTORY);
  private readonly histSince = new Float64Array(BLOCK_HISTORY);
  private readonly histUntil = new Float64Array(BLOCK_HISTORY);
  private histNext = 0;
  /** Blocks now cooling (the sweep has nothing to do at 0). */
  cooling = 0;
  /** Blocks now held (owned or cooling). */
  held = 0;
  private rng: number;

  constructor(
    readonly proto: number,
    range: PortRange,
    keepClass: boolean,
    addresses: number,
    size: number,
    maxPerHost: number,
    slice: PortSlice = WHOLE_RANGE,
    private readonly delayMs = BLOCK_REUSE_DELAY_MS,
    seed = 0x68e31da4,
  ) {
    const classes = portClasses(range, keepClass);
    const c = sliceOfClass(classes[classes.length - 1], slice) ?? {
      first: range.first,
      last: range.first - 1,
    };
    this.size = size;
    this.maxPerHost = maxPerHost;
    this.first = c.first;
    this.perAddress = Math.floor((c.last - c.first + 1) / size);
    const n = this.perAddress * addresses;
    this.owner = new Uint32Array(n);
    this.state = new Uint8Array(n);
    this.used = new Uint16Array(n);
    this.emptySince = new Float64Array(n);
    this.addedMs = new Float64Array(n);
    this.rng = seed >>> 0 || 1;
  }

  get byteLength(): number {
    return this.owner.byteLength * 4;
  }

  /** The block (index over all addresses) holding `port` of address outIdx, or -1. */
  blockOf(outIdx: number, port: number): number {
    const k = Math.floor((port - this.first) / this.size);
    return port < this.first || k >= this.perAddress ? -1 : outIdx * this.perAddress + k;
  }

  /** Ports [first, last] of block b. */
  blockFirst(b: number): number {
    return this.first + (b % this.perAddress) * this.size;
  }

  /** The inside host holding `port` of address outIdx now (owned or cooling), or -1. */
  holder(outIdx: number, port: number): number {
    const b = this.blockOf(outIdx, port);
    return b < 0 || this.state[b] === FREE ? -1 : this.owner[b];
  }

  /** Blocks host inAddr holds on address outIdx. */
  countOf(inAddr: number, outIdx: number): number {
    const base = outIdx * this.perAddress;
    let n = 0;
    for (let k = 0; k < this.perAddress; k++)
      if (this.state[base + k] !== FREE && this.owner[base + k] === inAddr) n++;
    return n;
  }

  /**
   * A port for a new mapping of host inAddr on address outIdx: `preferred` when it is free in one
   * of the host's blocks, else a free one of its blocks, else one of a new block (logged to
   * `sink`). BLOCK_QUOTA when the host's blocks are full and it holds its quota of them, NO_PORT
   * when no block is left on the address.
   */
  allocate(
    ports: PortAllocator,
    outIdx: number,
    inAddr: number,
    preferred: number,
    parity: boolean,
    nowMs: number,
    sink: BlockSink | null,
  ): number {
    const base = outIdx * this.perAddress;
    const own = this.blockOf(outIdx, preferred);
    if (own >= 0 && this.state[own] !== FREE && this.owner[own] === inAddr && ports.take(outIdx, preferred)) {
      this.charge(own);
      return preferred;
    }
    let held = 0;
    for (let k = 0; k < this.perAddress; k++) {
      const b = base + k;
      if (this.state[b] === FREE || this.owner[b] !== inAddr) continue;
      held++;
      const p = this.takeIn(ports, outIdx, b, preferred, parity);
      if (p !== NO_PORT) {
        this.charge(b);
        return p;
      }
    }
    if (held >= this.maxPerHost) return BLOCK_QUOTA;
    // A free block, or one whose delay is over, from a random starting point.
    this.rng = nextRandom(this.rng);
    const start = this.perAddress > 0 ? this.rng % this.perAddress : 0;
    for (let j = 0; j < this.perAddress; j++) {
      const b = base + ((start + j) % this.perAddress);
      if (this.state[b] === COOLING && nowMs - this.emptySince[b] >= this.delayMs)
        this.free(b, outIdx, sink, nowMs);
      if (this.state[b] !== FREE) continue;
      const p = this.takeIn(ports, outIdx, b, preferred, parity);
      if (p === NO_PORT) continue; // every port of it pinned by name
      this.state[b] = OWNED;
      this.owner[b] = inAddr;
      this.used[b] = 1;
      this.addedMs[b] = nowMs;
      this.held++;
      if (sink !== null)
        sink.blockAdded(this.proto, inAddr, outIdx, this.blockFirst(b), this.blockFirst(b) + this.size - 1);
      return p;
    }
    return NO_PORT;
  }

  /** A mapping on a block's port (taken by allocate) went: the block cools when it is empty. */
  released(outIdx: number, port: number, nowMs: number): void {
    const b = this.blockOf(outIdx, port);
    if (b < 0 || this.state[b] !== OWNED || this.used[b] === 0) return;
    if (--this.used[b] !== 0) return;
    this.state[b] = COOLING;
    this.emptySince[b] = nowMs;
    this.cooling++;
  }

  /**
   * Host inAddr's mapping took `port` by name (a finished mapping's, closed-mappings.ts): counted
   * in its block when the block is the host's.
   */
  retaken(outIdx: number, port: number, inAddr: number): void {
    const b = this.blockOf(outIdx, port);
    if (b >= 0 && this.state[b] !== FREE && this.owner[b] === inAddr) this.charge(b);
  }

  /** Frees (and logs) the blocks whose delay is over; call about once a second. */
  sweep(nowMs: number, sink: BlockSink | null): void {
    if (this.cooling === 0) return;
    const n = this.state.length;
    for (let b = 0; b < n; b++)
      if (this.state[b] === COOLING && nowMs - this.emptySince[b] >= this.delayMs)
        this.free(b, Math.floor(b / this.perAddress), sink, nowMs);
  }

  /** Visits every held block: (inside host, outside address index, first port, last port). */
  forEach(visit: (inAddr: number, outIdx: number, first: number, last: number) => void): void {
    for (let b = 0; b < this.state.length; b++)
      if (this.state[b] !== FREE) {
        const first = this.blockFirst(b);
        visit(this.owner[b], Math.floor(b / this.perAddress), first, first + this.size - 1);
      }
  }

  /**
   * Who held `port` of address outIdx: now (atMs undefined), or at engine time atMs (the block
   * held now if it was given before then, else a remembered freed one). Not on the packet path.
   */
  whois(outIdx: number, port: number, atMs?: number): BlockHolder | undefined {
    const b = this.blockOf(outIdx, port);
    if (b < 0) return undefined;
    const first = this.blockFirst(b);
    const holder = (inAddr: number, sinceMs: number, untilMs: number): BlockHolder => ({
      proto: this.proto,
      inAddr,
      first,
      last: first + this.size - 1,
      sinceMs,
      untilMs,
    });
    if (this.state[b] !== FREE && (atMs === undefined || atMs >= this.addedMs[b]))
      return holder(this.owner[b], this.addedMs[b], -1);
    if (atMs === undefined) return undefined;
    const n = Math.min(this.histNext, BLOCK_HISTORY);
    for (let k = 1; k <= n; k++) {
      const h = (this.histNext - k) % BLOCK_HISTORY;
      if (this.histBlock[h] === b && atMs >= this.histSince[h] && atMs <= this.histUntil[h])
        return holder(this.histOwner[h], this.histSince[h], this.histUntil[h]);
    }
    return undefined;
  }

  private charge(b: number): void {
    if (this.state[b] === COOLING) {
      this.state[b] = OWNED;
      this.cooling--;
    }
    this.used[b]++;
  }

  private free(b: number, outIdx: number, sink: BlockSink | null, nowMs: number): void {
    const h = this.histNext++ % BLOCK_HISTORY;
    this.histOwner[h] = this.owner[b];
    this.histBlock[h] = b;
    this.histSince[h] = this.addedMs[b];
    this.histUntil[h] = nowMs;
    this.state[b] = FREE;
    this.cooling--;
    this.held--;
    if (sink !== null)
      sink.blockDeleted(
        this.proto,
        this.owner[b],
        outIdx,
        this.blockFirst(b),
        this.blockFirst(b) + this.size - 1,
      );
  }

  /** A free port of block b (takeInRange). */
  private takeIn(
    ports: PortAllocator,
    outIdx: number,
    b: number,
    preferred: number,
    parity: boolean,
  ): number {
    const lo = this.blockFirst(b);
    return takeInRange(ports, outIdx, lo, lo + this.size - 1, preferred, parity);
  }
}

/**
 * Takes a free port of lo..hi on address outIdx: `preferred` when it lies there and is free, else
 * the first free one (of preferred's parity first with `parity`); NO_PORT when none is.
 */
export function takeInRange(
  ports: PortAllocator,
  outIdx: number,
  lo: number,
  hi: number,
  preferred: number,
  parity: boolean,
): number {
  if (preferred >= lo && preferred <= hi && ports.take(outIdx, preferred)) return preferred;
  for (let pass = parity ? 0 : 1; pass < 2; pass++)
    for (let p = lo; p <= hi; p++)
      if ((pass === 1 || ((p ^ preferred) & 1) === 0) && ports.take(outIdx, p)) return p;
  return NO_PORT;
}

function nextRandom(x: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}
