// The NAT engine: given one IPv4 packet in a buffer, decide forward (rewritten in place), drop
// (with a reason) or reply (a packet the engine built). No I/O, no clock of its own, and no
// allocation on the per-packet path of established flows.
//
// This is the engine's public face; the work is done by free functions over one EngineState
// (state.ts), one file per concern:
//   fast-path.ts      process and prefetch: classification and the hit path of TCP/UDP flows
//   new-flow.ts       the slow path: admission, firewall, limits, the mapping and its port
//   icmp-path.ts      echo queries, ICMP errors both ways, the engine's own ICMP answers
//   fragment-path.ts  later fragments, translated as their first or held until it
//   flow-life.ts      the clock and expiry, flows and mappings made and ended, TCP events
//   pins-api.ts       pins made and listed for the control plane
//   views.ts          flows, statistics and memory as the control plane sees them
import type { AlgHook } from "./alg-hook.ts";
import type { EngineConfig } from "./config.ts";
import { type EndOfTable, logEndOfTable } from "./end-of-log.ts";
import { prefetchBatch, processPacket } from "./fast-path.ts";
import { advanceClock, unpin } from "./flow-life.ts";
import { type FlowFilter, FlowListing } from "./flow-listing.ts";
import { holdsOutsidePort, releaseForeignPort, reserveForeignPort } from "./foreign-ports.ts";
import type { HandoffOutbox } from "./fragment-handoff.ts";
import { pptpCall, pptpCallAnswered } from "./generic-flow.ts";
import { applyPolicy, type LivePolicy, withPolicy } from "./live-policy.ts";
import type { NatEventRing } from "./nat-events.ts";
import { buildReject } from "./new-flow.ts";
import { type PinRequest, type PinResult, pinList, pinMapping } from "./pins-api.ts";
import type { BlockHolder } from "./port-blocks.ts";
import { type AddressChange, changePublicAddress, setAddressless } from "./public-address.ts";
import { captureEngine, engineShape, type ImageParts, restoreEngine, type StateImage } from "./snapshot.ts";
import { EngineState } from "./state.ts";
import type { TableAllocator } from "./table-memory.ts";
import { SIDE_BY_ADDRESS } from "./verdicts.ts";
import { type EngineStats, FlowFields, type FlowView, type PinView } from "./view.ts";
import { engineStats, flowView, memoryBytes, readFlow } from "./views.ts";

export type { AlgHook } from "./alg-hook.ts";
export type { LivePolicy } from "./live-policy.ts";
export type { PinRequest, PinResult } from "./pins-api.ts";
export type { AddressChange } from "./public-address.ts";
export type { ImageParts, StateImage } from "./snapshot.ts";
export {
  DROP,
  FORWARD,
  HAND_OVER,
  HANDED,
  HELD,
  REPLY,
  SIDE_BY_ADDRESS,
  SIDE_HAIRPIN,
  SIDE_INSIDE,
  SIDE_OUTSIDE,
} from "./verdicts.ts";

export class NatEngine {
  /** Everything the paths share (state.ts); the fields below are views of it for callers. */
  private readonly s: EngineState;
  readonly counters: Float64Array;
  readonly flowTable: EngineState["flowTable"];
  readonly mappingTable: EngineState["mappingTable"];
  readonly hostTable: EngineState["hostTable"];
  /** Outside ports per inside host and protocol (RFC 6888 REQ-4). */
  readonly portQuota: EngineState["portQuota"];
  /** TCP mappings whose connections have all finished: their ports serve new ones when needed. */
  readonly closedMappings: EngineState["closedMappings"];
  /** Forwards, port-mapping protocol mappings and ALG expectations (see pins.ts). */
  readonly pins: EngineState["pins"];
  /** Where REPLY packets are built. */
  readonly replyBuf: Uint8Array;
  /** MSS clamping and the links' MTUs it follows (read-only here; setMtus changes them). */
  readonly mssClamp: EngineState["mss"];

  /** `allocate`: memory for the flow and mapping tables (e.g. huge pages); plain by default. */
  constructor(config: EngineConfig, allocate?: TableAllocator) {
    const s = new EngineState(config, allocate);
    this.s = s;
    this.counters = s.counters;
    this.flowTable = s.flowTable;
    this.mappingTable = s.mappingTable;
    this.hostTable = s.hostTable;
    this.portQuota = s.portQuota;
    this.closedMappings = s.closedMappings;
    this.pins = s.pins;
    this.replyBuf = s.replyBuf;
    this.mssClamp = s.mss;
  }

