// The NAT engine: given one IPv4 packet in a buffer, decide forward (rewritten in place), drop
// (with a reason) or reply (a packet the engine built). No I/O, no clock of its own, and no
// allocation on the per-packet path of established flows.

import type { ErrorCode } from "../errors/codes.ts";
import { formatIpv4, prefixMask } from "../packet/addr.ts";
import { readU16, readU32 } from "../packet/checksum.ts";
import { IP_MF, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import {
  ICMP_CODE_ADMIN_PROHIBITED,
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_TIME_EXCEEDED,
  icmpIsError,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
} from "../packet/l4.ts";
import { validateIpv4 } from "../packet/validate.ts";
import { hasToken, refill, TokenBucket } from "../policy/rate.ts";
import { buildTcpReset } from "../policy/reject.ts";
import { ACT_DROP, ACT_REJECT, DIR_INBOUND, DIR_OUTBOUND, NO_RULE, RuleSet } from "../policy/rules.ts";
import { ClosedMappings } from "./closed-mappings.ts";
import type { EngineConfig } from "./config.ts";
import * as C from "./counters.ts";
import { ExhaustionAnswers } from "./exhaustion.ts";
import { type FlowFilter, FlowListing } from "./flow-listing.ts";
import {
  D_BYTES_IN,
  D_BYTES_OUT,
  D_PKTS_IN,
  D_PKTS_OUT,
  F_ALG,
  F_IN_ADDR,
  F_LAST_SEEN,
  F_MAP_NEXT,
  F_META,
  F_OUT_ADDR,
  F_PORTS,
  F_REM_ADDR,
  FLOW_BYTES,
  FLOW_WORDS,
  FlowTable,
  NO_FLOW,
  ORIGIN_INBOUND,
  STATE_CLOSED,
  STATE_ESTABLISHED,
  STATE_MASK,
  STATE_NAMES,
} from "./flow-table.ts";
import {
  CLASS_INSIDE,
  CLASS_OUTSIDE,
  FRAG_DROP,
  FRAG_FORWARD,
  FragmentTracker,
  HOLD_OK,
  HOLD_SOURCE_BUDGET,
} from "./fragments.ts";
import { GatewayAddresses } from "./gateway-addresses.ts";
import { HalfOpenQueue } from "./half-open.ts";
import { HostTable, NO_HOST } from "./host-table.ts";
import {
  buildEchoReply,
  buildIcmpError,
  Embedded,
  parseEmbedded,
  rewriteEmbedded,
  rewriteEmbeddedSeq,
} from "./icmp.ts";
import {
  M_HEAD,
  M_IN_ADDR,
  M_OUT_ADDR,
  M_PORTS,
  MAPPING_WORDS,
  MappingTable,
  NO_MAPPING,
} from "./mapping-table.ts";
import { type Pin, PinRegistry } from "./pins.ts";
import { NO_PORT, PortAllocator } from "./port-allocator.ts";
import { PortQuota } from "./port-quota.ts";
import { rewriteEndpoint, setTtl } from "./rewrite.ts";
import type { TableAllocator } from "./table-memory.ts";
import {
  TCP_FINISHED,
  TCP_HANDSHAKE_DONE,
  TCP_REOPENED,
  TCP_RST_OUT_OF_WINDOW,
  TCP_WORDS,
  TcpTracker,
} from "./tcp-state.ts";
import { TimerWheel } from "./timer-wheel.ts";
import { UnsolicitedSyns } from "./unsolicited-syn.ts";
import { type EngineStats, FlowFields, type FlowView, type PinView, type Protocol } from "./view.ts";

/** Slots of a probe run the prefetch follows looking for a key's own slot. */
const PREFETCH_PROBES = 8;
/** The packet (rewritten in place) goes out; its length is `outLen`. */
export const FORWARD = 0;
/** The packet is dropped; the reason is `lastDrop` (and counted). */
export const DROP = 1;
/** Send `replyBuf[0, outLen)` instead (an ICMP message the engine built). */
export const REPLY = 2;
/** The engine kept the packet (a fragment waiting for its first); nothing to send now. */
export const HELD = 3;

/**
 * Where a packet came from. The datapath knows (one TUN device per side, fed by the host plan's
 * rules on the arrival interface), and then a packet's side, not its source address, decides
 * inside from outside: a frame from the Internet with an inside source is a forgery, a packet
 * from the LAN with a foreign source is spoofed (BCP 38). Offline replay and most unit tests
 * have no arrival side; there the source address decides, as a capture of one device shows.
 */
export const SIDE_BY_ADDRESS = 0;
/** Arrived on an inside interface. */
export const SIDE_INSIDE = 1;
/** Arrived on the outside interface. */
export const SIDE_OUTSIDE = 2;

const FILTER_EIF = 0;
const FILTER_ADF = 1;
const FILTER_APDF = 2;

/** Records visited per timer-wheel call, so expiry never stalls the packet loop. */
const EXPIRY_BUDGET = 4096;
/**
 * An inbound half-open connection is evicted to make room for another only after it has had this
 * long to complete its handshake (the client's round trip, or the server's first SYN-ACK
 * retransmission at 1 s). Without it a fast enough flood evicts every half-open connection before
 * its ACK can come back, and none completes; with it, a flood of R SYN/s against a cap of C lets
 * C/s through, each sure to be kept a second. A new flow that finds the flow table full evicts
 * regardless of age: an inside host's own flow comes before an unfinished inbound handshake.
 */
const HALF_OPEN_MIN_AGE_MS = 1000;

export class NatEngine {
  readonly config: EngineConfig;
  readonly counters = new Float64Array(C.COUNTER_SLOTS);
  readonly flowTable: FlowTable;
  readonly mappingTable: MappingTable;
  readonly hostTable: HostTable;
  /** Outside ports per inside host and protocol (RFC 6888 REQ-4). */
  readonly portQuota: PortQuota;
  /** TCP mappings whose connections have all finished: their ports serve new ones when needed. */
  readonly closedMappings: ClosedMappings;
  private readonly answers: ExhaustionAnswers;
  private readonly wheel: TimerWheel;
  /** Sequence state of TCP flows, and the handshake and close (src/nat/tcp-state.ts). */
  private readonly tcp: TcpTracker;
  /** Inbound TCP flows that have not completed their handshake, oldest first. */
  private readonly halfOpen: HalfOpenQueue;
  private readonly maxHalfOpen: number;
  /** RFC 5382 REQ-4 answers to unsolicited SYNs; null when they are off (the default). */
  private readonly unsolicitedSyns: UnsolicitedSyns | null;
  /** Forwards, port-mapping protocol mappings and ALG expectations (see pins.ts). */
  readonly pins: PinRegistry;
  private readonly fragments: FragmentTracker;
  private readonly portsTcp: PortAllocator;
  private readonly portsUdp: PortAllocator;
  private readonly portsIcmp: PortAllocator;
  private readonly insideAddr: Uint32Array;
  private readonly insideMask: Uint32Array;
  private readonly outside: Uint32Array;
  private readonly outsideIndexOf = new Map<number, number>();
  /** The gateway's own addresses: the source of the errors its own stack sends (gatewayError). */
  private readonly gateway: GatewayAddresses;
  /** Bounds of the outside addresses: most packets fail this range test and skip the map. */
  private readonly outsideMin: number;
  private readonly outsideMax: number;
  private readonly filtering: number;
  private readonly interfaceMode: boolean;
  private readonly ttlMode: number; // 0 compensate, 1 decrement, 2 preserve
  private readonly hopAddress: number;
  private readonly tEstablished: number;
  private readonly tTransitory: number;
  private readonly tClosed: number;
  private readonly tHalfOpen: number;
  private readonly tUdp: number;
  private readonly tIcmp: number;
  private readonly embedded = new Embedded();
  private readonly dueFn: (f: number) => number;
  /** Firewall rules for new flows; null when there are none (the common case costs one test). */
  readonly firewall: RuleSet | null;
  private readonly hostRate: number;
  private readonly globalRate: TokenBucket | null;
  /** Caller's clock of the latest call, in ms: the rate limiters' time base. */
  private nowMs = 0;

  /** Engine clock: the second of the latest call. */
  private nowSec = 0;
  private timersBehind = false;
  private started = false;

  /** Length of the packet to send after FORWARD (in the caller's buffer) or REPLY (in replyBuf). */
  outLen = 0;
  /** Reason code of the latest DROP (see counters.ts). */
  lastDrop = 0;
  /** Where REPLY packets are built. */
  readonly replyBuf = new Uint8Array(65536);
  /** The application-level gateways; each flow's is decided when it is made (F_ALG). */
  private alg: AlgHook | null = null;
  /** The rewrite of the datagram whose held fragments are being released (see firstFragment). */
  private releaseSrc = 0;
  private releaseDst = 0;
  private readonly applyReleased: (b: Uint8Array, off: number) => boolean;
  private readonly prefetchHashes = new Uint32Array(1024);
  private readonly prefetchSides = new Uint8Array(1024);
  /**
   * What the last prefetch found: the flow each packet's key led to (NO_FLOW: none), by packet
   * offset. process() takes it as a candidate for the packet at that offset, checked against the
   * packet's key before use, so a stale or wrong candidate only costs the full lookup.
   */
  private readonly prefetchFlows = new Int32Array(1024);
  private readonly prefetchOffs = new Uint32Array(1024);
  private prefetchBuf: Uint8Array | null = null;
  private prefetchCount = 0;
  private prefetchNext = 0;
  /** The prefetched candidate of the packet being processed; taken by its first flow lookup. */
  private candidate = NO_FLOW;
  /** Keeps the prefetch loads observable so the compiler cannot drop them. */
  prefetchSink = 0;

  /** `allocate`: memory for the flow and mapping tables (e.g. huge pages); plain by default. */
  constructor(config: EngineConfig, allocate?: TableAllocator) {
    if (config.outside.length === 0) throw new Error("engine: at least one outside address is required");
    this.config = config;
    this.flowTable = new FlowTable(config.maxFlows, allocate, config.hashSeed);
    this.mappingTable = new MappingTable(config.maxMappings, allocate, config.hashSeed);
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
    this.maxHalfOpen = config.maxHalfOpen;
    this.unsolicitedSyns =
      config.unsolicitedSyn === "port-unreachable"
        ? new UnsolicitedSyns(config.hashSeed, this.counters)
        : null;
    this.fragments = new FragmentTracker(
      1024,
      config.timeouts.fragmentSec,
      config.maxHeldFragmentBytes,
      config.hashSeed,
    );
    this.applyReleased = (b, off) => this.applyFragment(b, off, this.releaseSrc, this.releaseDst) === FORWARD;
    const n = config.outside.length;
    const seed = config.portSeed >>> 0;
    this.portsTcp = new PortAllocator(config.ports.tcp, n, (0x9e3779b9 ^ seed) >>> 0 || 1);
    this.portsUdp = new PortAllocator(config.ports.udp, n, (0x7f4a7c15 ^ seed) >>> 0 || 1);
    this.portsIcmp = new PortAllocator(config.ports.icmp, n, (0x94d049bb ^ seed) >>> 0 || 1);
    this.insideAddr = new Uint32Array(config.inside.map((p) => p.addr & prefixMask(p.len)));
    this.insideMask = new Uint32Array(config.inside.map((p) => prefixMask(p.len)));
    this.outside = new Uint32Array(config.outside);
    this.gateway = new GatewayAddresses(config.gateway, this.insideAddr, this.insideMask);
    for (const [i, a] of config.outside.entries()) this.outsideIndexOf.set(a >>> 0, i);
    this.outsideMin = Math.min(...config.outside.map((a) => a >>> 0));
    this.outsideMax = Math.max(...config.outside.map((a) => a >>> 0));
    this.filtering =
      config.filtering === "endpoint-independent"
        ? FILTER_EIF
        : config.filtering === "address-dependent"
          ? FILTER_ADF
          : FILTER_APDF;
    this.interfaceMode = config.mode === "interface";
    this.ttlMode = config.ttlMode === "compensate" ? 0 : config.ttlMode === "decrement" ? 1 : 2;
    this.hopAddress = config.outside[0];
    const t = config.timeouts;
    this.tEstablished = t.tcpEstablishedSec;
    this.tTransitory = t.tcpTransitorySec;
    this.tClosed = t.tcpClosedSec;
    this.tHalfOpen = t.tcpHalfOpenSec;
    this.tUdp = t.udpSec;
    this.tIcmp = t.icmpSec;
    this.dueFn = (f) => this.due(f);
    this.firewall = config.firewall.length > 0 ? new RuleSet(config.firewall) : null;
    this.hostRate = config.newFlowsPerSecPerHost;
    this.globalRate =
      config.newFlowsPerSec > 0 ? new TokenBucket(config.newFlowsPerSec, config.newFlowsPerSec) : null;
  }

  // ---------------------------------------------------------------- per packet

  /**
   * Translates the IPv4 packet at buf[off, off+len) in place. `nowMs` is the caller's monotonic
   * clock. `l4Partial`: the TCP/UDP checksum holds a partial pseudo-header sum (virtio-net
   * NEEDS_CSUM) rather than a full checksum. `side`: where the packet arrived (SIDE_*).
   */
  process(
    buf: Uint8Array,
    off: number,
    len: number,
    nowMs: number,
    l4Partial = false,
    side = SIDE_BY_ADDRESS,
  ): number {
    const c = this.counters;
    c[C.C_PACKETS]++;
    this.nowMs = nowMs;
    const sec = Math.floor(nowMs / 1000);
    if (sec !== this.nowSec || this.timersBehind || !this.started) this.advanceClock(sec);
    this.candidate = NO_FLOW;
    if (buf === this.prefetchBuf && this.prefetchNext < this.prefetchCount) {
      const k = this.prefetchNext;
      if (this.prefetchOffs[k] === off) {
        this.candidate = this.prefetchFlows[k];
        this.prefetchNext = k + 1;
      }
    }
    const err = validateIpv4(buf, off, len);
    if (err !== 0) return this.drop(C.DROP_BASE + err);
    const total = (buf[off + 2] << 8) | buf[off + 3];
    this.outLen = total;
    const hl = (buf[off] & 0x0f) << 2;
    const proto = buf[off + 9];
    const src = readU32(buf, off + 12);
    const dst = readU32(buf, off + 16);
    const fragField = (buf[off + 6] << 8) | buf[off + 7];
    // The gateway's own error about a packet masq translated: neither from the LAN nor forged,
    // whatever network its source lies on (see gateway-addresses.ts). ICMP only, so the
    // common case pays one comparison.
    const fromGateway =
      proto === IPPROTO_ICMP &&
      side !== SIDE_INSIDE &&
      this.gateway.sentError(buf, off, hl, src) &&
      this.outsideIndex(dst) >= 0;
    if (side !== SIDE_BY_ADDRESS && !fromGateway) {
      // Before anything else (fragments included): a forged packet must not match the state of
      // a real one.
      const fromInside = this.isInside(src);
      if (side === SIDE_INSIDE) {
        if (!fromInside) return this.drop(C.D_SPOOFED_SOURCE);
      } else if (fromInside) return this.drop(C.D_INSIDE_SOURCE_FROM_OUTSIDE);
      else if (this.isInside(dst) && this.outsideIndex(dst) < 0)
        return this.drop(C.D_INSIDE_ADDRESS_FROM_OUTSIDE);
    }
    if ((fragField & 0x1fff) !== 0) return this.laterFragment(buf, off, total, proto, src, dst);

    if (this.ttlMode === 1 && buf[off + 8] <= 1 && (this.isInside(src) || this.outsideIndex(dst) >= 0)) {
      // The engine is the hop: answer before translating, so the error goes to the real sender.
      return this.timeExceeded(buf, off, total);
    }
    let verdict: number;
    if (fromGateway) {
      verdict = this.gatewayError(buf, off, off + hl, total, src);
    } else if (this.isInside(src)) {
      if (this.isInside(dst) && this.outsideIndex(dst) < 0) verdict = this.passthrough();
      else verdict = this.outbound(buf, off, hl, total, proto, src, dst, l4Partial);
    } else if (this.outsideIndex(dst) >= 0) {
      verdict = this.inbound(buf, off, hl, total, proto, src, dst, l4Partial, false);
    } else if (this.interfaceMode) {
      verdict = this.passthrough();
    } else {
      verdict = this.drop(C.D_NOT_OURS);
    }

    if (verdict === FORWARD) {
      if (this.ttlMode === 0) {
        // The kernel decrements the TTL on the way into the TUN and again on the way out: one
        // hop, so give one back (else traceroute shows the gateway twice).
        const ttl = buf[off + 8];
        if (ttl < 255) setTtl(buf, off, ttl + 1);
      } else if (this.ttlMode === 1) {
        const ttl = buf[off + 8];
        if (ttl <= 1) return this.drop(C.D_TTL_EXCEEDED);
        setTtl(buf, off, ttl - 1);
      }
      if ((fragField & IP_MF) !== 0) this.firstFragment(buf, off, proto, src, dst, fragField);
    } else if (verdict === DROP && (fragField & IP_MF) !== 0) {
      this.fragments.record(
        this.fragmentClass(src),
        src,
        dst,
        proto,
        readU16(buf, off + 4),
        FRAG_DROP,
        0,
        0,
        this.nowSec,
      );
    }
    return verdict;
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
    const ft = this.flowTable;
    const slots = ft.index.slots;
    const mask = ft.index.mask;
    const hs = this.prefetchHashes;
    const sides = this.prefetchSides;
    const n = Math.min(count, hs.length);
    this.prefetchBuf = buf;
    this.prefetchCount = n;
    this.prefetchNext = 0;
    for (let k = 0; k < n; k++) {
      const off = meta[2 * k];
      this.prefetchOffs[k] = off;
      hs[k] = 0;
      if (meta[2 * k + 1] < 28 || buf[off] !== 0x45) continue;
      const proto = buf[off + 9];
      if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) continue;
      const src =
        ((buf[off + 12] << 24) | (buf[off + 13] << 16) | (buf[off + 14] << 8) | buf[off + 15]) >>> 0;
      const dst =
        ((buf[off + 16] << 24) | (buf[off + 17] << 16) | (buf[off + 18] << 8) | buf[off + 19]) >>> 0;
      const sport = (buf[off + 20] << 8) | buf[off + 21];
      const dport = (buf[off + 22] << 8) | buf[off + 23];
      // Inside keys have odd references, outside keys even ones (FlowTable.link); bit 1: TCP.
      const inside = this.isInside(src);
      sides[k] = (inside ? 1 : 0) | (proto === IPPROTO_TCP ? 2 : 0);
      hs[k] = inside
        ? ft.insideHash(proto, src, sport, dst, dport)
        : ft.outsideHash(proto, dst, dport, src, sport);
    }
    // Tight loops, so many iterations (and their misses) are in flight at once.
    let acc = 0;
    for (let k = 0; k < n; k++) acc += slots[((hs[k] & mask) << 1) + 1];
    const u = ft.u32;
    const mt = this.mappingTable;
    const mslots = mt.index.slots;
    const mmask = mt.index.mask;
    // The home slot often holds another key of the probe run: follow the run (in the lines just
    // loaded) to this key's own slot, so the record touched is the one the lookup will read. This
    // pass only finds the records (cache hits, branchy); the next one loads them all at once.
    const found = this.prefetchFlows;
    for (let k = 0; k < n; k++) {
      const h = hs[k];
      found[k] = NO_FLOW;
      if (h === 0) continue;
      let i = h & mask;
      let ref = slots[2 * i + 1];
      for (let probes = 0; ref !== 0 && probes < PREFETCH_PROBES; probes++) {
        if (slots[2 * i] === h && (ref & 1) === (sides[k] & 1)) break;
        i = (i + 1) & mask;
        ref = slots[2 * i + 1];
      }
      if (ref !== 0) found[k] = (ref - 1) >>> 1;
      else if ((sides[k] & 1) === 1) {
        // No flow yet: most likely a new one, which looks up its inside endpoint's mapping next.
        // Touch that slot now so the miss overlaps with the others.
        const off = meta[2 * k];
        const src =
          ((buf[off + 12] << 24) | (buf[off + 13] << 16) | (buf[off + 14] << 8) | buf[off + 15]) >>> 0;
        const hm = mt.insideHash(buf[off + 9], src, (buf[off + 20] << 8) | buf[off + 21]);
        acc += mslots[((hm & mmask) << 1) + 1];
      }
    }
    // A TCP flow's sequence record is a line of its own (tcp-state.ts): load it with the record.
    const tw = this.tcp.words;
    for (let k = 0; k < n; k++) {
      const f = found[k];
      if (f === NO_FLOW) continue;
      acc += u[f * FLOW_WORDS];
      if ((sides[k] & 2) !== 0) acc += tw[f * TCP_WORDS];
    }
    this.prefetchSink = acc;
  }

  /**
   * Packets released by the engine since the last call (held fragments); undefined when none. The
   * view is valid until the next call to process(): send it at once.
   */
  takePending(): Uint8Array | undefined {
    return this.fragments.store.takePending();
  }

  get pendingCount(): number {
    return this.fragments.store.pendingCount;
  }

  /**
   * Packets the engine made on its own clock for outside hosts: RFC 5382 REQ-4 answers to
   * unsolicited SYNs (ICMP port unreachable, 6 s after the SYN). Undefined when none waits.
   */
  takeAnswer(): Uint8Array | undefined {
    return this.unsolicitedSyns?.take();
  }

  /** Advances the clock and expires flows; call about once a second when no packets flow. */
  tick(nowMs: number): void {
    this.nowMs = nowMs;
    this.advanceClock(Math.floor(nowMs / 1000));
  }

  private advanceClock(sec: number): void {
    if (sec < this.nowSec && this.started) sec = this.nowSec; // never go back
    this.nowSec = sec;
    this.started = true;
    this.timersBehind = this.wheel.advance(sec, this.dueFn, EXPIRY_BUDGET);
    if (this.pins.nextExpirySec !== 0 && sec >= this.pins.nextExpirySec)
      for (const p of this.pins.due(sec)) {
        this.unpin(p.id);
        this.counters[C.C_PINS_EXPIRED]++;
      }
    // Checked once a second, so an answer goes out 6 to 7 s after its SYN.
    if (this.unsolicitedSyns !== null) this.unsolicitedSyns.expire(this.nowMs);
    const timedOut = this.fragments.expire(sec);
    if (timedOut > 0) {
      this.counters[C.D_FRAGMENT_TIMEOUT] += timedOut;
      this.counters[C.C_DROPPED] += timedOut;
    }
  }

  private drop(reason: number): number {
    this.lastDrop = reason;
    this.counters[reason]++;
    this.counters[C.C_DROPPED]++;
    return DROP;
  }

  private passthrough(): number {
    this.counters[C.C_PASSTHROUGH]++;
    return FORWARD;
  }

  // ---------------------------------------------------------------- classification

  private isInside(a: number): boolean {
    const n = this.insideAddr.length;
    for (let i = 0; i < n; i++) if ((a & this.insideMask[i]) >>> 0 === this.insideAddr[i]) return true;
    return false;
  }

  private outsideIndex(a: number): number {
    if (this.outside.length === 1) return this.outside[0] === a ? 0 : -1;
    if (a < this.outsideMin || a > this.outsideMax) return -1;
    const i = this.outsideIndexOf.get(a);
    return i === undefined ? -1 : i;
  }

  private portsFor(proto: number): PortAllocator {
    return proto === IPPROTO_TCP ? this.portsTcp : proto === IPPROTO_UDP ? this.portsUdp : this.portsIcmp;
  }

  /** Paired pooling (RFC 4787 REQ-2): an inside host always gets the same outside address. */
  private pairedAddressIndex(inAddr: number): number {
    const n = this.outside.length;
    if (n === 1) return 0;
    let h = Math.imul(inAddr ^ (inAddr >>> 16), 0x45d9f3b);
    h ^= h >>> 16;
    return (h >>> 0) % n;
  }

  // ---------------------------------------------------------------- outbound

  private outbound(
    b: Uint8Array,
    off: number,
    hl: number,
    total: number,
    proto: number,
    src: number,
    dst: number,
    l4Partial: boolean,
  ): number {
    const l4 = off + hl;
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      const sport = (b[l4] << 8) | b[l4 + 1];
      const dport = (b[l4 + 2] << 8) | b[l4 + 3];
      let f = this.candidate;
      this.candidate = NO_FLOW;
      if (f === NO_FLOW || !this.flowTable.hasInsideView(f, proto, src, sport, dst, dport))
        f = this.flowTable.lookupInside(proto, src, sport, dst, dport);
      const flags = proto === IPPROTO_TCP ? b[l4 + 13] : 0;
      if (f === NO_FLOW) {
        if (proto === IPPROTO_TCP && (flags & (TCP_SYN | TCP_ACK | TCP_RST)) !== TCP_SYN)
          return this.drop(C.D_TCP_NO_FLOW);
        if (this.firewall !== null) {
          const v = this.screen(b, off, total, DIR_OUTBOUND, proto, src, sport, dst, dport);
          if (v >= 0) return v;
        }
        f = this.createOutbound(proto, src, sport, dst, dport);
        if (f < 0) return this.refuse(b, off, total, src, -f);
      }
      const base = f * FLOW_WORDS;
      const u = this.flowTable.u32;
      if (proto === IPPROTO_TCP) {
        const t = this.tcp.segment(f, b, l4, total - hl, true, u[base + F_ALG] !== 0 ? this.alg : null);
        if (t !== 0 && this.tcpEvent(f, t) === DROP) return DROP;
        // RFC 5382 REQ-4: the inside host's own SYN for a connection an unsolicited SYN asked for.
        if (this.unsolicitedSyns !== null && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN)
          this.unsolicitedSyns.cancel(dst, dport, u[base + F_OUT_ADDR], u[base + F_PORTS] & 0xffff);
      }
      this.touch(f, total, true);
      rewriteEndpoint(
        b,
        off,
        l4,
        proto,
        off + 12,
        u[base + F_OUT_ADDR],
        l4,
        u[base + F_PORTS] & 0xffff,
        l4Partial,
      );
      this.counters[C.C_TRANSLATED_OUT]++;
      if (this.outsideIndex(dst) >= 0) return this.hairpin(b, off, hl, total, proto, l4Partial);
      if (u[base + F_ALG] !== 0 && this.alg !== null)
        return this.alg.packet(f, u[base + F_ALG], b, off, hl, total, true, l4Partial);
      return FORWARD;
    }
    if (proto === IPPROTO_ICMP) return this.outboundIcmp(b, off, l4, total, src, dst);
    return this.drop(C.D_UNSUPPORTED_PROTOCOL);
  }

  private outboundIcmp(
    b: Uint8Array,
    off: number,
    l4: number,
    total: number,
    src: number,
    dst: number,
  ): number {
    const type = b[l4];
    if (type === ICMP_ECHO_REQUEST && this.outsideIndex(dst) >= 0) {
      // An inside host pings our public address: answer for it (no flow needed).
      this.outLen = buildEchoReply(this.replyBuf, b, off, total);
      this.counters[C.C_REPLIES]++;
      return REPLY;
    }
    if (type === ICMP_ECHO_REQUEST || type === ICMP_ECHO_REPLY) {
      const id = (b[l4 + 4] << 8) | b[l4 + 5];
      let f = this.flowTable.lookupInside(IPPROTO_ICMP, src, id, dst, 0);
      if (f === NO_FLOW) {
        // Only a request starts an ICMP query mapping; an unmatched reply answers nothing of ours.
        if (type !== ICMP_ECHO_REQUEST) return this.drop(C.D_ICMP_UNSUPPORTED);
        if (this.firewall !== null) {
          const v = this.screen(b, off, total, DIR_OUTBOUND, IPPROTO_ICMP, src, 0, dst, 0);
          if (v >= 0) return v;
        }
        f = this.createOutbound(IPPROTO_ICMP, src, id, dst, 0);
        if (f < 0) return this.refuse(b, off, total, src, -f);
      }
      const u = this.flowTable.u32;
      const base = f * FLOW_WORDS;
      this.touch(f, total, true);
      rewriteEndpoint(
        b,
        off,
        l4,
        IPPROTO_ICMP,
        off + 12,
        u[base + F_OUT_ADDR],
        l4 + 4,
        u[base + F_PORTS] & 0xffff,
        false,
      );
      this.counters[C.C_TRANSLATED_OUT]++;
      return FORWARD;
    }
    if (icmpIsError(type)) {
      // An inside host reports a problem with a packet that came in through us: the quoted packet
      // went remote -> inside, so find the flow by its destination (inside) and source (remote).
      const e = this.embedded;
      if (!parseEmbedded(b, l4, off + total, e)) return this.drop(C.D_ICMP_ERROR_MALFORMED);
      const f =
        e.proto === IPPROTO_ICMP
          ? this.flowTable.lookupInside(IPPROTO_ICMP, e.dst, e.dport, e.src, 0)
          : this.flowTable.lookupInside(e.proto, e.dst, e.dport, e.src, e.sport);
      if (f === NO_FLOW) return this.drop(C.D_ICMP_ERROR_NO_FLOW);
      const u = this.flowTable.u32;
      const base = f * FLOW_WORDS;
      rewriteEmbedded(b, l4, e, 1, u[base + F_OUT_ADDR], u[base + F_PORTS] & 0xffff);
      this.unshiftQuotedSeq(b, l4, e, f, false);
      rewriteEndpoint(b, off, -1, IPPROTO_ICMP, off + 12, u[base + F_OUT_ADDR], -1, 0, false);
      this.touch(f, total, true);
      this.counters[C.C_ICMP_ERRORS_TRANSLATED]++;
      this.counters[C.C_TRANSLATED_OUT]++;
      return FORWARD;
    }
    return this.drop(C.D_ICMP_UNSUPPORTED);
  }

  /** Creates an outbound flow (and its mapping if the endpoint has none); -reason on failure. */
  private createOutbound(
    proto: number,
    inAddr: number,
    inPort: number,
    remAddr: number,
    remPort: number,
  ): number {
    const ft = this.flowTable;
    if (ft.count >= ft.capacity && !this.evictHalfOpen(0)) return -C.D_FLOW_TABLE_FULL;
    const ht = this.hostTable;
    let host = ht.find(inAddr);
    if (host !== NO_HOST && ht.flows[host] >= this.config.maxFlowsPerHost) return -C.D_HOST_FLOW_LIMIT;
    if (host === NO_HOST && ht.count >= ht.capacity) return -C.D_HOST_TABLE_FULL;
    // Rate limits last, so a flow refused for another reason spends no token.
    const rate = this.hostRate;
    if (rate > 0 && host !== NO_HOST && !hasToken(ht.tokens, ht.tokenStamps, host, this.nowMs, rate, rate))
      return -C.D_HOST_RATE_LIMIT;
    if (this.globalRate !== null && !this.globalRate.take(this.nowMs)) return -C.D_RATE_LIMIT;
    const mt = this.mappingTable;
    let m = mt.lookupInside(proto, inAddr, inPort);
    if (m === NO_MAPPING) {
      const addrIdx = this.pairedAddressIndex(inAddr);
      const outAddr = this.outside[addrIdx];
      const ports = this.portsFor(proto);
      const atShare = !this.portQuota.allows(host, proto);
      // Exhaustion before the share: with the range gone, that is what every host meets.
      const refusal =
        mt.count >= mt.capacity
          ? C.D_MAPPING_TABLE_FULL
          : ports.free[addrIdx] === 0
            ? C.D_PORTS_EXHAUSTED
            : atShare
              ? C.D_HOST_PORT_QUOTA
              : 0;
      let outPort: number;
      if (refusal === 0) {
        outPort = ports.allocate(addrIdx, inPort, this.config.portParity);
        if (outPort === NO_PORT) return -C.D_PORTS_EXHAUSTED;
        if (outPort === inPort) this.counters[C.C_PORTS_PRESERVED]++;
      } else {
        // No port to be had: a finished TCP mapping's, if one may be taken (closed-mappings.ts).
        const old =
          proto === IPPROTO_TCP
            ? this.closedMappings.pick(host, outAddr, remAddr, remPort, !atShare)
            : NO_MAPPING;
        if (old === NO_MAPPING) return -refusal;
        outPort = mt.u32[old * MAPPING_WORDS + M_PORTS] & 0xffff;
        this.retireMapping(old);
        ports.take(addrIdx, outPort);
        this.counters[C.C_TCP_PORTS_REUSED]++;
        // The host's record may have gone with its last mapping.
        host = ht.find(inAddr);
      }
      // The mapping's and the flow's outside keys land on two random index slots: load both
      // now, so the two misses overlap instead of following one another.
      const fi = this.flowTable.index;
      this.prefetchSink +=
        mt.index.slots[((mt.outsideHash(proto, outAddr, outPort) & mt.index.mask) << 1) + 1] +
        fi.slots[
          ((this.flowTable.outsideHash(proto, outAddr, outPort, remAddr, remPort) & fi.mask) << 1) + 1
        ];
      m = mt.add(proto, inAddr, inPort, outAddr, outPort);
      // The host's record exists (or can be made: the table was checked above) from its first
      // mapping on, so the port is counted against it.
      this.portQuota.charge(m, host !== NO_HOST ? host : ht.findOrAdd(inAddr), proto);
      this.counters[C.C_MAPPINGS_CREATED]++;
    }
    const f = this.addFlow(m, proto, remAddr, remPort, 0);
    if (rate > 0 && f >= 0) {
      const h = ht.find(inAddr);
      refill(ht.tokens, ht.tokenStamps, h, this.nowMs, rate, rate);
      ht.tokens[h] -= 1;
    }
    return f;
  }

  /**
   * The firewall's say on a flow about to be created (never on packets of existing flows):
   * -1 to go ahead, else the verdict (DROP, or REPLY with a reset / unreachable in replyBuf).
   * Inbound, `dst`:`dport` is the inside host the flow would reach.
   */
  private screen(
    b: Uint8Array,
    off: number,
    total: number,
    dir: number,
    proto: number,
    src: number,
    sport: number,
    dst: number,
    dport: number,
  ): number {
    const fw = this.firewall;
    if (fw === null) return -1;
    const r = fw.match(dir, proto, src, sport, dst, dport);
    if (r === NO_RULE) return -1;
    const act = fw.action[r];
    if (act === ACT_DROP) return this.drop(C.D_FIREWALL_DROP);
    if (act !== ACT_REJECT) return -1;
    this.lastDrop = C.D_FIREWALL_REJECT;
    this.counters[C.D_FIREWALL_REJECT]++;
    this.counters[C.C_DROPPED]++;
    this.counters[C.C_REPLIES]++;
    this.refusedDatagram(b, off);
    if (proto === IPPROTO_TCP) {
      this.outLen = buildTcpReset(this.replyBuf, b, off, total);
      return REPLY;
    }
    return this.buildReject(b, off, total);
  }

  /**
   * A first fragment refused with an answer (REPLY, so process() does not see a DROP): its later
   * fragments go the same way at once instead of waiting in the buffer for nothing.
   */
  private refusedDatagram(b: Uint8Array, off: number): void {
    if ((readU16(b, off + 6) & IP_MF) === 0) return;
    const src = readU32(b, off + 12);
    this.fragments.record(
      this.fragmentClass(src),
      src,
      readU32(b, off + 16),
      b[off + 9],
      readU16(b, off + 4),
      FRAG_DROP,
      0,
      0,
      this.nowSec,
    );
  }

  /**
   * A new outbound flow was refused for `reason`: dropped and counted; when it was refused for
   * want of a mapping (the host's share, the range or the mapping table used up), the host is
   * answered (RFC 6888 REQ-11, src/nat/exhaustion.ts), within the answers' rate limits.
   */
  private refuse(b: Uint8Array, off: number, total: number, src: number, reason: number): number {
    const v = this.drop(reason);
    if (reason !== C.D_HOST_PORT_QUOTA && reason !== C.D_PORTS_EXHAUSTED && reason !== C.D_MAPPING_TABLE_FULL)
      return v;
    const n = this.answers.build(
      this.replyBuf,
      b,
      off,
      total,
      this.hostTable.find(src),
      this.hopAddress,
      this.nowMs,
    );
    if (n === 0) return v;
    this.outLen = n;
    this.counters[C.C_REPLIES]++;
    this.counters[C.C_EXHAUSTION_REPLIES]++;
    this.refusedDatagram(b, off);
    return REPLY;
  }

  // ---------------------------------------------------------------- inbound

  private inbound(
    b: Uint8Array,
    off: number,
    hl: number,
    total: number,
    proto: number,
    src: number,
    dst: number,
    l4Partial: boolean,
    hairpin: boolean,
  ): number {
    const l4 = off + hl;
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      const sport = (b[l4] << 8) | b[l4 + 1];
      const dport = (b[l4 + 2] << 8) | b[l4 + 3];
      let f = this.candidate;
      this.candidate = NO_FLOW;
      if (f === NO_FLOW || !this.flowTable.hasOutsideView(f, proto, dst, dport, src, sport))
        f = this.flowTable.lookupOutside(proto, dst, dport, src, sport);
      const flags = proto === IPPROTO_TCP ? b[l4 + 13] : 0;
      if (f === NO_FLOW) {
        const m = this.mappingTable.lookupOutside(proto, dst, dport);
        if (m === NO_MAPPING) {
          // Interface mode shares the address with the gateway itself: ports outside our range
          // (and not forwarded) are the gateway's own traffic and go back to its stack untouched.
          if (this.interfaceMode && !hairpin && !this.portsFor(proto).inRange(dport))
            return this.passthrough();
          return this.unsolicited(b, off, hairpin, C.D_NO_MAPPING);
        }
        // A pin (forward, PCP mapping, ALG expectation) admits whatever the filtering mode.
        const pin = this.pins.count[m] !== 0 ? this.pins.admitting(m, src) : undefined;
        if (pin === undefined && !this.admits(m, src)) return this.unsolicited(b, off, hairpin, C.D_FILTERED);
        if (proto === IPPROTO_TCP && (flags & (TCP_SYN | TCP_ACK | TCP_RST)) !== TCP_SYN)
          return this.drop(C.D_TCP_NO_FLOW);
        if (this.firewall !== null) {
          const mb = m * MAPPING_WORDS;
          const inAddr = this.mappingTable.u32[mb + M_IN_ADDR];
          const inPort = this.mappingTable.u32[mb + M_PORTS] >>> 16;
          const v = this.screen(b, off, total, DIR_INBOUND, proto, src, sport, inAddr, inPort);
          if (v >= 0) return v;
        }
        if (this.globalRate !== null && !this.globalRate.take(this.nowMs)) return this.drop(C.D_RATE_LIMIT);
        if (proto === IPPROTO_TCP) {
          const v = this.roomForHalfOpen(proto, dst, dport, m);
          if (v >= 0) return v;
        }
        f = this.addFlow(m, proto, src, sport, ORIGIN_INBOUND);
        if (f < 0) return this.drop(-f);
        if (proto === IPPROTO_TCP) this.countHalfOpen(f);
        if (pin?.oneShot) this.unpin(pin.id);
      }
      const u = this.flowTable.u32;
      const base = f * FLOW_WORDS;
      if (proto === IPPROTO_TCP) {
        const alg = u[base + F_ALG] !== 0 && !hairpin ? this.alg : null;
        const t = this.tcp.segment(f, b, l4, total - hl, false, alg);
        if (t !== 0 && this.tcpEvent(f, t) === DROP) return DROP;
      }
      this.touch(f, total, false);
      rewriteEndpoint(
        b,
        off,
        l4,
        proto,
        off + 16,
        u[base + F_IN_ADDR],
        l4 + 2,
        u[base + F_PORTS] >>> 16,
        l4Partial,
      );
      this.counters[C.C_TRANSLATED_IN]++;
      if (u[base + F_ALG] !== 0 && this.alg !== null && !hairpin)
        return this.alg.packet(f, u[base + F_ALG], b, off, hl, total, false, l4Partial);
      return FORWARD;
    }
    if (proto === IPPROTO_ICMP) return this.inboundIcmp(b, off, l4, total, src, dst);
    return this.interfaceMode ? this.passthrough() : this.drop(C.D_UNSUPPORTED_PROTOCOL);
  }

  private inboundIcmp(
    b: Uint8Array,
    off: number,
    l4: number,
    total: number,
    src: number,
    dst: number,
  ): number {
    const type = b[l4];
    if (type === ICMP_ECHO_REPLY) {
      const id = (b[l4 + 4] << 8) | b[l4 + 5];
      const f = this.flowTable.lookupOutside(IPPROTO_ICMP, dst, id, src, 0);
      if (f === NO_FLOW) {
        if (this.interfaceMode && !this.portsIcmp.inRange(id)) return this.passthrough();
        return this.drop(C.D_NO_MAPPING);
      }
      const u = this.flowTable.u32;
      const base = f * FLOW_WORDS;
      this.touch(f, total, false);
      rewriteEndpoint(
        b,
        off,
        l4,
        IPPROTO_ICMP,
        off + 16,
        u[base + F_IN_ADDR],
        l4 + 4,
        u[base + F_PORTS] >>> 16,
        false,
      );
      this.counters[C.C_TRANSLATED_IN]++;
      return FORWARD;
    }
    if (type === ICMP_ECHO_REQUEST) {
      // A ping to the public address: the gateway's own stack answers in interface mode; in pool
      // mode nobody else holds the address, so the engine answers for it.
      if (this.interfaceMode) return this.passthrough();
      this.outLen = buildEchoReply(this.replyBuf, b, off, total);
      this.counters[C.C_REPLIES]++;
      return REPLY;
    }
    if (icmpIsError(type)) {
      // RFC 5508 REQ-3: the quoted packet went inside -> remote through us, so it carries our
      // outside address and port as its source.
      const e = this.embedded;
      if (!parseEmbedded(b, l4, off + total, e)) return this.drop(C.D_ICMP_ERROR_MALFORMED);
      const f = this.quotedOutboundFlow(e);
      if (f === NO_FLOW) return this.interfaceMode ? this.passthrough() : this.drop(C.D_ICMP_ERROR_NO_FLOW);
      return this.errorToInside(b, off, l4, total, f);
    }
    return this.interfaceMode ? this.passthrough() : this.drop(C.D_ICMP_UNSUPPORTED);
  }

  /** The flow of the packet quoted in an ICMP error that went inside -> remote through us. */
  private quotedOutboundFlow(e: Embedded): number {
    return e.proto === IPPROTO_ICMP
      ? this.flowTable.lookupOutside(IPPROTO_ICMP, e.src, e.sport, e.dst, 0)
      : this.flowTable.lookupOutside(e.proto, e.src, e.sport, e.dst, e.dport);
  }

  /**
   * RFC 5508 REQ-3: translates the ICMP error at `off` about flow f's outbound packet (parsed
   * into this.embedded) back to the inside host: the quoted source and the error's destination
   * become the inside endpoint again. The rest (type, code, the next-hop MTU of a
   * fragmentation-needed) is the inside host's to read as it is.
   */
  private errorToInside(b: Uint8Array, off: number, l4: number, total: number, f: number): number {
    const e = this.embedded;
    const u = this.flowTable.u32;
    const base = f * FLOW_WORDS;
    rewriteEmbedded(b, l4, e, 0, u[base + F_IN_ADDR], u[base + F_PORTS] >>> 16);
    this.unshiftQuotedSeq(b, l4, e, f, true);
    rewriteEndpoint(b, off, -1, IPPROTO_ICMP, off + 16, u[base + F_IN_ADDR], -1, 0, false);
    this.touch(f, total, false);
    this.counters[C.C_ICMP_ERRORS_TRANSLATED]++;
    this.counters[C.C_TRANSLATED_IN]++;
    return FORWARD;
  }

  /**
   * An ICMP error the gateway itself sent to our address about a packet we translated: on a WAN
   * with a smaller MTU than the LAN's (PPPoE: 1492), fragmentation-needed for the inside host's
   * full-size packets, whose translated source is ours. Translated back like a remote router's
   * (REQ-3), and sent from the gateway's address on the inside host's network, as the kernel's own
   * NAT sends it (the kernel chose whichever address it found first). Its TTL is the gateway's
   * own (64): the engine adds the one back that forwarding it to the LAN takes, as for any packet.
   * An error matching no flow is about the gateway's own traffic (interface mode: its stack gets
   * it back) or about a flow that is gone.
   */
  private gatewayError(b: Uint8Array, off: number, l4: number, total: number, src: number): number {
    const e = this.embedded;
    if (!parseEmbedded(b, l4, off + total, e)) return this.drop(C.D_ICMP_ERROR_MALFORMED);
    const f = this.outsideIndex(e.src) >= 0 ? this.quotedOutboundFlow(e) : NO_FLOW;
    if (f === NO_FLOW) return this.interfaceMode ? this.passthrough() : this.drop(C.D_ICMP_ERROR_NO_FLOW);
    const from = this.gateway.facing(this.flowTable.u32[f * FLOW_WORDS + F_IN_ADDR]);
    if (from !== 0 && from !== src) rewriteEndpoint(b, off, -1, IPPROTO_ICMP, off + 12, from, -1, 0, false);
    this.counters[C.C_GATEWAY_ICMP_ERRORS]++;
    return this.errorToInside(b, off, l4, total, f);
  }

  /**
   * A TCP segment quoted in an ICMP error carries the sequence number its receiver saw. When an
   * ALG changed the length of that direction of the stream, the sender numbers it differently:
   * give it back the sender's number, or its TCP ignores the error as out of window (RFC 5927)
   * and path MTU discovery fails on the very connection the ALG edits. `segmentOutbound`: the
   * quoted segment went inside -> remote.
   */
  private unshiftQuotedSeq(
    b: Uint8Array,
    icmp: number,
    e: Embedded,
    f: number,
    segmentOutbound: boolean,
  ): void {
    if (e.proto !== IPPROTO_TCP || this.alg === null || this.flowTable.u32[f * FLOW_WORDS + F_ALG] === 0)
      return;
    const seqAt = e.ip + e.hl + 4;
    const seq = readU32(b, seqAt);
    const original = this.alg.quotedSeq(f, segmentOutbound, seq);
    if (original !== seq) rewriteEmbeddedSeq(b, icmp, e, original);
  }

  /**
   * Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): an inside host sent to one of our outside
   * addresses. The source is already translated; now translate the destination as if the packet
   * had come from outside, so each inside host sees the other's outside address and port.
   */
  private hairpin(
    b: Uint8Array,
    off: number,
    hl: number,
    total: number,
    proto: number,
    l4Partial: boolean,
  ): number {
    const src = readU32(b, off + 12);
    const dst = readU32(b, off + 16);
    const v = this.inbound(b, off, hl, total, proto, src, dst, l4Partial, true);
    if (v === FORWARD) this.counters[C.C_HAIRPINNED]++;
    return v;
  }

  /** Filtering (RFC 4787 REQ-8, RFC 5382 REQ-3) for a packet from `remAddr` to mapping m. */
  private admits(m: number, remAddr: number): boolean {
    if (this.filtering === FILTER_EIF) return true;
    if (this.filtering === FILTER_APDF) return false; // the exact flow would have matched
    const u = this.flowTable.u32;
    for (let ref = this.mappingTable.u32[m * MAPPING_WORDS + M_HEAD]; ref !== 0; ) {
      const base = (ref - 1) * FLOW_WORDS;
      // Flows the remote opened itself do not count: only the inside host's own sending does.
      if (u[base + F_REM_ADDR] === remAddr && (u[base + F_META] & ORIGIN_INBOUND) === 0) return true;
      ref = u[base + F_MAP_NEXT];
    }
    return false;
  }

  // ---------------------------------------------------------------- flows

  /** Adds a flow to mapping m for the given remote; -reason on failure. */
  private addFlow(m: number, proto: number, remAddr: number, remPort: number, origin: number): number {
    const mt = this.mappingTable;
    const mb = m * MAPPING_WORDS;
    const inAddr = mt.u32[mb + M_IN_ADDR];
    const ht = this.hostTable;
    let host = ht.find(inAddr);
    if (host !== NO_HOST && ht.flows[host] >= this.config.maxFlowsPerHost) {
      this.dropEmptyMapping(m);
      return -C.D_HOST_FLOW_LIMIT;
    }
    const ft = this.flowTable;
    const f = ft.alloc();
    if (f === NO_FLOW) {
      this.dropEmptyMapping(m);
      return -C.D_FLOW_TABLE_FULL;
    }
    if (host === NO_HOST) {
      host = ht.findOrAdd(inAddr);
      if (host === NO_HOST) {
        ft.free(f);
        this.dropEmptyMapping(m);
        return -C.D_HOST_TABLE_FULL;
      }
    }
    ht.flows[host]++;
    const u = ft.u32;
    const base = f * FLOW_WORDS;
    u[base + F_IN_ADDR] = inAddr;
    u[base + F_OUT_ADDR] = mt.u32[mb + M_OUT_ADDR];
    u[base + F_REM_ADDR] = remAddr;
    u[base + F_PORTS] = mt.u32[mb + M_PORTS];
    u[base + F_META] = ((remPort << 16) | (proto << 8) | origin) >>> 0;
    u[base + F_LAST_SEEN] = this.nowSec;
    u[base + F_MAP_NEXT] = mt.u32[mb + M_HEAD];
    mt.u32[mb + M_HEAD] = f + 1;
    ft.link(f);
    this.closedMappings.flowAdded(m);
    // Server port of the flow: the remote's for outbound flows, the inside host's for inbound.
    u[base + F_ALG] =
      this.alg === null ? 0 : this.alg.classify(proto, origin === 0 ? remPort : mt.u32[mb + M_PORTS] >>> 16);
    this.wheel.schedule(f, this.nowSec + this.timeoutOf(f));
    this.counters[C.C_FLOWS_CREATED]++;
    return f;
  }

  /** A mapping with neither flows nor pins goes at once; true when it went. */
  private dropEmptyMapping(m: number): boolean {
    if (this.mappingTable.u32[m * MAPPING_WORDS + M_HEAD] !== 0 || this.pins.count[m] !== 0) return false;
    this.removeMapping(m);
    return true;
  }

  private removeMapping(m: number): void {
    const mt = this.mappingTable;
    const mb = m * MAPPING_WORDS;
    const outAddr = mt.u32[mb + M_OUT_ADDR];
    const idx = this.outsideIndex(outAddr);
    if (idx >= 0) this.portsFor(mt.proto[m]).release(idx, mt.u32[mb + M_PORTS] & 0xffff);
    this.closedMappings.mappingRemoved(m);
    this.portQuota.release(m, mt.proto[m]);
    mt.remove(m);
    this.counters[C.C_MAPPINGS_EXPIRED]++;
  }

  /**
   * Finished mapping m gives its port to a new connection: its flows (all finished, only waiting
   * for stragglers) go, and with the last of them the mapping, its port and its host's share.
   */
  private retireMapping(m: number): void {
    const u = this.flowTable.u32;
    for (let ref = this.mappingTable.u32[m * MAPPING_WORDS + M_HEAD]; ref !== 0; ) {
      const f = ref - 1;
      // Read first: the mapping's record is freed with its last flow.
      ref = u[f * FLOW_WORDS + F_MAP_NEXT];
      this.wheel.unschedule(f);
      this.expireFlow(f);
    }
  }

  private touch(f: number, bytes: number, out: boolean): void {
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

  /**
   * What the TCP tracker's verdict on a segment means for the flow (see tcp-state.ts): a reset
   * outside the window is dropped; a completed handshake makes an inbound half-open connection
   * one of the inside host's flows; a new state moves the timer. DROP or FORWARD.
   */
  private tcpEvent(f: number, t: number): number {
    if ((t & TCP_RST_OUT_OF_WINDOW) !== 0) return this.drop(C.D_TCP_RST_OUT_OF_WINDOW);
    if ((t & TCP_HANDSHAKE_DONE) !== 0) {
      this.counters[C.C_TCP_HANDSHAKES]++;
      if (this.halfOpen.remove(f))
        this.hostTable.promoteHalfOpen(this.flowTable.u32[f * FLOW_WORDS + F_IN_ADDR]);
    }
    if ((t & (TCP_FINISHED | TCP_REOPENED)) !== 0) {
      // Once or twice per connection: whether its mapping's connections have all finished.
      const u = this.flowTable.u32;
      const base = f * FLOW_WORDS;
      const m = this.mappingTable.lookupInside(IPPROTO_TCP, u[base + F_IN_ADDR], u[base + F_PORTS] >>> 16);
      if (m !== NO_MAPPING) {
        if ((t & TCP_FINISHED) !== 0) this.closedMappings.flowFinished(m);
        else this.closedMappings.flowReopened(m);
      }
    }
    // The timeout changed: move the timer now so a closed connection frees its port on time.
    this.wheel.schedule(f, this.nowSec + this.timeoutOf(f));
    return FORWARD;
  }

  /**
   * Room for one more inbound half-open connection (a SYN to mapping m, at dst:dport): under the
   * cap, or by evicting the oldest half-open one (never an established connection). -1 to go
   * ahead, else the DROP verdict.
   */
  private roomForHalfOpen(proto: number, dst: number, dport: number, m: number): number {
    const ft = this.flowTable;
    if (this.halfOpen.count >= this.maxHalfOpen) {
      if (!this.evictHalfOpen(HALF_OPEN_MIN_AGE_MS)) return this.drop(C.D_HALF_OPEN_LIMIT);
    } else if (ft.count >= ft.capacity && !this.evictHalfOpen(0)) return this.drop(C.D_FLOW_TABLE_FULL);
    // The evicted flow may have been the last of m's, and m gone with it.
    if (this.mappingTable.lookupOutside(proto, dst, dport) !== m) return this.drop(C.D_NO_MAPPING);
    return -1;
  }

  /** Flow f was just admitted by an inbound SYN: a half-open connection, not the host's own flow. */
  private countHalfOpen(f: number): void {
    const host = this.hostTable.find(this.flowTable.u32[f * FLOW_WORDS + F_IN_ADDR]);
    this.hostTable.countAsHalfOpen(host);
    this.halfOpen.push(f, this.nowMs);
  }

  /** Evicts the oldest inbound half-open flow if it is at least `minAgeMs` old; false if none is. */
  private evictHalfOpen(minAgeMs: number): boolean {
    const f = this.halfOpen.oldest();
    if (f < 0 || this.halfOpen.ageMs(f, this.nowMs) < minAgeMs) return false;
    this.wheel.unschedule(f);
    this.expireFlow(f);
    this.counters[C.C_HALF_OPEN_EVICTED]++;
    return true;
  }

  /**
   * An inbound packet that nothing admits. With REQ-4 answers on, an unsolicited SYN is noted to
   * be answered in 6 s (RFC 5382 REQ-4); hairpinned ones come from inside and are not.
   */
  private unsolicited(b: Uint8Array, off: number, hairpin: boolean, reason: number): number {
    if (this.unsolicitedSyns !== null && !hairpin) this.unsolicitedSyns.note(b, off, this.nowMs);
    return this.drop(reason);
  }

  private timeoutOf(f: number): number {
    const proto = this.flowTable.proto(f);
    if (proto === IPPROTO_UDP) return this.tUdp;
    if (proto === IPPROTO_ICMP) return this.tIcmp;
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

  /** Timer wheel callback: the flow's real deadline, or -1 after expiring it. */
  private due(f: number): number {
    const deadline = this.flowTable.u32[f * FLOW_WORDS + F_LAST_SEEN] + this.timeoutOf(f);
    if (deadline > this.nowSec) return deadline;
    this.expireFlow(f);
    return -1;
  }

  private expireFlow(f: number): void {
    const ft = this.flowTable;
    const u = ft.u32;
    const base = f * FLOW_WORDS;
    const proto = ft.proto(f);
    const inAddr = u[base + F_IN_ADDR];
    ft.unlink(f);
    const m = this.mappingTable.lookupInside(proto, inAddr, u[base + F_PORTS] >>> 16);
    if (m !== NO_MAPPING) {
      // Unlink from the mapping's flow list.
      const mu = this.mappingTable.u32;
      const headAt = m * MAPPING_WORDS + M_HEAD;
      if (mu[headAt] === f + 1) mu[headAt] = u[base + F_MAP_NEXT];
      else {
        for (let ref = mu[headAt]; ref !== 0; ) {
          const rb = (ref - 1) * FLOW_WORDS;
          if (u[rb + F_MAP_NEXT] === f + 1) {
            u[rb + F_MAP_NEXT] = u[base + F_MAP_NEXT];
            break;
          }
          ref = u[rb + F_MAP_NEXT];
        }
      }
      this.closedMappings.flowRemoved(m, proto === IPPROTO_TCP && this.tcp.finished(f));
      if (mu[headAt] === 0 && this.pins.count[m] === 0) this.removeMapping(m);
    }
    if (this.halfOpen.remove(f)) this.hostTable.releaseHalfOpen(inAddr);
    else this.hostTable.releaseFlow(inAddr);
    if (u[base + F_ALG] !== 0) {
      u[base + F_ALG] = 0;
      this.alg?.flowEnded(f);
    }
    ft.free(f);
    this.counters[C.C_FLOWS_EXPIRED]++;
  }

  // ---------------------------------------------------------------- fragments and TTL

  /** A first fragment was forwarded: later fragments of its datagram get the same addresses. */
  private firstFragment(
    b: Uint8Array,
    off: number,
    proto: number,
    src: number,
    dst: number,
    _ff: number,
  ): void {
    const id = readU16(b, off + 4);
    const newSrc = readU32(b, off + 12);
    const newDst = readU32(b, off + 16);
    const fr = this.fragments;
    fr.record(this.fragmentClass(src), src, dst, proto, id, FRAG_FORWARD, newSrc, newDst, this.nowSec);
    this.releaseSrc = newSrc;
    this.releaseDst = newDst;
    this.counters[C.C_FRAGMENTS_RELEASED] += fr.takeHeld(src, dst, proto, id, this.applyReleased);
    const lost = fr.store.droppedOnRelease;
    if (lost > 0) {
      // Released faster than the caller took them: gone, counted.
      this.counters[C.D_FRAGMENT_BUFFER_FULL] += lost;
      this.counters[C.C_DROPPED] += lost;
    }
  }

  /** Inside sources' fragments are kept apart from outside ones (fragments.ts). */
  private fragmentClass(src: number): number {
    return this.isInside(src) ? CLASS_INSIDE : CLASS_OUTSIDE;
  }

  private laterFragment(
    b: Uint8Array,
    off: number,
    total: number,
    proto: number,
    src: number,
    dst: number,
  ): number {
    const id = readU16(b, off + 4);
    const fr = this.fragments;
    const cls = this.fragmentClass(src);
    const i = fr.find(cls, src, dst, proto, id);
    if (i < 0) {
      const held = fr.hold(cls, src, dst, proto, id, b, off, total, this.nowSec);
      // Fragments pushed out to make room are drops of their own: the source's own oldest when
      // it holds its share, its class's oldest when the class is full.
      const c = this.counters;
      const bySource = fr.store.evictedBySource;
      const byClass = fr.store.evictedByClass;
      c[C.D_FRAGMENT_SOURCE_BUDGET] += bySource;
      c[C.D_FRAGMENT_BUFFER_FULL] += byClass;
      c[C.C_DROPPED] += bySource + byClass;
      if (held === HOLD_SOURCE_BUDGET) return this.drop(C.D_FRAGMENT_SOURCE_BUDGET);
      if (held !== HOLD_OK) return this.drop(C.D_FRAGMENT_BUFFER_FULL);
      c[C.C_FRAGMENTS_HELD]++;
      return HELD;
    }
    if (fr.actionAt(i) === FRAG_DROP) return this.drop(C.D_FRAGMENT_OF_DROPPED);
    this.outLen = total;
    return this.applyFragment(b, off, fr.newSrcAt(i), fr.newDstAt(i));
  }

  private applyFragment(b: Uint8Array, off: number, newSrc: number, newDst: number): number {
    if (readU32(b, off + 12) !== newSrc) rewriteEndpoint(b, off, -1, 0, off + 12, newSrc, -1, 0, false);
    if (readU32(b, off + 16) !== newDst) rewriteEndpoint(b, off, -1, 0, off + 16, newDst, -1, 0, false);
    if (this.ttlMode === 0) {
      const ttl = b[off + 8];
      if (ttl < 255) setTtl(b, off, ttl + 1);
    } else if (this.ttlMode === 1) {
      const ttl = b[off + 8];
      if (ttl <= 1) return this.drop(C.D_TTL_EXCEEDED);
      setTtl(b, off, ttl - 1);
    }
    this.counters[C.C_FRAGMENTS_TRANSLATED]++;
    return FORWARD;
  }

  /** The engine is the hop and the TTL ran out: answer time-exceeded (RFC 792, RFC 1812). */
  private timeExceeded(b: Uint8Array, off: number, total: number): number {
    // The packet itself ends here (counted as a drop with its reason); the error goes back.
    this.counters[C.D_TTL_EXCEEDED]++;
    this.counters[C.C_DROPPED]++;
    this.counters[C.C_REPLIES]++;
    this.outLen = buildIcmpError(this.replyBuf, b, off, total, this.hopAddress, ICMP_TIME_EXCEEDED, 0, 0);
    return REPLY;
  }

  /** Builds an administratively-prohibited unreachable for the packet (for reject rules). */
  buildReject(b: Uint8Array, off: number, len: number): number {
    this.outLen = buildIcmpError(
      this.replyBuf,
      b,
      off,
      len,
      this.hopAddress,
      ICMP_DEST_UNREACH,
      ICMP_CODE_ADMIN_PROHIBITED,
      0,
    );
    return REPLY;
  }

  // ---------------------------------------------------------------- read-only views

  // ---------------------------------------------------------------- pins (control plane)

  /** Attaches the application-level gateways (src/alg); flows made from now on are classified. */
  attachAlg(hook: AlgHook): void {
    this.alg = hook;
  }

  /** The engine clock, in seconds: the base for a pin's `expiresAtSec`. */
  get clockSec(): number {
    return this.nowSec;
  }

  /**
   * Pins a mapping of inside endpoint inAddr:inPort so it lives without flows and admits inbound
   * connections (from `remoteAddr` only, when given) whatever the filtering mode. The outside
   * port is `outPort` exactly, or when 0 one allocated like any mapping's (the inside port when
   * free). An inside endpoint that already has a mapping keeps it (endpoint-independent mapping,
   * RFC 4787 REQ-1): asking for another outside port for it is refused.
   */
  pinMapping(req: PinRequest): PinResult {
    const proto = req.proto === "tcp" ? IPPROTO_TCP : IPPROTO_UDP;
    if (!this.isInside(req.inAddr))
      return { error: `${formatIpv4(req.inAddr)} is not on an inside network`, code: "MASQ_ERR_NOT_INSIDE" };
    const mt = this.mappingTable;
    let m = mt.lookupInside(proto, req.inAddr, req.inPort);
    if (m !== NO_MAPPING) {
      const have = mt.u32[m * MAPPING_WORDS + M_PORTS] & 0xffff;
      const haveAddr = mt.u32[m * MAPPING_WORDS + M_OUT_ADDR];
      if ((req.outPort && req.outPort !== have) || (req.outAddr !== undefined && req.outAddr !== haveAddr))
        return {
          error: `${formatIpv4(req.inAddr)}:${req.inPort}/${req.proto} is already mapped to ${formatIpv4(haveAddr)}:${have}`,
          code: "MASQ_ERR_ALREADY_MAPPED",
        };
    } else {
      if (mt.count >= mt.capacity)
        return { error: "mapping table full", code: "MASQ_ERR_MAPPING_TABLE_FULL" };
      // A mapping the host asked for itself (port mapping protocols, ALG expectations) counts
      // against its share of the ports like any other; the administrator's forwards do not.
      const counted = req.hostQuota !== false;
      const ht = this.hostTable;
      const host = counted ? ht.find(req.inAddr) : NO_HOST;
      if (counted && !this.portQuota.allows(host, proto))
        return {
          error: `${formatIpv4(req.inAddr)} holds its share of ${req.proto} ports (limits.max_ports_per_host)`,
          code: "MASQ_ERR_HOST_PORT_QUOTA",
        };
      if (counted && host === NO_HOST && ht.count >= ht.capacity)
        return { error: "host table full", code: "MASQ_ERR_HOST_TABLE_FULL" };
      const addrIdx =
        req.outAddr === undefined ? this.pairedAddressIndex(req.inAddr) : this.outsideIndex(req.outAddr);
      if (addrIdx < 0)
        return {
          error: `${formatIpv4(req.outAddr ?? 0)} is not a public address of masq`,
          code: "MASQ_ERR_NOT_PUBLIC_ADDRESS",
        };
      const outAddr = this.outside[addrIdx];
      const ports = this.portsFor(proto);
      let outPort: number;
      if (req.outPort) {
        outPort = req.outPort;
        const taken = ports.inRange(outPort)
          ? !ports.take(addrIdx, outPort)
          : mt.lookupOutside(proto, outAddr, outPort) !== NO_MAPPING;
        if (taken)
          return {
            error: `${formatIpv4(outAddr)}:${outPort}/${req.proto} is in use`,
            code: "MASQ_ERR_PORT_IN_USE",
          };
      } else {
        outPort = ports.allocate(addrIdx, req.inPort, this.config.portParity);
        if (outPort === NO_PORT)
          return {
            error: `no free ${req.proto} port on ${formatIpv4(outAddr)}`,
            code: "MASQ_ERR_PORTS_EXHAUSTED",
          };
      }
      m = mt.add(proto, req.inAddr, req.inPort, outAddr, outPort);
      if (counted) this.portQuota.charge(m, host !== NO_HOST ? host : ht.findOrAdd(req.inAddr), proto);
      this.counters[C.C_MAPPINGS_CREATED]++;
    }
    const pin = this.pins.add({
      mapping: m,
      remoteAddr: req.remoteAddr ?? 0,
      expiresAtSec: req.expiresAtSec ?? 0,
      oneShot: req.oneShot ?? false,
      origin: req.origin,
      note: req.note ?? "",
    });
    if (!pin) {
      this.dropEmptyMapping(m);
      return { error: "too many pins on one mapping", code: "MASQ_ERR_TOO_MANY_PINS" };
    }
    // A pinned mapping is in use, whatever its connections.
    this.closedMappings.review(m);
    this.counters[C.C_PINS_CREATED]++;
    const mb = m * MAPPING_WORDS;
    return { id: pin.id, outAddr: mt.u32[mb + M_OUT_ADDR], outPort: mt.u32[mb + M_PORTS] & 0xffff };
  }

  /** Removes a pin; the mapping goes too once it has neither pins nor flows. */
  unpin(id: number): boolean {
    const pin = this.pins.remove(id);
    if (!pin) return false;
    if (!this.dropEmptyMapping(pin.mapping)) this.closedMappings.review(pin.mapping);
    return true;
  }

  /** Moves a pin's deadline (renewal of a PCP/NAT-PMP mapping). */
  renewPin(id: number, expiresAtSec: number): boolean {
    return this.pins.renew(id, expiresAtSec);
  }

  /** The outside address paired with an inside host (RFC 4787 REQ-2), for the control plane. */
  pairedAddress(inAddr: number): number {
    return this.outside[this.pairedAddressIndex(inAddr)];
  }

  /** Pins for listing (not for the packet path). */
  pinList(): PinView[] {
    const mt = this.mappingTable;
    return this.pins.all().map((p: Pin) => {
      const mb = p.mapping * MAPPING_WORDS;
      let flows = 0;
      for (
        let ref = mt.u32[mb + M_HEAD];
        ref !== 0;
        ref = this.flowTable.u32[(ref - 1) * FLOW_WORDS + F_MAP_NEXT]
      )
        flows++;
      return {
        id: p.id,
        protocol: protoName(mt.proto[p.mapping]),
        inside: { addr: formatIpv4(mt.u32[mb + M_IN_ADDR]), port: mt.u32[mb + M_PORTS] >>> 16 },
        outside: { addr: formatIpv4(mt.u32[mb + M_OUT_ADDR]), port: mt.u32[mb + M_PORTS] & 0xffff },
        remote: p.remoteAddr === 0 ? "*" : formatIpv4(p.remoteAddr),
        origin: p.origin,
        note: p.note,
        expiresInSec: p.expiresAtSec === 0 ? null : Math.max(0, p.expiresAtSec - this.nowSec),
        flows,
      };
    });
  }

  /**
   * A listing of the flow table in bounded steps (flow-listing.ts), newest activity first: the
   * control socket runs it a chunk at a time between packet batches.
   */
  listFlows(filter: FlowFilter = {}, limit = Number.POSITIVE_INFINITY): FlowListing {
    return new FlowListing(this.flowTable, filter, limit);
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
    const x = this.readFlow(f, new FlowFields());
    return {
      protocol: x.protocol,
      inside: { addr: formatIpv4(x.inAddr), port: x.inPort },
      outside: { addr: formatIpv4(x.outAddr), port: x.outPort },
      remote: { addr: formatIpv4(x.remAddr), port: x.remPort },
      state: x.state,
      origin: x.origin,
      idleSec: x.idleSec,
      expiresInSec: x.expiresInSec,
      packetsOut: x.packetsOut,
      packetsIn: x.packetsIn,
      bytesOut: x.bytesOut,
      bytesIn: x.bytesIn,
    };
  }

  /** Fills `out` with live flow f's fields (no allocation); returns it. */
  readFlow(f: number, out: FlowFields): FlowFields {
    const ft = this.flowTable;
    const u = ft.u32;
    const d = ft.f64;
    const base = f * FLOW_WORDS;
    const db = f * (FLOW_BYTES / 8);
    const proto = ft.proto(f);
    const sb = ft.stateByte(f);
    const lastSeen = u[base + F_LAST_SEEN];
    out.protocol = protoName(proto);
    out.inAddr = u[base + F_IN_ADDR];
    out.inPort = u[base + F_PORTS] >>> 16;
    out.outAddr = u[base + F_OUT_ADDR];
    out.outPort = u[base + F_PORTS] & 0xffff;
    out.remAddr = u[base + F_REM_ADDR];
    out.remPort = u[base + F_META] >>> 16;
    out.state = STATE_NAMES[sb & STATE_MASK];
    out.origin =
      this.outsideIndex(out.remAddr) >= 0
        ? "hairpin"
        : (sb & ORIGIN_INBOUND) !== 0
          ? this.inboundOrigin(proto, out.inAddr, out.inPort)
          : "outbound";
    out.idleSec = Math.max(0, this.nowSec - lastSeen);
    out.expiresInSec = Math.max(0, lastSeen + this.timeoutOf(f) - this.nowSec);
    out.packetsOut = d[db + D_PKTS_OUT];
    out.packetsIn = d[db + D_PKTS_IN];
    out.bytesOut = d[db + D_BYTES_OUT];
    out.bytesIn = d[db + D_BYTES_IN];
    return out;
  }

  /** What admitted an inbound flow: the origin of its mapping's pin ("forward", "pcp" …) or filtering. */
  private inboundOrigin(proto: number, inAddr: number, inPort: number): string {
    const m = this.mappingTable.lookupInside(proto, inAddr, inPort);
    if (m === NO_MAPPING || this.pins.count[m] === 0) return "inbound";
    return this.pins.of(m)[0].origin;
  }

  /** Total bytes preallocated for flows and everything sized by them. */
  memoryBytes(): number {
    return (
      this.flowTable.byteLength +
      this.tcp.byteLength +
      this.halfOpen.byteLength +
      this.mappingTable.byteLength +
      this.closedMappings.byteLength +
      this.hostTable.byteLength +
      this.wheel.byteLength +
      this.fragments.byteLength +
      this.portsTcp.byteLength +
      this.portsUdp.byteLength +
      this.portsIcmp.byteLength
    );
  }

  stats(): EngineStats {
    return {
      counters: { ...C.namedCounters(this.counters), ...this.alg?.namedCounters() },
      flows: this.flowTable.count,
      halfOpen: this.halfOpen.count,
      mappings: this.mappingTable.count,
      hosts: this.hostTable.count,
      heldFragments: this.fragments.store.count,
      heldFragmentBytes: this.fragments.store.heldBytes,
      capacity: {
        flows: this.flowTable.capacity,
        mappings: this.mappingTable.capacity,
        hosts: this.hostTable.capacity,
      },
      bytesPerFlow: Math.round(this.memoryBytes() / this.flowTable.capacity),
    };
  }
}

export interface PinRequest {
  proto: "tcp" | "udp";
  inAddr: number;
  inPort: number;
  /** Outside address; default the inside host's paired address. */
  outAddr?: number;
  /** Outside port; 0 or absent: allocate (the inside port when free). */
  outPort?: number;
  /** Admit inbound only from this remote address (0 or absent: any). */
  remoteAddr?: number;
  /** Engine-clock second (see `clockSec`) when the pin lapses; 0 or absent: never. */
  expiresAtSec?: number;
  /** Removed once it has admitted one inbound flow (an ALG expectation). */
  oneShot?: boolean;
  origin: string;
  note?: string;
  /**
   * Whether a mapping this pin creates counts against the inside host's port quota (default yes:
   * the host asked for it, through NAT-PMP/PCP or an ALG). A forward, the administrator's own
   * decision, passes false.
   */
  hostQuota?: boolean;
}

/**
 * What the engine needs of the application-level gateways (implemented in src/alg, which sits
 * above the engine): pick an ALG for a new flow, see its packets, hear when it ends.
 */
export interface AlgHook {
  /** The ALG (1..255) watching a new flow whose server port is `port`; 0 for none. */
  classify(proto: number, port: number): number;
  /**
   * A translated packet of flow f: may rewrite it in place (FORWARD) or build a replacement in
   * the engine's replyBuf and set its outLen (REPLY). Never throws.
   */
  packet(
    f: number,
    alg: number,
    b: Uint8Array,
    off: number,
    hl: number,
    total: number,
    outbound: boolean,
    l4Partial: boolean,
  ): number;
  flowEnded(f: number): void;
  /**
   * The sender's sequence number for `seq`, the number its receiver saw on a segment of flow f
   * (quoted in an ICMP error); `seq` itself when the ALG changed nothing in that direction.
   */
  quotedSeq(f: number, segmentOutbound: boolean, seq: number): number;
  /** Counters of the gateways' own, by name, listed with the engine's. */
  namedCounters(): Record<string, number>;
}

export type PinResult =
  | { id: number; outAddr: number; outPort: number }
  /** Refused: what happened, and its stable code (src/errors/codes.ts). */
  | { error: string; code: ErrorCode };

function protoName(p: number): Protocol {
  return p === IPPROTO_TCP ? "tcp" : p === IPPROTO_UDP ? "udp" : "icmp";
}
