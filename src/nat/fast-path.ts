// The fast path: every packet enters here (processPacket), is classified (arrival side, inside or
// outside, fragment, TTL), and a TCP/UDP packet of an existing flow is looked up (through the
// batch's prefetched candidate), touched, tracked (TCP) and rewritten (rewrite.ts), allocating
// nothing. A miss goes to the slow path (new-flow.ts) and comes back with its new flow; ICMP and
// later fragments have paths of their own (icmp-path.ts, fragment-path.ts).
import { readI32, readU16 } from "../packet/checksum.ts";
import { IP_MF, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { TCP_ACK, TCP_SYN } from "../packet/l4.ts";
import { forwardTtl, TTL_DECREMENT } from "../packet/ttl.ts";
import { validateIpv4 } from "../packet/validate.ts";
import * as C from "./counters.ts";
import { advanceClock, tcpEvent } from "./flow-life.ts";
import { F_ALG, F_OUT_ADDR, F_PORTS, FLOW_WORDS, NO_FLOW } from "./flow-table.ts";
import { handOffDatagram } from "./fragment-handoff.ts";
import { firstFragment, laterFragment, refuseDatagram } from "./fragment-path.ts";
import { genericInbound, genericOutbound } from "./generic-flow.ts";
import { gatewayError, inboundIcmp, outboundIcmp, timeExceeded } from "./icmp-path.ts";
import { admitInbound, admitOutbound } from "./new-flow.ts";
import { toInside, toOutside } from "./rewrite.ts";
import type { EngineState } from "./state.ts";
import { TCP_WORDS } from "./tcp-state.ts";
import { DROP, FORWARD, HAND_OVER, SIDE_BY_ADDRESS, SIDE_HAIRPIN, SIDE_INSIDE } from "./verdicts.ts";

/** Slots of a probe run the prefetch follows looking for a key's own slot. */
const PREFETCH_PROBES = 8;

/** NatEngine.process (see there). */
export function processPacket(
  s: EngineState,
  buf: Uint8Array,
  off: number,
  len: number,
  l4Partial: boolean,
  side: number,
): number {
  const c = s.counters;
  c[C.C_PACKETS]++;
  const nowMs = s.nowMs;
  const sec = Math.floor(nowMs / 1000);
  if (sec !== s.nowSec || !s.started || (s.timersBehind && nowMs >= s.catchUpAtMs)) advanceClock(s, sec);
  s.candidate = NO_FLOW;
  if (buf === s.prefetchBuf && s.prefetchNext < s.prefetchCount) {
    const k = s.prefetchNext;
    if (s.prefetchOffs[k] === off) {
      s.candidate = s.prefetchFlows[k];
      s.prefetchNext = k + 1;
    }
  }
  const err = validateIpv4(buf, off, len);
  if (err !== 0) return s.drop(C.DROP_BASE + err);
  const total = (buf[off + 2] << 8) | buf[off + 3];
  s.outLen = total;
  const hl = (buf[off] & 0x0f) << 2;
  const proto = buf[off + 9];
  // Signed (readI32): an address above 2^31 as an unsigned number is no small integer and would
  // be boxed (a heap allocation) for every call not inlined. The address tests take either; the
  // rare paths below make them unsigned themselves (even an unsigned copy made here would be
  // boxed up front: the JIT tags it where it is made).
  const src = readI32(buf, off + 12);
  const dst = readI32(buf, off + 16);
  const fragField = (buf[off + 6] << 8) | buf[off + 7];
  // The gateway's own error about a packet masq translated: neither from the LAN nor forged,
  // whatever network its source lies on (see gateway-addresses.ts). ICMP only, so the
  // common case pays one comparison.
  const fromGateway =
    proto === IPPROTO_ICMP &&
    side !== SIDE_INSIDE &&
    s.gateway.sentError(buf, off, hl, src) &&
    s.outsideIndex(dst) >= 0;
  if (side !== SIDE_BY_ADDRESS && !fromGateway) {
    // Before anything else (fragments included): a forged packet must not match the state of
    // a real one.
    const fromInside = s.isInside(src);
    if (side === SIDE_INSIDE) {
      if (!fromInside) return s.drop(C.D_SPOOFED_SOURCE);
    } else if (fromInside) return s.drop(C.D_INSIDE_SOURCE_FROM_OUTSIDE);
    else if (s.isInside(dst) && s.outsideIndex(dst) < 0) return s.drop(C.D_INSIDE_ADDRESS_FROM_OUTSIDE);
  }
  if ((fragField & 0x1fff) !== 0) return laterFragment(s, buf, off, total, proto, src, dst);
  if (
    (fragField & IP_MF) !== 0 &&
    s.owners !== null &&
    !fromGateway &&
    s.outsideIndex(dst) >= 0 &&
    !s.isInside(src)
  ) {
    const owner = s.owners.ownerOf(buf, off, hl, total, proto);
    if (owner >= 0) return handOffDatagram(s, buf, off, total, proto, src, dst, owner);
  }

  if (s.ttlMode === TTL_DECREMENT && buf[off + 8] <= 1 && (s.isInside(src) || s.outsideIndex(dst) >= 0)) {
    // The engine is the hop: answer before translating, so the error goes to the real sender.
    return timeExceeded(s, buf, off, total);
  }
  let verdict: number;
  if (fromGateway) {
    verdict = gatewayError(s, buf, off, off + hl, total, src);
  } else if (side === SIDE_HAIRPIN) {
    verdict = hairpin(s, buf, off, hl, total, proto, l4Partial);
  } else if (s.isInside(src)) {
    if (s.isInside(dst) && s.outsideIndex(dst) < 0) verdict = s.passthrough();
    else if (s.addressless) verdict = s.drop(C.D_NO_PUBLIC_ADDRESS);
    else verdict = outbound(s, buf, off, hl, total, proto, l4Partial);
  } else if (s.outsideIndex(dst) >= 0) {
    verdict = inbound(s, buf, off, hl, total, proto, l4Partial, false);
  } else if (s.interfaceMode) {
    verdict = s.passthrough();
  } else {
    verdict = s.drop(C.D_NOT_OURS);
  }

  if (verdict === FORWARD) {
    if (!forwardTtl(buf, off, s.ttlMode)) return s.drop(C.D_TTL_EXCEEDED);
    if ((fragField & IP_MF) !== 0) firstFragment(s, buf, off, proto, src, dst);
  } else if (verdict === DROP && (fragField & IP_MF) !== 0) {
    refuseDatagram(s, src, dst, proto, readU16(buf, off + 4));
  }
  return verdict;
}

/** NatEngine.prefetch (see there). */
export function prefetchBatch(s: EngineState, buf: Uint8Array, meta: Uint32Array, count: number): void {
  const ft = s.flowTable;
  const slots = ft.index.slots;
  const mask = ft.index.mask;
  const hs = s.prefetchHashes;
  const sides = s.prefetchSides;
  const n = Math.min(count, hs.length);
  s.prefetchBuf = buf;
  s.prefetchCount = n;
  s.prefetchNext = 0;
  for (let k = 0; k < n; k++) {
    const off = meta[2 * k];
    s.prefetchOffs[k] = off;
    hs[k] = 0;
    if (meta[2 * k + 1] < 28 || buf[off] !== 0x45) continue;
    const proto = buf[off + 9];
    if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) continue;
    // Signed, as in processPacket: the hashes and the address test take either.
    const src = (buf[off + 12] << 24) | (buf[off + 13] << 16) | (buf[off + 14] << 8) | buf[off + 15];
    const dst = (buf[off + 16] << 24) | (buf[off + 17] << 16) | (buf[off + 18] << 8) | buf[off + 19];
    const sport = (buf[off + 20] << 8) | buf[off + 21];
    const dport = (buf[off + 22] << 8) | buf[off + 23];
    // Inside keys have odd references, outside keys even ones (FlowTable.link); bit 1: TCP.
    const inside = s.isInside(src);
    sides[k] = (inside ? 1 : 0) | (proto === IPPROTO_TCP ? 2 : 0);
    hs[k] = inside
      ? ft.insideHash(proto, src, sport, dst, dport)
      : ft.outsideHash(proto, dst, dport, src, sport);
  }
  // Tight loops, so many iterations (and their misses) are in flight at once.
  let acc = 0;
  for (let k = 0; k < n; k++) acc += slots[((hs[k] & mask) << 1) + 1];
  const u = ft.u32;
  const mt = s.mappingTable;
  const mslots = mt.index.slots;
  const mmask = mt.index.mask;
  // The home slot often holds another key of the probe run: follow the run (in the lines just
  // loaded) to this key's own slot, so the record touched is the one the lookup will read. This
  // pass only finds the records (cache hits, branchy); the next one loads them all at once.
  const found = s.prefetchFlows;
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
      const src = (buf[off + 12] << 24) | (buf[off + 13] << 16) | (buf[off + 14] << 8) | buf[off + 15];
      const hm = mt.insideHash(buf[off + 9], src, (buf[off + 20] << 8) | buf[off + 21]);
      acc += mslots[((hm & mmask) << 1) + 1];
    }
  }
  // A TCP flow's sequence record is a line of its own (tcp-state.ts): load it with the record.
  const tw = s.tcp.words;
  for (let k = 0; k < n; k++) {
    const f = found[k];
    if (f === NO_FLOW) continue;
    acc += u[f * FLOW_WORDS];
    if ((sides[k] & 2) !== 0) acc += tw[f * TCP_WORDS];
  }
  s.prefetchSink = acc;
}

