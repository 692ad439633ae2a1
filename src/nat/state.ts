// The engine's state, shared by the paths a packet takes (fast-path.ts, new-flow.ts,
// icmp-path.ts, fragment-path.ts) and the control plane's calls (pins-api.ts, views.ts): the
// tables, what the configuration decides once, the clock, and the few helpers every path uses.
// The paths are free functions over one EngineState (one object shape, so every property access
// stays monomorphic); NatEngine (engine.ts) is the public face and holds one.
import { prefixMask } from "../packet/addr.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { ttlModeCode } from "../packet/ttl.ts";
import type { TokenBucket } from "../policy/rate.ts";
import type { RuleSet } from "../policy/rules.ts";
import type { AlgHook } from "./alg-hook.ts";
import { ClosedMappings } from "./closed-mappings.ts";
import type { EngineConfig, PortRange } from "./config.ts";
import * as C from "./counters.ts";
import { Deterministic } from "./deterministic.ts";
import { ExhaustionAnswers } from "./exhaustion.ts";
import { due } from "./flow-life.ts";
import {
  D_BYTES_IN,
  D_BYTES_OUT,
  D_PKTS_IN,
  D_PKTS_OUT,
  F_LAST_SEEN,
  FLOW_BYTES,
  FLOW_WORDS,
  FlowTable,
  NO_FLOW,
  STATE_CLOSED,
  STATE_ESTABLISHED,
  STATE_MASK,
} from "./flow-table.ts";
import { HandoffOutbox, handOff, ShardOwners } from "./fragment-handoff.ts";
import { applyFragment } from "./fragment-path.ts";
import { FragmentTracker } from "./fragments.ts";
import { GatewayAddresses } from "./gateway-addresses.ts";
import { HalfOpenQueue } from "./half-open.ts";
import { HostTable } from "./host-table.ts";
import { Embedded } from "./icmp.ts";
import { applyPolicy } from "./live-policy.ts";
import { MappingTable } from "./mapping-table.ts";
import { MssClamp } from "./mss-clamp.ts";
import { EngineEvents } from "./nat-event-log.ts";
import { EV_PORT_BLOCK_ADDED, EV_PORT_BLOCK_DELETED } from "./nat-events.ts";
import { PinRegistry } from "./pins.ts";
import { PortAllocator } from "./port-allocator.ts";
import { type BlockSink, PortBlocks } from "./port-blocks.ts";
import { PortQuota } from "./port-quota.ts";
import type { TableAllocator } from "./table-memory.ts";
import { TcpTracker } from "./tcp-state.ts";
import { TimerWheel } from "./timer-wheel.ts";
import type { UnsolicitedSyns } from "./unsolicited-syn.ts";
import { DROP, FORWARD } from "./verdicts.ts";

/** Filtering behaviour (RFC 4787 REQ-8, RFC 5382 REQ-3), as config.filtering names it. */
export const FILTER_ENDPOINT_INDEPENDENT = 0;
export const FILTER_ADDRESS_DEPENDENT = 1;
export const FILTER_ADDRESS_PORT_DEPENDENT = 2;

/** Entries of the prefetch arrays: the most packets one prefetch() call looks at. */
export const PREFETCH_MAX = 1024;