  /** The configuration the engine runs with now (setPolicy changes its live settings). */
  get config(): EngineConfig {
    return this.s.config;
  }

  /** Firewall rules for new flows; null when there are none. */
  get firewall(): EngineState["firewall"] {
    return this.s.firewall;
  }

  /**
   * Applies a reload's policy (live-policy.ts): admission, firewall, rates, per-host limits and
   * timeouts from now on; the tables, addresses and ports stay as they are.
   */
  setPolicy(policy: LivePolicy): void {
    const previous = this.s.config;
    this.s.config = withPolicy(previous, policy);
    applyPolicy(this.s, this.s.config, previous);
  }

  /** Length of the packet to send after FORWARD (in the caller's buffer) or REPLY (in replyBuf). */
  get outLen(): number {
    return this.s.outLen;
  }

  /** An ALG that built a REPLY in replyBuf sets its length here. */
  set outLen(n: number) {
    this.s.outLen = n;
  }

  /** Reason code of the latest DROP (see counters.ts). */
  get lastDrop(): number {
    return this.s.lastDrop;
  }

  /** Keeps the prefetch loads observable so the compiler cannot drop them. */
  get prefetchSink(): number {
    return this.s.prefetchSink;
  }

  // ---------------------------------------------------------------- per packet

  /**
   * Translates the IPv4 packet at buf[off, off+len) in place. `nowMs` is the caller's monotonic
   * clock. `l4Partial`: the TCP/UDP checksum holds a partial pseudo-header sum (virtio-net
   * NEEDS_CSUM) rather than a full checksum. `side`: where the packet arrived (SIDE_*).
   * Returns the verdict (FORWARD, DROP, REPLY, HELD, HANDED, HAND_OVER).
   */
  process(
    buf: Uint8Array,
    off: number,
    len: number,
    nowMs: number,
    l4Partial = false,
    side = SIDE_BY_ADDRESS,
  ): number {
    // Stored here, in this small (inlined) method: a double passed on to processPacket would be
    // boxed, a heap allocation per packet.
    this.s.nowMs = nowMs;
    return processPacket(this.s, buf, off, len, l4Partial, side);
  }

  /**
   * Warms the caches for a batch before it is processed: hashes every TCP/UDP packet's key and
   * touches its index slot, then the flow record behind it. The loads of one pass do not depend
   * on each other, so the CPU overlaps their cache misses; with a large table this is what keeps
   * the per-packet cost from being two memory round trips (the batch loop of VPP and DPDK does
   * the same with prefetch instructions). What it found is kept as each packet's candidate flow
   * for process(), which checks it against the packet. `meta` holds (offset, length) pairs.
   */
  prefetch(buf: Uint8Array, meta: Uint32Array, count: number): void {
    prefetchBatch(this.s, buf, meta, count);
  }

  /**
   * Packets released by the engine since the last call (held fragments); undefined when none. The
   * view is valid until the next call to process(): send it at once.
   */
  /**
   * Several workers: fragments this engine handed to other workers since the datapath last
   * cleared it (fragment-handoff.ts); null with one worker.
   */
  get handoffOutbox(): HandoffOutbox | null {
    return this.s.handoff;
  }

  /** After HAND_OVER: the worker the packet goes to. */
  get handoffWorker(): number {
    return this.s.handoffWorker;
  }

  takePending(): Uint8Array | undefined {
    return this.s.fragments.store.takePending();
  }

  get pendingCount(): number {
    return this.s.fragments.store.pendingCount;
  }

  /**
   * Packets the engine made on its own clock for outside hosts: RFC 5382 REQ-4 answers to
   * unsolicited SYNs (ICMP port unreachable, 6 s after the SYN). Undefined when none waits.
   */
  takeAnswer(): Uint8Array | undefined {
    return this.s.unsolicitedSyns?.take();
  }

  /** The latest tick stopped at its expiry budget: more flows are due (tick again). */
  get timersBehind(): boolean {
    return this.s.timersBehind;
  }

