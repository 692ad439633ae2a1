// Per-inside-host accounting (RFC 6888 REQ-4: limits per subscriber), so one host cannot take the
// whole flow table or a protocol's outside ports. A host's record lives while it has flows (its own
// or inbound half-open ones) or holds outside ports (a pinned mapping holds its port without flows).
import { AddressIndex } from "./address-index.ts";

export const NO_HOST = -1;

/** Protocols a host's outside ports are counted for, as slots of `ports` (see port-quota.ts). */
export const PORT_SLOTS = 3;

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
  /** Outside ports (mappings) the host holds, PORT_SLOTS per host: host * PORT_SLOTS + slot. */
  readonly ports: Uint32Array;
  /** New-flow token bucket per host (src/policy/rate.ts): tokens, and the ms of the last refill. */
  readonly tokens: Float64Array;
  readonly tokenStamps: Float64Array;
  /** Token bucket of the answers to the host's refused new flows (src/nat/exhaustion.ts). */
  readonly answerTokens: Float64Array;
  readonly answerStamps: Float64Array;
  private readonly next: Uint32Array;
  private readonly index: AddressIndex;
  private freeHead: number;
  count = 0;

  constructor(capacity: number, hashSeed = 0) {
    this.capacity = capacity;
    this.addr = new Uint32Array(capacity);
    this.flows = new Uint32Array(capacity);
    this.halfOpen = new Uint32Array(capacity);
    this.ports = new Uint32Array(capacity * PORT_SLOTS);
    this.tokens = new Float64Array(capacity);
    this.tokenStamps = new Float64Array(capacity);
    this.answerTokens = new Float64Array(capacity);
    this.answerStamps = new Float64Array(capacity);
    this.next = new Uint32Array(capacity);
    this.index = new AddressIndex(this.addr, hashSeed, 3);
    for (let i = 0; i < capacity; i++) this.next[i] = i + 2 <= capacity ? i + 2 : 0;
    this.freeHead = capacity > 0 ? 1 : 0;
  }

  get byteLength(): number {
    return (
      this.addr.byteLength * 4 + this.ports.byteLength + this.tokens.byteLength * 4 + this.index.byteLength
    );
  }

  find(addr: number): number {
    return this.index.find(addr);
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
    this.ports.fill(0, i * PORT_SLOTS, (i + 1) * PORT_SLOTS);
    // A new host's buckets start full.
    this.tokenStamps[i] = -1;
    this.answerStamps[i] = -1;
    this.index.insert(addr, i);
    this.count++;
    return i;
  }

  /** Drops one flow from the host; forgets the host when it holds nothing any more. */
  releaseFlow(addr: number): void {
    const i = this.find(addr);
    if (i === NO_HOST) return;
    if (this.flows[i] > 0) this.flows[i]--;
    this.forgetIfIdle(i);
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
    this.forgetIfIdle(i);
  }

  /** Host i gave back an outside port of protocol slot `slot`. */
  releasePort(i: number, slot: number): void {
    const at = i * PORT_SLOTS + slot;
    if (this.ports[at] === 0) return;
    this.ports[at]--;
    this.forgetIfIdle(i);
  }

  private forgetIfIdle(i: number): void {
    if (this.flows[i] !== 0 || this.halfOpen[i] !== 0) return;
    const p = i * PORT_SLOTS;
    for (let s = 0; s < PORT_SLOTS; s++) if (this.ports[p + s] !== 0) return;
    this.index.remove(this.addr[i], i);
    this.next[i] = this.freeHead;
    this.freeHead = i + 1;
    this.count--;
  }
}
