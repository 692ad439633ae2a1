// The life cycle of flows and mappings: the clock and expiry, a flow's birth (addFlow) and end
// (expireFlow), a mapping's end with its last flow and pin, and what a TCP connection's events
// mean for them. Never per packet of an established flow, except tcpEvent on a state change.
import { IPPROTO_TCP } from "../packet/ipv4.ts";
import * as C from "./counters.ts";
import {
  F_ALG,
  F_IN_ADDR,
  F_LAST_SEEN,
  F_META,
  F_OUT_ADDR,
  F_PORTS,
  F_REM_ADDR,
  FLOW_WORDS,
  NO_FLOW,
  ORIGIN_OUTBOUND,
} from "./flow-table.ts";
import { NO_HOST } from "./host-table.ts";
import { M_IN_ADDR, M_OUT_ADDR, M_PORTS, MAPPING_WORDS, NO_MAPPING } from "./mapping-table.ts";
import { EV_MAPPING_DELETED } from "./nat-events.ts";
import type { EngineState } from "./state.ts";
import { TCP_FINISHED, TCP_HANDSHAKE_DONE, TCP_REOPENED, TCP_RST_OUT_OF_WINDOW } from "./tcp-state.ts";
import { FORWARD } from "./verdicts.ts";

/**
 * Records visited per timer-wheel call, so expiry never stalls the packet loop: an expiry costs
 * ~1.5 µs once the code is hot and ~8 µs before (measured), so a call stays within ~0.4 (2) ms.
 * At 4096, the second a burst of 30,000 UDP flows timed out stalled the loop for 6 (34) ms per
 * call, and a batch of packets made one call each.
 */
export const EXPIRY_BUDGET = 256;

/** Moves the engine clock to second `sec` (never back) and expires what is due. */
export function advanceClock(s: EngineState, sec: number): void {
  if (sec < s.nowSec && s.started) sec = s.nowSec; // never go back
  s.nowSec = sec;
  s.started = true;
  s.timersBehind = s.wheel.advance(sec, s.dueFn, EXPIRY_BUDGET);
  // The rest waits for a later ms (a batch shares one clock reading: one budget per batch) or
  // for the caller's catch-up (Datapath: between batches).
  if (s.timersBehind) s.catchUpAtMs = s.nowMs + 1;
  if (s.pins.nextExpirySec !== 0 && sec >= s.pins.nextExpirySec)
    for (const p of s.pins.due(sec)) {
      unpin(s, p.id);
      s.counters[C.C_PINS_EXPIRED]++;
    }
  // Checked once a second, so an answer goes out 6 to 7 s after its SYN.
  if (s.unsolicitedSyns !== null) s.unsolicitedSyns.expire(s.nowMs);
  // Port blocks whose reuse delay is over are freed (and their deletion logged).
  if (s.blocksTcp !== null) {
    s.blocksTcp.sweep(s.nowMs, s.blockSink);
    s.blocksUdp?.sweep(s.nowMs, s.blockSink);
    s.blocksIcmp?.sweep(s.nowMs, s.blockSink);
  }
  const timedOut = s.fragments.expire(sec);
  if (timedOut > 0) {
    s.counters[C.D_FRAGMENT_TIMEOUT] += timedOut;
    s.counters[C.C_DROPPED] += timedOut;
  }
}

/** Timer wheel callback: flow f's real deadline, or -1 after expiring it. */
export function due(s: EngineState, f: number): number {
  const deadline = s.flowTable.u32[f * FLOW_WORDS + F_LAST_SEEN] + s.timeoutOf(f);
  if (deadline > s.nowSec) return deadline;
  expireFlow(s, f);
  return -1;
}