export class EngineState {
  /** The configuration it runs with now (a reload changes its live policy, live-policy.ts). */
  config: EngineConfig;
  readonly counters = new Float64Array(C.COUNTER_SLOTS);
  readonly flowTable: FlowTable;
  readonly mappingTable: MappingTable;
  readonly hostTable: HostTable;
  /** Outside ports per inside host and protocol (RFC 6888 REQ-4). */
  readonly portQuota: PortQuota;
  /** TCP mappings whose connections have all finished: their ports serve new ones when needed. */
  readonly closedMappings: ClosedMappings;
  readonly answers: ExhaustionAnswers;
  readonly wheel: TimerWheel;
  /** Sequence state of TCP flows, and the handshake and close (src/nat/tcp-state.ts). */
  readonly tcp: TcpTracker;
  /** Inbound TCP flows that have not completed their handshake, oldest first. */
  readonly halfOpen: HalfOpenQueue;
  // The live policy (live-policy.ts sets these from the configuration, at start and at a reload).
  maxHalfOpen = 0;
  /** RFC 5382 REQ-4 answers to unsolicited SYNs; null when they are off (the default). */
  unsolicitedSyns: UnsolicitedSyns | null = null;
  /** Forwards, port-mapping protocol mappings and ALG expectations (see pins.ts). */
  readonly pins: PinRegistry;
  readonly fragments: FragmentTracker;
  /** MSS clamping of SYNs, and the links' MTUs it follows. */
  readonly mss: MssClamp;
  /** NAT events for the log (nat-event-log.ts); null when `[nat_log]` is off. */
  readonly events: EngineEvents | null;
  readonly portsTcp: PortAllocator;
  readonly portsUdp: PortAllocator;
  readonly portsIcmp: PortAllocator;
  /** Port blocks per protocol (`[cgnat] port_block`); null when ports are allocated one by one. */
  readonly blocksTcp: PortBlocks | null = null;
  readonly blocksUdp: PortBlocks | null = null;
  readonly blocksIcmp: PortBlocks | null = null;
  /** Deterministic NAT's function (`[cgnat] mode = "deterministic"`), or null. */
  readonly det: Deterministic | null;
  /** Where the blocks' events go: the NAT log's ring, or null (no `[nat_log]`). */
  readonly blockSink: BlockSink | null = null;
  /** Per mapping: 1 when its port was counted in a block (so its going is counted there too). */
  readonly inBlock: Uint8Array;
  readonly insideAddr: Uint32Array;
  readonly insideMask: Uint32Array;
  readonly outside: Uint32Array;
  readonly outsideIndexOf = new Map<number, number>();
  /** The gateway's own addresses: the source of the errors its own stack sends (gatewayError). */
  readonly gateway: GatewayAddresses;
  /** Bounds of the outside addresses: most packets fail this range test and skip the map. */
  outsideMin: number;
  outsideMax: number;
  /**
   * Interface mode: the outside interface has no address now; what inside hosts send to the
   * Internet is dropped (D_NO_PUBLIC_ADDRESS) until one comes (src/nat/public-address.ts).
   */
  addressless = false;
  /** FILTER_* */
  filtering = FILTER_ADDRESS_DEPENDENT;
  readonly interfaceMode: boolean;
  /** TTL_* (src/packet/ttl.ts) */
  readonly ttlMode: number;
  /** Source of the ICMP errors the engine sends as the hop (time exceeded, unreachables). */
  hopAddress: number;
  tEstablished = 0;
  tTransitory = 0;
  tClosed = 0;
  tHalfOpen = 0;
  tUdp = 0;
  tIcmp = 0;
  tGeneric = 0;
  /** The quoted packet of the ICMP error being translated (parseEmbedded fills it). */
  readonly embedded = new Embedded();
  /** Firewall rules for new flows; null when there are none (the common case costs one test). */
  firewall: RuleSet | null = null;
  hostRate = 0;
  globalRate: TokenBucket | null = null;
  /** Caller's clock of the latest call, in ms: the rate limiters' time base. */
  nowMs = 0;
  /** Engine clock: the second of the latest call. */
  nowSec = 0;
  /** The latest expiry stopped at its budget: more flows are due. */
  timersBehind = false;
  /** While behind, packets take up the expiry again from this ms on (one budget per ms at most). */
  catchUpAtMs = 0;
  started = false;

  /** Length of the packet to send after FORWARD (in the caller's buffer) or REPLY (in replyBuf). */
  outLen = 0;
  /** Reason code of the latest DROP (see counters.ts). */
  lastDrop = 0;
  /** Where REPLY packets are built. */
  readonly replyBuf = new Uint8Array(65536);
  /** The application-level gateways; each flow's is decided when it is made (F_ALG). */
  alg: AlgHook | null = null;
  /** The rewrite of the datagram whose held fragments are being released (see firstFragment). */
  releaseSrc = 0;
  releaseDst = 0;
  /** Translates a released fragment with releaseSrc/releaseDst (the tracker's callback). */
  readonly applyReleased: (b: Uint8Array, off: number) => boolean;
  /** Several workers: who owns what comes from outside, and where fragments for others go. */
  readonly owners: ShardOwners | null;
  readonly handoff: HandoffOutbox | null;
  /** The worker the held fragments being released go to (see handOffDatagram). */
  handoffWorker = 0;
  /** Hands a released fragment to handoffWorker; false: it is not queued here (the tracker's callback). */
  readonly handOffReleased: (b: Uint8Array, off: number) => boolean;
  /** The timer wheel's callback (flow-life.ts `due`). */
  readonly dueFn: (f: number) => number;
  readonly prefetchHashes = new Uint32Array(PREFETCH_MAX);
  readonly prefetchSides = new Uint8Array(PREFETCH_MAX);
  /**
   * What the last prefetch found: the flow each packet's key led to (NO_FLOW: none), by packet
   * offset. process() takes it as a candidate for the packet at that offset, checked against the
   * packet's key before use, so a stale or wrong candidate only costs the full lookup.
   */
  readonly prefetchFlows = new Int32Array(PREFETCH_MAX);
  readonly prefetchOffs = new Uint32Array(PREFETCH_MAX);
  prefetchBuf: Uint8Array | null = null;
  prefetchCount = 0;
  prefetchNext = 0;
  /** The prefetched candidate of the packet being processed; taken by its first flow lookup. */
  candidate = NO_FLOW;
  /** Keeps the prefetch loads observable so the compiler cannot drop them. */
  prefetchSink = 0;

