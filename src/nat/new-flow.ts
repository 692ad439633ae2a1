// The slow path: a packet that matched no flow. Admission (a TCP SYN only; for inbound, a mapping
// and a pin or the filtering that admits the remote), the firewall, the rate limits and the
// table limits, the mapping and its port, then the flow (flow-life.ts addFlow). The fast path
// (fast-path.ts) hands a miss here and goes on with the flow it gets back.
import { IPPROTO_ICMP, IPPROTO_TCP } from "../packet/ipv4.ts";
import { ICMP_CODE_ADMIN_PROHIBITED, ICMP_DEST_UNREACH, TCP_ACK, TCP_RST, TCP_SYN } from "../packet/l4.ts";
import { hasToken, refill } from "../policy/rate.ts";
import { buildTcpReset } from "../policy/reject.ts";
import { ACT_DROP, ACT_REJECT, DIR_INBOUND, DIR_OUTBOUND, NO_RULE } from "../policy/rules.ts";
import * as C from "./counters.ts";
import { addFlow, evictHalfOpen, retireMapping, unpin } from "./flow-life.ts";
import {
  F_IN_ADDR,
  F_META,
  F_REM_ADDR,
  FLOW_WORDS,
  NO_FLOW,
  ORIGIN_INBOUND,
  ORIGIN_OUTBOUND,
} from "./flow-table.ts";
import { refuseDatagramAt } from "./fragment-path.ts";
import { NO_HOST } from "./host-table.ts";
import { buildIcmpError } from "./icmp.ts";
import { M_IN_ADDR, M_PORTS, MAPPING_WORDS, NO_MAPPING } from "./mapping-table.ts";
import { EV_MAPPING_CREATED } from "./nat-events.ts";
import { NO_PORT } from "./port-allocator.ts";
import { BLOCK_QUOTA } from "./port-blocks.ts";
import { type EngineState, FILTER_ADDRESS_PORT_DEPENDENT, FILTER_ENDPOINT_INDEPENDENT } from "./state.ts";
import { PROCEED, REPLY } from "./verdicts.ts";

/**
 * An inbound half-open connection is evicted to make room for another only after it has had this
 * long to complete its handshake (the client's round trip, or the server's first SYN-ACK
 * retransmission at 1 s). Without it a fast enough flood evicts every half-open connection before
 * its ACK can come back, and none completes; with it, a flood of R SYN/s against a cap of C lets
 * C/s through, each sure to be kept a second. A new flow that finds the flow table full evicts
 * regardless of age: an inside host's own flow comes before an unfinished inbound handshake.
 */
const HALF_OPEN_MIN_AGE_MS = 1000;

// The admit functions return the new flow, or ~verdict (a negative number) when the packet gets
// none: the verdict (DROP, or REPLY with the answer in replyBuf) is ~result.

/**
 * A packet from inside (TCP, UDP, or an ICMP echo request with its identifier as `sport` and 0 as
 * `dport`) that matched no flow: the new flow, or ~verdict.
 */
export function admitOutbound(
  s: EngineState,
  b: Uint8Array,
  off: number,
  hl: number,
  total: number,
  proto: number,
  src: number,
  sport: number,
  dst: number,
  dport: number,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  if (proto === IPPROTO_TCP && (b[off + hl + 13] & (TCP_SYN | TCP_ACK | TCP_RST)) !== TCP_SYN)
    return ~s.drop(C.D_TCP_NO_FLOW);
  if (s.firewall !== null) {
    // The rules see an ICMP query without ports.
    const v = screen(
      s,
      b,
      off,
      total,
      DIR_OUTBOUND,
      proto,
      src,
      proto === IPPROTO_ICMP ? 0 : sport,
      dst,
      dport,
    );
    if (v !== PROCEED) return ~v;
  }
  const f = createOutbound(s, proto, src, sport, dst, dport);
  return f < 0 ? ~refuse(s, b, off, total, src, -f) : f;
}

/**
 * A packet from outside (or hairpinned from inside) to our address `dst`:`dport` that matched no
 * flow: the new flow, or ~verdict.
 */
