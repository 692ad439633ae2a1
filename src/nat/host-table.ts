// Per-inside-host accounting (RFC 6888 REQ-4: limits per subscriber), so one host cannot take the
// whole flow table. Hosts come and go with their flows.
import { HashIndex, hashTuple, randomSeed } from "./hash-index.ts";

export const NO_HOST = -1;

export class HostTable {
  readonly capacity: number;
  readonly addr: Uint32Array;
  readonly flows: Uint32Array;
  /**
   * Inbound TCP connections to the host that have not completed their handshake: counted apart
   * from `flows` (the host's quota), so a SYN flood at a forwarded server cannot use that quota
   * up (src/nat/half-open.ts bounds them instead). They join `flows` when the handshake completes.
   */
  readonly halfOpen: Uint32Array;
  /** New-flow token bucket per host (src/policy/rate.ts): tokens, and the ms of the last refill. */
  readonly tokens: Float64Array;
  readonly tokenStamps: Float64Array;
  private readonly next: Uint32Array;
  private readonly index: HashIndex;
  private readonly seed: number;
  private freeHead: number;
  count = 0;

  constructor(capacity: number, hashSeed = 0) {
    this.capacity = capacity;
    this.seed = randomSeed(hashSeed, 3);
    this.addr = new Uint32Array(capacity);
    this.flows = new Uint32Array(capacity);
    this.halfOpen = new Uint32Array(capacity);
    this.tokens = new Float64Array(capacity);
    this.tokenStamps = new Float64Array(capacity);
    this.next = new Uint32Array(capacity);
    this.index = new HashIndex(capacity);
    for (let i = 0; i < capacity; i++) this.next[i] = i + 2 <= capacity ? i + 2 : 0;
    this.freeHead = capacity > 0 ? 1 : 0;
  }

  get byteLength(): number {
    return this.addr.byteLength * 4 + this.tokens.byteLength * 2 + this.index.byteLength;
  }

  private hash(addr: number): number {
    return hashTuple(this.seed, 0, addr, 0, 0, 0);
  }

  find(addr: number): number {
    const h = this.hash(addr);
    const s = this.index.slots;
    const mask = this.index.mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const ref = s[2 * i + 1];
      if (ref === 0) return NO_HOST;
      if (s[2 * i] === h && this.addr[ref - 1] === addr) return ref - 1;
    }
  }

  /** The host's record, created if needed; NO_HOST when the table is full. */
  findOrAdd(addr: number): number {
    const found = this.find(addr);
    if (found !== NO_HOST) return found;
    const h = this.freeHead;
    if (h === 0) return NO_HOST;
    const i = h - 1;
    this.freeHead = this.next[i];
    this.addr[i] = addr;
    this.flows[i] = 0;
    this.halfOpen[i] = 0;
    this.tokenStamps[i] = -1; // a new host's bucket starts full
    this.index.insert(this.hash(addr), i + 1);
    this.count++;
    return i;
  }

  /** Drops one flow from the host; forgets the host when it has none left. */
  releaseFlow(addr: number): void {
    const i = this.find(addr);
    if (i === NO_HOST) return;
    if (this.flows[i] > 0) this.flows[i]--;
    this.forgetIfIdle(i, addr);
  }

  /** One of host i's flows, just counted in `flows`, is an inbound half-open connection instead. */
  countAsHalfOpen(i: number): void {
    if (this.flows[i] > 0) this.flows[i]--;
    this.halfOpen[i]++;
  }

  /** A half-open connection of the host completed its handshake: it counts as the host's flow. */
  promoteHalfOpen(addr: number): void {
    const i = this.find(addr);
    if (i === NO_HOST) return;
    if (this.halfOpen[i] > 0) this.halfOpen[i]--;
    this.flows[i]++;
  }

  /** A half-open connection of the host ended (expired, evicted); forgets an idle host. */
  releaseHalfOpen(addr: number): void {
    const i = this.find(addr);
    if (i === NO_HOST) return;
    if (this.halfOpen[i] > 0) this.halfOpen[i]--;
    this.forgetIfIdle(i, addr);
  }

  private forgetIfIdle(i: number, addr: number): void {
    if (this.flows[i] !== 0 || this.halfOpen[i] !== 0) return;
    this.index.remove(this.hash(addr), i + 1);
    this.next[i] = this.freeHead;
    this.freeHead = i + 1;
    this.count--;
  }
}