/** Adds a flow to mapping m for the given remote; -reason on failure. */
export function addFlow(
  s: EngineState,
  m: number,
  proto: number,
  remAddr: number,
  remPort: number,
  origin: number,
): number {
  const mt = s.mappingTable;
  const mb = m * MAPPING_WORDS;
  const f = addFlowRecord(
    s,
    proto,
    mt.u32[mb + M_IN_ADDR],
    mt.u32[mb + M_OUT_ADDR],
    mt.u32[mb + M_PORTS],
    remAddr,
    remPort,
    origin,
  );
  if (f < 0) {
    dropEmptyMapping(s, m);
    return f;
  }
  const u = s.flowTable.u32;
  const base = f * FLOW_WORDS;
  mt.attachFlow(m, f);
  s.closedMappings.flowAdded(m);
  if (s.events !== null) s.events.flow(s, f, true);
  // Server port of the flow: the remote's for outbound flows, the inside host's for inbound.
  u[base + F_ALG] =
    s.alg === null
      ? 0
      : s.alg.classify(proto, origin === ORIGIN_OUTBOUND ? remPort : mt.u32[mb + M_PORTS] >>> 16);
  return f;
}

/**
 * Makes flow record (proto, inAddr, outAddr, `ports` = inside port << 16 | outside port, remAddr,
 * remPort), counted against its inside host, indexed and timed; -reason on failure. Mapped flows
 * (addFlow) and address-only ones (generic-flow.ts) are both made here.
 */
export function addFlowRecord(
  s: EngineState,
  proto: number,
  inAddr: number,
  outAddr: number,
  ports: number,
  remAddr: number,
  remPort: number,
  origin: number,
): number {
  const ht = s.hostTable;
  let host = ht.find(inAddr);
  if (host !== NO_HOST && ht.flows[host] >= s.config.maxFlowsPerHost) return -C.D_HOST_FLOW_LIMIT;
  const ft = s.flowTable;
  const f = ft.alloc();
  if (f === NO_FLOW) return -C.D_FLOW_TABLE_FULL;
  if (host === NO_HOST) {
    host = ht.findOrAdd(inAddr);
    if (host === NO_HOST) {
      ft.free(f);
      return -C.D_HOST_TABLE_FULL;
    }
  }
  ht.flows[host]++;
  // The flow's rewrite in both directions (rewrite.ts): its inside and outside endpoints.
  const u = ft.u32;
  const base = f * FLOW_WORDS;
  u[base + F_IN_ADDR] = inAddr;
  u[base + F_OUT_ADDR] = outAddr;
  u[base + F_REM_ADDR] = remAddr;
  u[base + F_PORTS] = ports >>> 0;
  u[base + F_META] = ((remPort << 16) | (proto << 8) | origin) >>> 0;
  u[base + F_LAST_SEEN] = s.nowSec;
  ft.link(f);
  s.wheel.schedule(f, s.nowSec + s.timeoutOf(f));
  s.counters[C.C_FLOWS_CREATED]++;
  return f;
}

/** A mapping with neither flows nor pins goes at once; true when it went. */
export function dropEmptyMapping(s: EngineState, m: number): boolean {
  if (s.mappingTable.hasFlows(m) || s.pins.count[m] !== 0) return false;
  removeMapping(s, m);
  return true;
}

function removeMapping(s: EngineState, m: number): void {
  const mt = s.mappingTable;
  const mb = m * MAPPING_WORDS;
  const idx = s.outsideIndex(mt.u32[mb + M_OUT_ADDR]);
  if (idx >= 0) s.portsFor(mt.proto[m]).release(idx, mt.u32[mb + M_PORTS] & 0xffff);
  // A mapping in a port block is logged with its block (port-blocks.ts), not on its own.
  const inBlock = s.inBlock.length !== 0 && s.inBlock[m] !== 0;
  if (inBlock) {
    s.inBlock[m] = 0;
    s.blocksFor(mt.proto[m])?.released(idx, mt.u32[mb + M_PORTS] & 0xffff, s.nowMs);
  }
  s.closedMappings.mappingRemoved(m);
  s.portQuota.release(m, mt.proto[m]);
  // Deterministic mode logs no mapping: the configuration says who holds every port.
  if (s.events !== null && !inBlock && s.det === null) s.events.mapping(s, EV_MAPPING_DELETED, m, 0, 0);
  mt.remove(m);
  s.counters[C.C_MAPPINGS_EXPIRED]++;
}