export function admitInbound(
  s: EngineState,
  b: Uint8Array,
  off: number,
  hl: number,
  total: number,
  proto: number,
  src: number,
  sport: number,
  dst: number,
  dport: number,
  hairpin: boolean,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  const m = s.mappingTable.lookupOutside(proto, dst, dport);
  if (m === NO_MAPPING) {
    // Interface mode shares the address with the gateway itself: ports outside our range
    // (and not forwarded) are the gateway's own traffic and go back to its stack untouched.
    if (s.interfaceMode && !hairpin && !s.portsFor(proto).inRange(dport)) return ~s.passthrough();
    return ~unsolicited(s, b, off, hairpin, C.D_NO_MAPPING);
  }
  // A pin (forward, PCP mapping, ALG expectation) admits whatever the filtering mode. So does
  // hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): the packet comes from an inside host, which
  // could reach the other directly, so filtering it protects nothing and would only break P2P
  // between two hosts behind this NAT when one sends first. The firewall rules still apply.
  const pin = s.pins.count[m] !== 0 ? s.pins.admitting(m, src) : undefined;
  if (pin === undefined && !hairpin && !admits(s, m, src))
    return ~unsolicited(s, b, off, hairpin, C.D_FILTERED);
  if (proto === IPPROTO_TCP && (b[off + hl + 13] & (TCP_SYN | TCP_ACK | TCP_RST)) !== TCP_SYN)
    return ~s.drop(C.D_TCP_NO_FLOW);
  if (s.firewall !== null) {
    const mb = m * MAPPING_WORDS;
    const inAddr = s.mappingTable.u32[mb + M_IN_ADDR];
    const inPort = s.mappingTable.u32[mb + M_PORTS] >>> 16;
    const v = screen(s, b, off, total, DIR_INBOUND, proto, src, sport, inAddr, inPort);
    if (v !== PROCEED) return ~v;
  }
  if (s.globalRate !== null && !s.globalRate.take(s.nowMs)) return ~s.drop(C.D_RATE_LIMIT);
  if (proto === IPPROTO_TCP) {
    const v = roomForHalfOpen(s, proto, dst, dport, m);
    if (v !== PROCEED) return ~v;
  }
  const f = addFlow(s, m, proto, src, sport, ORIGIN_INBOUND);
  if (f < 0) return ~s.drop(-f);
  if (proto === IPPROTO_TCP) countHalfOpen(s, f);
  if (pin?.oneShot) unpin(s, pin.id);
  return f;
}

/** Creates an outbound flow (and its mapping if the endpoint has none); -reason on failure. */
function createOutbound(
  s: EngineState,
  proto: number,
  inAddr: number,
  inPort: number,
  remAddr: number,
  remPort: number,
): number {
  // Should this flow need a new mapping, its port comes from bitmap words that are cache misses
  // of their own (8 KB per pool address): load them first, to overlap the lookups' misses.
  const addrIdx = s.pairedAddressIndex(inAddr);
  const ports = s.portsFor(proto);
  s.prefetchSink += ports.warm(addrIdx, inPort);
  const ft = s.flowTable;
  const ht = s.hostTable;
  // One host lookup serves the limits and the mapping, unless an eviction (a full flow table)
  // may have dropped host records in between.
  const full = ft.count >= ft.capacity;
  let host = ht.find(inAddr);
  const refused = outboundLimits(s, inAddr, host);
  if (refused !== 0) return -refused;
  if (full) host = ht.find(inAddr);
  const mt = s.mappingTable;
  let m = mt.lookupInside(proto, inAddr, inPort);
  if (m === NO_MAPPING && s.det !== null) {
    m = createDeterministic(s, proto, inAddr, inPort, addrIdx, host);
    if (m < 0) return m;
  }
  if (m === NO_MAPPING) {
    const blocks = s.blocksFor(proto);
    if (blocks !== null) {
      // Port blocks: ports come from the host's own blocks only (port-blocks.ts).
      m = createInBlock(s, proto, inAddr, inPort, remAddr, remPort, addrIdx, host);
      if (m < 0) return m;
    }
  }
  if (m === NO_MAPPING) {
    const outAddr = s.outside[addrIdx];
    const atShare = !s.portQuota.allows(host, proto);
    // Exhaustion before the share: with the range gone, that is what every host meets.
    const refusal =
      mt.count >= mt.capacity
        ? C.D_MAPPING_TABLE_FULL
        : ports.freeFor(addrIdx, inPort) === 0
          ? C.D_PORTS_EXHAUSTED
          : atShare
            ? C.D_HOST_PORT_QUOTA
            : 0;
    let outPort: number;
    if (refusal === 0) {
      outPort = ports.allocate(addrIdx, inPort, s.config.portParity);
      if (outPort === NO_PORT) return -C.D_PORTS_EXHAUSTED;
      if (outPort === inPort) s.counters[C.C_PORTS_PRESERVED]++;
    } else {
      // No port to be had: a finished TCP mapping's, if one may be taken (closed-mappings.ts).
      const old =
        proto === IPPROTO_TCP ? s.closedMappings.pick(host, outAddr, remAddr, remPort, !atShare) : NO_MAPPING;
      if (old === NO_MAPPING) {
        if (refusal === C.D_HOST_PORT_QUOTA && s.events !== null) s.events.quota(s, host, inAddr, proto);
        return -refusal;
      }
      outPort = reusePort(s, old, proto, addrIdx);
      // The host's record may have gone with its last mapping.
      host = ht.find(inAddr);
    }
    // The mapping's and the flow's outside keys land on two random index slots: load both
    // now, so the two misses overlap instead of following one another.
    const fi = ft.index;
    s.prefetchSink +=
      mt.index.slots[((mt.outsideHash(proto, outAddr, outPort) & mt.index.mask) << 1) + 1] +
      fi.slots[((ft.outsideHash(proto, outAddr, outPort, remAddr, remPort) & fi.mask) << 1) + 1];
    m = mt.add(proto, inAddr, inPort, outAddr, outPort);
    // The host's record exists (or can be made: the table was checked above) from its first
    // mapping on, so the port is counted against it.
    s.portQuota.charge(m, host !== NO_HOST ? host : ht.findOrAdd(inAddr), proto);
    s.counters[C.C_MAPPINGS_CREATED]++;
    if (s.events !== null) s.events.mapping(s, EV_MAPPING_CREATED, m, remAddr, remPort);
  }
  const f = addFlow(s, m, proto, remAddr, remPort, ORIGIN_OUTBOUND);
  if (f >= 0) spendHostToken(s, inAddr);
  return f;
}