/** A packet from an inside host to the outside (or hairpinned to one of our addresses). */
function outbound(
  s: EngineState,
  b: Uint8Array,
  off: number,
  hl: number,
  total: number,
  proto: number,
  l4Partial: boolean,
): number {
  // The addresses are read here, not passed: most are above 2^31, no small integer, and each
  // passed to a function not inlined would be boxed (a heap allocation per packet). Signed: the
  // lookups and address tests compare bits, and the rare paths make them unsigned themselves.
  const src = readI32(b, off + 12);
  const dst = readI32(b, off + 16);
  const l4 = off + hl;
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
    const sport = (b[l4] << 8) | b[l4 + 1];
    const dport = (b[l4 + 2] << 8) | b[l4 + 3];
    const ft = s.flowTable;
    let f = s.candidate;
    s.candidate = NO_FLOW;
    if (f === NO_FLOW || !ft.hasInsideView(f, proto, src, sport, dst, dport))
      f = ft.lookupInside(proto, src, sport, dst, dport);
    if (f === NO_FLOW) {
      f = admitOutbound(s, b, off, hl, total, proto, src, sport, dst, dport);
      if (f < 0) return ~f;
    }
    const base = f * FLOW_WORDS;
    const u = ft.u32;
    if (proto === IPPROTO_TCP) {
      const t = s.tcp.segment(f, b, l4, total - hl, true, u[base + F_ALG] !== 0 ? s.alg : null);
      if (t !== 0 && tcpEvent(s, f, t) === DROP) return DROP;
      // RFC 5382 REQ-4: the inside host's own SYN for a connection an unsolicited SYN asked for.
      if (s.unsolicitedSyns !== null && (b[l4 + 13] & (TCP_SYN | TCP_ACK)) === TCP_SYN)
        s.unsolicitedSyns.cancel(dst, dport, u[base + F_OUT_ADDR] | 0, u[base + F_PORTS] & 0xffff);
    }
    s.touch(f, total, true);
    toOutside(ft, f, b, off, l4, l4Partial);
    s.counters[C.C_TRANSLATED_OUT]++;
    if (s.outsideIndex(dst) >= 0) return hairpin(s, b, off, hl, total, proto, l4Partial);
    if (proto === IPPROTO_TCP) s.mss.apply(b, l4, true, l4Partial);
    if (u[base + F_ALG] !== 0 && s.alg !== null)
      return s.alg.packet(f, u[base + F_ALG], b, off, hl, total, true, l4Partial);
    return FORWARD;
  }
  if (proto === IPPROTO_ICMP) return outboundIcmp(s, b, off, l4, total, src, dst);
  return genericOutbound(s, b, off, hl, total, proto, src, dst);
}