  /** Advances the clock and expires flows; call about once a second when no packets flow. */
  tick(nowMs: number): void {
    this.s.nowMs = nowMs;
    advanceClock(this.s, Math.floor(nowMs / 1000));
  }

  /** Builds an administratively-prohibited unreachable for the packet (for reject rules). */
  buildReject(b: Uint8Array, off: number, len: number): number {
    return buildReject(this.s, b, off, len);
  }

  // ---------------------------------------------------------------- control plane

  /** Attaches the application-level gateways (src/alg); flows made from now on are classified. */
  attachAlg(hook: AlgHook): void {
    this.s.alg = hook;
  }

  /**
   * The links' MTUs changed (a link event): the MSS clamp of "pmtu" follows them from the next
   * SYN on. `insideMtu`: the smallest of the inside interfaces'.
   */
  setMtus(insideMtu: number, outsideMtu: number): void {
    this.s.mss.setMtus(insideMtu, outsideMtu);
  }

  /**
   * A PPTP call's GRE flow (src/nat/generic-flow.ts): inside host `inAddr`'s call `inCallId` to
   * server `remAddr` (whose call id `remCallId` is 0 until it answers). The flow (its outside
   * call id is flowTable.outPort), or -reason (a drop reason code) when refused.
   */
  pptpCall(inAddr: number, inCallId: number, remAddr: number, remCallId: number): number {
    return pptpCall(this.s, inAddr, inCallId, remAddr, remCallId);
  }

  /** The server answered PPTP call flow f with its call id `remCallId`. */
  pptpCallAnswered(f: number, remCallId: number): void {
    pptpCallAnswered(this.s, f, remCallId);
  }

  /**
   * The NAT events (mappings made and gone, sessions when asked) waiting for the log's drain
   * (src/natlog/); null when `natEvents` is not configured. One ring per engine.
   */
  get natEvents(): NatEventRing | null {
    return this.s.events?.ring ?? null;
  }

  /**
   * At a stop that does not keep the table: ends every flow, pin and port block in the NAT event
   * log (end-of-log.ts), calling `flush` to drain the ring as it fills. The engine is spent.
   */
  logEndOfTable(flush: () => void): EndOfTable {
    return logEndOfTable(this.s, flush);
  }

  /** The engine clock, in seconds: the base for a pin's `expiresAtSec`. */
  get clockSec(): number {
    return this.s.nowSec;
  }

  /**
   * Pins a mapping of inside endpoint inAddr:inPort so it lives without flows and admits inbound
   * connections (from `remoteAddr` only, when given) whatever the filtering mode. The outside
   * port is `outPort` exactly, or when 0 one allocated like any mapping's (the inside port when
   * free). An inside endpoint that already has a mapping keeps it (endpoint-independent mapping,
   * RFC 4787 REQ-1): asking for another outside port for it is refused.
   */
  pinMapping(req: PinRequest): PinResult {
    return pinMapping(this.s, req);
  }

  /** Removes a pin; the mapping goes too once it has neither pins nor flows. */
  unpin(id: number): boolean {
    return unpin(this.s, id);
  }

  /** Moves a pin's deadline (renewal of a PCP/NAT-PMP mapping). */
  renewPin(id: number, expiresAtSec: number): boolean {
    return this.s.pins.renew(id, expiresAtSec);
  }

  /**
   * Interface mode: the outside interface lost its address (true), or has the same one back
   * (false). Meanwhile what inside hosts send to the Internet is dropped (no_public_address).
   */
  setAddressless(none: boolean): void {
    setAddressless(this.s, none);
  }

  /** Whether interface mode has no public address now (see setAddressless). */
  get addressless(): boolean {
    return this.s.addressless;
  }

  /**
   * Interface mode: the public address is now `to`. Flows on the old one go (the returned
   * resets are for the inside hosts' TCP connections: write them to the inside TUN); pinned
   * mappings move to `to` with their ports (public-address.ts).
   */
  changePublicAddress(to: number): AddressChange {
    return changePublicAddress(this.s, to);
  }

  /**
   * Several workers: keeps outside `port`, in this shard's slice, on every public address for
   * another shard's pinned mapping (foreign-ports.ts); false when this shard has it in use.
   */
  reserveForeignPort(proto: "tcp" | "udp", port: number): boolean {
    return reserveForeignPort(this.s, proto, port);
  }