/**
 * Deterministic mode: a new mapping for inAddr:inPort with a port of the address's fixed range
 * (deterministic.ts), logged by nobody; -reason when it has no range or the range is used up.
 */
function createDeterministic(
  s: EngineState,
  proto: number,
  inAddr: number,
  inPort: number,
  addrIdx: number,
  host: number,
): number {
  const det = s.det!;
  const mt = s.mappingTable;
  const i = det.indexOf(inAddr);
  if (i < 0) return -C.D_NOT_DETERMINISTIC;
  if (mt.count >= mt.capacity) return -C.D_MAPPING_TABLE_FULL;
  const outPort = det.allocate(s.portsFor(proto), i, inPort, s.config.portParity);
  if (outPort === NO_PORT) return -C.D_PORTS_EXHAUSTED;
  if (outPort === inPort) s.counters[C.C_PORTS_PRESERVED]++;
  return addMappingFor(s, proto, inAddr, inPort, addrIdx, outPort, host);
}

/** Adds the mapping inAddr:inPort ↔ outside addrIdx:outPort, charged to the host: the mapping. */
function addMappingFor(
  s: EngineState,
  proto: number,
  inAddr: number,
  inPort: number,
  addrIdx: number,
  outPort: number,
  host: number,
): number {
  const m = s.mappingTable.add(proto, inAddr, inPort, s.outside[addrIdx], outPort);
  s.portQuota.charge(m, host !== NO_HOST ? host : s.hostTable.findOrAdd(inAddr), proto);
  s.counters[C.C_MAPPINGS_CREATED]++;
  return m;
}

/** Finished mapping `old` goes and its outside port is taken again (closed-mappings.ts): the port. */
function reusePort(s: EngineState, old: number, proto: number, addrIdx: number): number {
  const outPort = s.mappingTable.u32[old * MAPPING_WORDS + M_PORTS] & 0xffff;
  retireMapping(s, old);
  s.portsFor(proto).take(addrIdx, outPort);
  s.counters[C.C_TCP_PORTS_REUSED]++;
  return outPort;
}

/**
 * A new mapping for inside endpoint inAddr:inPort with a port of the host's blocks on address
 * addrIdx: the mapping, or -reason. A finished TCP mapping of the host's gives its port when the
 * blocks have none (never another host's: its port is in that host's block).
 */