/** A packet from outside to one of our addresses; `hairpin`: it came from inside (hairpin()). */
function inbound(
  s: EngineState,
  b: Uint8Array,
  off: number,
  hl: number,
  total: number,
  proto: number,
  l4Partial: boolean,
  hairpin: boolean,
): number {
  const src = readI32(b, off + 12); // read, not passed (see outbound)
  const dst = readI32(b, off + 16);
  const l4 = off + hl;
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
    const sport = (b[l4] << 8) | b[l4 + 1];
    const dport = (b[l4 + 2] << 8) | b[l4 + 3];
    const ft = s.flowTable;
    let f = s.candidate;
    s.candidate = NO_FLOW;
    if (f === NO_FLOW || !ft.hasOutsideView(f, proto, dst, dport, src, sport))
      f = ft.lookupOutside(proto, dst, dport, src, sport);
    if (f === NO_FLOW) {
      f = admitInbound(s, b, off, hl, total, proto, src, sport, dst, dport, hairpin);
      if (f < 0) return ~f;
    }
    const u = ft.u32;
    const base = f * FLOW_WORDS;
    if (proto === IPPROTO_TCP) {
      const alg = u[base + F_ALG] !== 0 && !hairpin ? s.alg : null;
      const t = s.tcp.segment(f, b, l4, total - hl, false, alg);
      if (t !== 0 && tcpEvent(s, f, t) === DROP) return DROP;
    }
    s.touch(f, total, false);
    toInside(ft, f, b, off, l4, l4Partial);
    s.counters[C.C_TRANSLATED_IN]++;
    // Hairpinned SYNs too: they leave by the inside interface.
    if (proto === IPPROTO_TCP) s.mss.apply(b, l4, false, l4Partial);
    if (u[base + F_ALG] !== 0 && s.alg !== null && !hairpin)
      return s.alg.packet(f, u[base + F_ALG], b, off, hl, total, false, l4Partial);
    return FORWARD;
  }
  if (proto === IPPROTO_ICMP) return inboundIcmp(s, b, off, l4, total, src, dst);
  return genericInbound(s, b, off, hl, total, proto, src, dst);
}

/**
 * Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): an inside host sent to one of our outside
 * addresses. The source is already translated; now translate the destination as if the packet
 * had come from outside, so each inside host sees the other's outside address and port.
 */
function hairpin(
  s: EngineState,
  b: Uint8Array,
  off: number,
  hl: number,
  total: number,
  proto: number,
  l4Partial: boolean,
): number {
  // Several workers: the mapping it goes to may be another worker's; the inbound half is done
  // there (SIDE_HAIRPIN). A fragment is not handed over: its later fragments could not follow.
  if (s.owners !== null && (readU16(b, off + 6) & 0x3fff) === 0) {
    const owner = s.owners.ownerOf(b, off, hl, total, proto);
    if (owner >= 0) {
      s.handoffWorker = owner;
      s.counters[C.C_HAIRPIN_HANDED_OFF]++;
      return HAND_OVER;
    }
  }
  const v = inbound(s, b, off, hl, total, proto, l4Partial, true);
  if (v === FORWARD) s.counters[C.C_HAIRPINNED]++;
  return v;
}