  /** `allocate`: memory for the flow and mapping tables (e.g. huge pages); plain by default. */
  constructor(config: EngineConfig, allocate?: TableAllocator) {
    if (config.outside.length === 0) throw new Error("engine: at least one outside address is required");
    // Interface mode started before the outside interface had an address: 0 holds its place.
    this.addressless = config.mode === "interface" && config.outside[0] === 0;
    this.config = config;
    this.flowTable = new FlowTable(config.maxFlows, allocate, config.hashSeed);
    this.mappingTable = new MappingTable(config.maxMappings, this.flowTable, allocate, config.hashSeed);
    this.hostTable = new HostTable(config.maxHosts, config.hashSeed);
    this.portQuota = new PortQuota(this.hostTable, config.maxMappings, config.ports, config.maxPortsPerHost);
    this.answers = new ExhaustionAnswers(this.hostTable);
    this.pins = new PinRegistry(config.maxMappings);
    this.closedMappings = new ClosedMappings(
      this.mappingTable,
      this.flowTable,
      this.pins,
      this.portQuota,
      config.maxHosts,
    );
    this.wheel = new TimerWheel(8192, config.maxFlows);
    this.tcp = new TcpTracker(this.flowTable, allocate);
    this.halfOpen = new HalfOpenQueue(config.maxFlows);
    this.fragments = new FragmentTracker(
      1024,
      config.timeouts.fragmentSec,
      config.maxHeldFragmentBytes,
      config.hashSeed,
    );
    this.applyReleased = (b, off) =>
      applyFragment(this, b, off, this.releaseSrc, this.releaseDst) === FORWARD;
    this.dueFn = (f) => due(this, f);
    const sharded = config.portSlice !== undefined && config.portSlice.count > 1;
    this.owners = sharded ? new ShardOwners(config.ports, config.portSlice!) : null;
    this.handoff = sharded ? new HandoffOutbox() : null;
    this.handOffReleased = (b, off) => {
      handOff(this, this.handoffWorker, b, off, (b[off + 2] << 8) | b[off + 3]);
      return false;
    };
    this.events = config.natEvents ? new EngineEvents(config.natEvents, config.maxHosts) : null;
    this.mss = new MssClamp(config.mssClamp, this.counters, config.insideMtu, config.outsideMtu);
    const n = config.outside.length;
    const seed = config.portSeed >>> 0;
    // TCP and UDP keep an inside port below 1024 below 1024 (RFC 4787 REQ-3); ICMP identifiers
    // have no privileged range.
    const slice = config.portSlice;
    this.portsTcp = new PortAllocator(config.ports.tcp, n, (0x9e3779b9 ^ seed) >>> 0 || 1, true, slice);
    this.portsUdp = new PortAllocator(config.ports.udp, n, (0x7f4a7c15 ^ seed) >>> 0 || 1, true, slice);
    this.portsIcmp = new PortAllocator(config.ports.icmp, n, (0x94d049bb ^ seed) >>> 0 || 1, false, slice);
    const pb = config.portBlocks;
    this.inBlock = new Uint8Array(pb ? config.maxMappings : 0);
    this.det = config.deterministic ? new Deterministic(config.deterministic) : null;
    if (pb) {
      const blocks = (proto: number, range: PortRange, keepClass: boolean) =>
        new PortBlocks(proto, range, keepClass, n, pb.size, pb.maxPerHost, slice, undefined, seed ^ proto);
      this.blocksTcp = blocks(IPPROTO_TCP, config.ports.tcp, true);
      this.blocksUdp = blocks(IPPROTO_UDP, config.ports.udp, true);
      this.blocksIcmp = blocks(IPPROTO_ICMP, config.ports.icmp, false);
      const ev = this.events;
      if (ev !== null)
        this.blockSink = {
          blockAdded: (proto, inAddr, outIdx, first, last) =>
            ev.block(this, EV_PORT_BLOCK_ADDED, proto, inAddr, this.outside[outIdx], first, last),
          blockDeleted: (proto, inAddr, outIdx, first, last) =>
            ev.block(this, EV_PORT_BLOCK_DELETED, proto, inAddr, this.outside[outIdx], first, last),
        };
    }
    this.insideAddr = new Uint32Array(config.inside.map((p) => p.addr & prefixMask(p.len)));
    this.insideMask = new Uint32Array(config.inside.map((p) => prefixMask(p.len)));
    this.outside = new Uint32Array(config.outside);
    this.gateway = new GatewayAddresses(config.gateway, this.insideAddr, this.insideMask);
    for (const [i, a] of config.outside.entries()) this.outsideIndexOf.set(a >>> 0, i);
    this.outsideMin = Math.min(...config.outside.map((a) => a >>> 0));
    this.outsideMax = Math.max(...config.outside.map((a) => a >>> 0));
    this.interfaceMode = config.mode === "interface";
    this.ttlMode = ttlModeCode(config.ttlMode);
    this.hopAddress = config.outside[0];
    applyPolicy(this, config);
  }