function createInBlock(
  s: EngineState,
  proto: number,
  inAddr: number,
  inPort: number,
  remAddr: number,
  remPort: number,
  addrIdx: number,
  known: number,
): number {
  const mt = s.mappingTable;
  const ht = s.hostTable;
  const blocks = s.blocksFor(proto)!;
  const ports = s.portsFor(proto);
  let host = known;
  if (mt.count >= mt.capacity) return -C.D_MAPPING_TABLE_FULL;
  const atShare = !s.portQuota.allows(host, proto);
  let outPort = atShare
    ? BLOCK_QUOTA
    : blocks.allocate(ports, addrIdx, inAddr, inPort, s.config.portParity, s.nowMs, s.blockSink);
  if (outPort < 0) {
    const reason = atShare
      ? C.D_HOST_PORT_QUOTA
      : outPort === BLOCK_QUOTA
        ? C.D_PORT_BLOCK_QUOTA
        : C.D_PORTS_EXHAUSTED;
    const old =
      proto === IPPROTO_TCP
        ? s.closedMappings.pick(host, s.outside[addrIdx], remAddr, remPort, false)
        : NO_MAPPING;
    if (old === NO_MAPPING) {
      if (reason === C.D_HOST_PORT_QUOTA && s.events !== null) s.events.quota(s, host, inAddr, proto);
      return -reason;
    }
    outPort = reusePort(s, old, proto, addrIdx);
    blocks.retaken(addrIdx, outPort, inAddr);
    host = ht.find(inAddr);
  } else if (outPort === inPort) s.counters[C.C_PORTS_PRESERVED]++;
  const m = addMappingFor(s, proto, inAddr, inPort, addrIdx, outPort, host);
  if (blocks.holder(addrIdx, outPort) === inAddr) s.inBlock[m] = 1;
  // One record per block (logged as the block was taken), none per mapping.
  return m;
}

/**
 * The table and rate limits a new outbound flow of inside host `inAddr` must pass: 0, or the
 * reason it is refused. Rate limits last, so a flow refused for another reason spends no token.
 * `known`: the host's record (or NO_HOST) when the caller has looked it up already.
 */
export function outboundLimits(s: EngineState, inAddr: number, known?: number): number {
  const ft = s.flowTable;
  let evicted = false;
  if (ft.count >= ft.capacity) {
    if (!evictHalfOpen(s, 0)) return C.D_FLOW_TABLE_FULL;
    evicted = true;
  }
  const ht = s.hostTable;
  // The eviction may have taken a host's last flow, and with it its record: look again then.
  const host = known === undefined || evicted ? ht.find(inAddr) : known;
  if (host !== NO_HOST && ht.flows[host] >= s.config.maxFlowsPerHost) return C.D_HOST_FLOW_LIMIT;
  if (host === NO_HOST && ht.count >= ht.capacity) return C.D_HOST_TABLE_FULL;
  const rate = s.hostRate;
  if (rate > 0 && host !== NO_HOST && !hasToken(ht.tokens, ht.tokenStamps, host, s.nowMs, rate, rate))
    return C.D_HOST_RATE_LIMIT;
  if (s.globalRate !== null && !s.globalRate.take(s.nowMs)) return C.D_RATE_LIMIT;
  return 0;
}

/** Inside host `inAddr` opened a flow: one token of its new-flow rate goes. */
export function spendHostToken(s: EngineState, inAddr: number): void {
  const rate = s.hostRate;
  if (rate <= 0) return;
  const ht = s.hostTable;
  const h = ht.find(inAddr);
  refill(ht.tokens, ht.tokenStamps, h, s.nowMs, rate, rate);
  ht.tokens[h] -= 1;
}

/**
 * The firewall's say on a flow about to be created (never on packets of existing flows):
 * PROCEED to go ahead, else the verdict (DROP, or REPLY with a reset / unreachable in replyBuf).
 * Inbound, `dst`:`dport` is the inside host the flow would reach.
 */
export function screen(
  s: EngineState,
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
  const fw = s.firewall;
  if (fw === null) return PROCEED;
  const r = fw.match(dir, proto, src, sport, dst, dport);
  if (r === NO_RULE) return PROCEED;
  const act = fw.action[r];
  if (act === ACT_DROP) return s.drop(C.D_FIREWALL_DROP);
  if (act !== ACT_REJECT) return PROCEED;
  s.lastDrop = C.D_FIREWALL_REJECT;
  s.counters[C.D_FIREWALL_REJECT]++;
  s.counters[C.C_DROPPED]++;
  s.counters[C.C_REPLIES]++;
  // REPLY, so process() does not see a DROP: the datagram's later fragments are refused here.
  refuseDatagramAt(s, b, off);
  if (proto === IPPROTO_TCP) {
    s.outLen = buildTcpReset(s.replyBuf, b, off, total);
    return REPLY;
  }
  return buildReject(s, b, off, total);
}