/**
 * Finished mapping m gives its port to a new connection: its flows (all finished, only waiting
 * for stragglers) go, and with the last of them the mapping, its port and its host's share.
 */
export function retireMapping(s: EngineState, m: number): void {
  const mt = s.mappingTable;
  for (let f = mt.firstFlow(m); f !== NO_FLOW; ) {
    // Read first: the mapping's record is freed with its last flow.
    const next = mt.nextFlow(f);
    s.wheel.unschedule(f);
    expireFlow(s, f);
    f = next;
  }
}

export function expireFlow(s: EngineState, f: number): void {
  const ft = s.flowTable;
  const u = ft.u32;
  const base = f * FLOW_WORDS;
  const proto = ft.proto(f);
  const inAddr = u[base + F_IN_ADDR];
  // The flow's end before its mapping's, read while the record is whole.
  if (s.events !== null) s.events.flow(s, f, false);
  ft.unlink(f);
  const mt = s.mappingTable;
  const m = mt.lookupInside(proto, inAddr, u[base + F_PORTS] >>> 16);
  if (m !== NO_MAPPING) {
    mt.detachFlow(m, f);
    s.closedMappings.flowRemoved(m, proto === IPPROTO_TCP && s.tcp.finished(f));
    if (!mt.hasFlows(m) && s.pins.count[m] === 0) removeMapping(s, m);
  }
  if (s.halfOpen.remove(f)) s.hostTable.releaseHalfOpen(inAddr);
  else s.hostTable.releaseFlow(inAddr);
  if (u[base + F_ALG] !== 0) {
    u[base + F_ALG] = 0;
    s.alg?.flowEnded(f);
  }
  ft.free(f);
  s.counters[C.C_FLOWS_EXPIRED]++;
}

/** Evicts the oldest inbound half-open flow if it is at least `minAgeMs` old; false if none is. */
export function evictHalfOpen(s: EngineState, minAgeMs: number): boolean {
  const f = s.halfOpen.oldest();
  if (f < 0 || s.halfOpen.ageMs(f, s.nowMs) < minAgeMs) return false;
  s.wheel.unschedule(f);
  expireFlow(s, f);
  s.counters[C.C_HALF_OPEN_EVICTED]++;
  return true;
}

/**
 * What the TCP tracker's verdict on a segment means for the flow (see tcp-state.ts): a reset
 * outside the window is dropped; a completed handshake makes an inbound half-open connection
 * one of the inside host's flows; a new state moves the timer. DROP or FORWARD.
 */
export function tcpEvent(s: EngineState, f: number, t: number): number {
  if ((t & TCP_RST_OUT_OF_WINDOW) !== 0) return s.drop(C.D_TCP_RST_OUT_OF_WINDOW);
  if ((t & TCP_HANDSHAKE_DONE) !== 0) {
    s.counters[C.C_TCP_HANDSHAKES]++;
    if (s.halfOpen.remove(f)) s.hostTable.promoteHalfOpen(s.flowTable.u32[f * FLOW_WORDS + F_IN_ADDR]);
  }
  if ((t & (TCP_FINISHED | TCP_REOPENED)) !== 0) {
    // Once or twice per connection: whether its mapping's connections have all finished.
    const u = s.flowTable.u32;
    const base = f * FLOW_WORDS;
    const m = s.mappingTable.lookupInside(IPPROTO_TCP, u[base + F_IN_ADDR], u[base + F_PORTS] >>> 16);
    if (m !== NO_MAPPING) {
      if ((t & TCP_FINISHED) !== 0) s.closedMappings.flowFinished(m);
      else s.closedMappings.flowReopened(m);
    }
  }
  // The timeout changed: move the timer now so a closed connection frees its port on time.
  s.wheel.schedule(f, s.nowSec + s.timeoutOf(f));
  return FORWARD;
}

/** Removes a pin; the mapping goes too once it has neither pins nor flows. */
export function unpin(s: EngineState, id: number): boolean {
  const pin = s.pins.remove(id);
  if (!pin) return false;
  if (!dropEmptyMapping(s, pin.mapping)) s.closedMappings.review(pin.mapping);
  return true;
}