  drop(reason: number): number {
    this.lastDrop = reason;
    this.counters[reason]++;
    this.counters[C.C_DROPPED]++;
    return DROP;
  }

  passthrough(): number {
    this.counters[C.C_PASSTHROUGH]++;
    return FORWARD;
  }

  /** Whether `a` (signed or unsigned) is on an inside network. */
  isInside(a: number): boolean {
    const n = this.insideAddr.length;
    for (let i = 0; i < n; i++) if ((a & this.insideMask[i]) >>> 0 === this.insideAddr[i]) return true;
    return false;
  }

  /** The index of outside address `a` (signed or unsigned), or -1 when it is not one of ours. */
  outsideIndex(a: number): number {
    if (this.outside.length === 1) return (this.outside[0] ^ a) === 0 ? 0 : -1;
    const v = a >>> 0;
    if (v < this.outsideMin || v > this.outsideMax) return -1;
    const i = this.outsideIndexOf.get(v);
    return i === undefined ? -1 : i;
  }

  portsFor(proto: number): PortAllocator {
    return proto === IPPROTO_TCP ? this.portsTcp : proto === IPPROTO_UDP ? this.portsUdp : this.portsIcmp;
  }

  /** The protocol's port blocks, or null when `[cgnat]` is off. */
  blocksFor(proto: number): PortBlocks | null {
    return proto === IPPROTO_TCP ? this.blocksTcp : proto === IPPROTO_UDP ? this.blocksUdp : this.blocksIcmp;
  }

  /** Paired pooling (RFC 4787 REQ-2): an inside host always gets the same outside address. */
  pairedAddressIndex(inAddr: number): number {
    if (this.det !== null) {
      const i = this.det.indexOf(inAddr);
      return i < 0 ? 0 : this.det.addressOf(i);
    }
    const n = this.outside.length;
    if (n === 1) return 0;
    let h = Math.imul(inAddr ^ (inAddr >>> 16), 0x45d9f3b);
    h ^= h >>> 16;
    return (h >>> 0) % n;
  }

  /** A packet of flow f went through: its last-seen second and its counters. */
  touch(f: number, bytes: number, out: boolean): void {
    const base = f * FLOW_WORDS;
    this.flowTable.u32[base + F_LAST_SEEN] = this.nowSec;
    const d = this.flowTable.f64;
    const db = f * (FLOW_BYTES / 8);
    if (out) {
      d[db + D_PKTS_OUT]++;
      d[db + D_BYTES_OUT] += bytes;
      this.counters[C.C_BYTES_OUT] += bytes;
    } else {
      d[db + D_PKTS_IN]++;
      d[db + D_BYTES_IN] += bytes;
      this.counters[C.C_BYTES_IN] += bytes;
    }
  }

  /** Idle seconds after which flow f expires, as its protocol and state have it now. */
  timeoutOf(f: number): number {
    const proto = this.flowTable.proto(f);
    if (proto === IPPROTO_UDP) return this.tUdp;
    if (proto === IPPROTO_ICMP) return this.tIcmp;
    if (proto !== IPPROTO_TCP) return this.tGeneric;
    // RFC 7857 §2.2 lets a NAT keep a partially open connection less than the 4 minutes of RFC
    // 5382 REQ-5: an inbound one that never completed its handshake (a SYN flood's) gets the
    // short half-open timeout, in whatever state it is now (a reset does not lengthen it).
    if (this.halfOpen.has(f)) return this.tHalfOpen;
    const st = this.flowTable.stateByte(f) & STATE_MASK;
    if (st === STATE_ESTABLISHED) return this.tEstablished;
    // RFC 7857 §2.2: after a reset the session stays 4 minutes, so a retransmission that crossed
    // the reset (or met a lost one) is still translated, and the port is not reused at once.
    if (st === STATE_CLOSED) return this.tClosed;
    return this.tTransitory;
  }
}