/** Builds an administratively-prohibited unreachable for the packet (for reject rules). */
export function buildReject(s: EngineState, b: Uint8Array, off: number, len: number): number {
  s.outLen = buildIcmpError(
    s.replyBuf,
    b,
    off,
    len,
    s.hopAddress,
    ICMP_DEST_UNREACH,
    ICMP_CODE_ADMIN_PROHIBITED,
    0,
  );
  return REPLY;
}

/**
 * A new outbound flow was refused for `reason`: dropped and counted; when it was refused for
 * want of a mapping (the host's share, the range or the mapping table used up), the host is
 * answered (RFC 6888 REQ-11, src/nat/exhaustion.ts), within the answers' rate limits.
 */
function refuse(
  s: EngineState,
  b: Uint8Array,
  off: number,
  total: number,
  src: number,
  reason: number,
): number {
  const v = s.drop(reason);
  if (
    reason !== C.D_HOST_PORT_QUOTA &&
    reason !== C.D_PORTS_EXHAUSTED &&
    reason !== C.D_MAPPING_TABLE_FULL &&
    reason !== C.D_PORT_BLOCK_QUOTA
  )
    return v;
  const n = s.answers.build(s.replyBuf, b, off, total, s.hostTable.find(src), s.hopAddress, s.nowMs);
  if (n === 0) return v;
  s.outLen = n;
  s.counters[C.C_REPLIES]++;
  s.counters[C.C_EXHAUSTION_REPLIES]++;
  refuseDatagramAt(s, b, off);
  return REPLY;
}

/**
 * Room for one more inbound half-open connection (a SYN to mapping m, at dst:dport): under the
 * cap, or by evicting the oldest half-open one (never an established connection). PROCEED to go
 * ahead, else the DROP verdict.
 */
function roomForHalfOpen(s: EngineState, proto: number, dst: number, dport: number, m: number): number {
  const ft = s.flowTable;
  if (s.halfOpen.count >= s.maxHalfOpen) {
    if (!evictHalfOpen(s, HALF_OPEN_MIN_AGE_MS)) return s.drop(C.D_HALF_OPEN_LIMIT);
  } else if (ft.count >= ft.capacity && !evictHalfOpen(s, 0)) return s.drop(C.D_FLOW_TABLE_FULL);
  // The evicted flow may have been the last of m's, and m gone with it.
  if (s.mappingTable.lookupOutside(proto, dst, dport) !== m) return s.drop(C.D_NO_MAPPING);
  return PROCEED;
}

/** Flow f was just admitted by an inbound SYN: a half-open connection, not the host's own flow. */
function countHalfOpen(s: EngineState, f: number): void {
  const host = s.hostTable.find(s.flowTable.u32[f * FLOW_WORDS + F_IN_ADDR]);
  s.hostTable.countAsHalfOpen(host);
  s.halfOpen.push(f, s.nowMs);
}

/** Filtering (RFC 4787 REQ-8, RFC 5382 REQ-3) for a packet from `remAddr` to mapping m. */
function admits(s: EngineState, m: number, remAddr: number): boolean {
  if (s.filtering === FILTER_ENDPOINT_INDEPENDENT) return true;
  if (s.filtering === FILTER_ADDRESS_PORT_DEPENDENT) return false; // the exact flow would have matched
  const u = s.flowTable.u32;
  const mt = s.mappingTable;
  for (let f = mt.firstFlow(m); f !== NO_FLOW; f = mt.nextFlow(f)) {
    const base = f * FLOW_WORDS;
    // Flows the remote opened itself do not count: only the inside host's own sending does.
    if (u[base + F_REM_ADDR] === remAddr && (u[base + F_META] & ORIGIN_INBOUND) === 0) return true;
  }
  return false;
}

/**
 * An inbound packet that nothing admits. With REQ-4 answers on, an unsolicited SYN is noted to
 * be answered in 6 s (RFC 5382 REQ-4); hairpinned ones come from inside and are not.
 */
function unsolicited(s: EngineState, b: Uint8Array, off: number, hairpin: boolean, reason: number): number {
  if (s.unsolicitedSyns !== null && !hairpin) s.unsolicitedSyns.note(b, off, s.nowMs);
  return s.drop(reason);
}