  releaseForeignPort(proto: "tcp" | "udp", port: number): void {
    releaseForeignPort(this.s, proto, port);
  }

  /** Whether a mapping of this engine holds outside `port` on any public address. */
  holdsOutsidePort(proto: "tcp" | "udp", port: number): boolean {
    return holdsOutsidePort(this.s, proto, port);
  }

  /**
   * Several workers: outside packets to TCP/UDP `port` belong to `worker` whatever the port's
   * slice (the steering's override table, for the fragments this shard hands on).
   */
  setPortOwner(proto: number, port: number, worker: number | undefined): void {
    this.s.owners?.setOverride(proto, port, worker);
  }

  /** The outside address paired with an inside host (RFC 4787 REQ-2), for the control plane. */
  pairedAddress(inAddr: number): number {
    // 0 while interface mode has no address: NAT-PMP answers NETWORK_FAILURE.
    if (this.s.addressless) return 0;
    return this.s.outside[this.s.pairedAddressIndex(inAddr)];
  }

  /** Whether port blocks (`[cgnat] port_block`) or deterministic mode are on: whois can answer. */
  get portBlocksOn(): boolean {
    return this.s.blocksTcp !== null || this.s.det !== null;
  }

  /**
   * Who held outside `outAddr`:`port` (RFC 7422 §1's question, for the abuse desk): per protocol,
   * the block's holder now or at engine time `atMs` (port-blocks.ts). Empty without port blocks.
   */
  whois(outAddr: number, port: number, atMs?: number): BlockHolder[] {
    const idx = this.s.outsideIndex(outAddr >>> 0);
    if (idx < 0) return [];
    const det = this.s.det;
    if (det !== null) {
      // Deterministic: the inverse of the configuration's function, for every protocol and time.
      const inAddr = det.insideOf(idx, port);
      if (inAddr < 0) return [];
      const first = det.firstPort(det.indexOf(inAddr));
      return [{ proto: 0, inAddr, first, last: first + det.ports - 1, sinceMs: -1, untilMs: -1 }];
    }
    const found: BlockHolder[] = [];
    for (const blocks of [this.s.blocksTcp, this.s.blocksUdp, this.s.blocksIcmp]) {
      const h = blocks?.whois(idx, port, atMs);
      if (h !== undefined) found.push(h);
    }
    return found;
  }

  /** Pins for listing (not for the packet path). */
  pinList(): PinView[] {
    return pinList(this.s);
  }

  /**
   * A listing of the flow table in bounded steps (flow-listing.ts), newest activity first: the
   * control socket runs it a chunk at a time between packet batches.
   */
  listFlows(filter: FlowFilter = {}, limit = Number.POSITIVE_INFINITY): FlowListing {
    return new FlowListing(this.s.flowTable, filter, limit);
  }

  /** Every flow (at most `limit`), newest activity first, in one go: for tests and small tables. */
  flows(limit = Number.POSITIVE_INFINITY): FlowView[] {
    const listing = this.listFlows({}, limit);
    const out: FlowView[] = [];
    while (!listing.done) listing.step(4096, (f) => out.push(this.flowView(f)));
    return out;
  }

  /** What a listing shows of live flow f, as an object (allocates: not for the packet path). */
  flowView(f: number): FlowView {
    return flowView(readFlow(this.s, f, new FlowFields()));
  }

  /** Fills `out` with live flow f's fields (no allocation); returns it. */
  readFlow(f: number, out: FlowFields): FlowFields {
    return readFlow(this.s, f, out);
  }

  /** Total bytes preallocated for flows and everything sized by them. */
  memoryBytes(): number {
    return memoryBytes(this.s);
  }

  stats(): EngineStats {
    return engineStats(this.s);
  }

  /** The state a restart keeps (src/nat/snapshot.ts), with the layers' above it (`parts`). */
  captureState(parts: ImageParts): StateImage<Uint8Array> {
    return captureEngine(this.s, parts);
  }

  /** Restores captureState's image into this fresh engine of the same configuration. */
  restoreState(image: StateImage, parts: ImageParts): void {
    restoreEngine(this.s, image, parts);
  }

  /** What captureState's image is made of, leaf by leaf (src/control/state-layout.ts). */
  stateShape(parts: ImageParts): string[] {
    return engineShape(this.s, parts);
  }
}
