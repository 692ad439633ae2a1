// ICMP through the engine: echo queries (the identifier stands for the port, RFC 5508 REQ-1),
// the errors about a translated flow's packets in both directions (RFC 5508 REQ-3), the errors
// the gateway's own stack sends about them, and the answers the engine gives itself (echo
// replies for our address, time exceeded as the hop).
import { readU32 } from "../packet/checksum.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED, icmpIsError } from "../packet/l4.ts";
import * as C from "./counters.ts";
import { F_ALG, F_IN_ADDR, F_OUT_ADDR, F_PORTS, FLOW_WORDS, NO_FLOW } from "./flow-table.ts";
import { quotedGenericInbound, quotedGenericOutbound } from "./generic-flow.ts";
import {
  buildEchoReply,
  buildIcmpError,
  type Embedded,
  parseEmbedded,
  rewriteEmbedded,
  rewriteEmbeddedSeq,
} from "./icmp.ts";
import { admitOutbound } from "./new-flow.ts";
import { setDestination, setSource, toInside, toOutside } from "./rewrite.ts";
import type { EngineState } from "./state.ts";
import { FORWARD, REPLY } from "./verdicts.ts";

/** An ICMP message from inside; its header at `l4`. */
export function outboundIcmp(
  s: EngineState,
  b: Uint8Array,
  off: number,
  l4: number,
  total: number,
  src: number,
  dst: number,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  const type = b[l4];
  if (type === ICMP_ECHO_REQUEST && s.outsideIndex(dst) >= 0) {
    // An inside host pings our public address: answer for it (no flow needed).
    s.outLen = buildEchoReply(s.replyBuf, b, off, total);
    s.counters[C.C_REPLIES]++;
    return REPLY;
  }
  if (type === ICMP_ECHO_REQUEST || type === ICMP_ECHO_REPLY) {
    const id = (b[l4 + 4] << 8) | b[l4 + 5];
    let f = s.flowTable.lookupInside(IPPROTO_ICMP, src, id, dst, 0);
    if (f === NO_FLOW) {
      // Only a request starts an ICMP query mapping; an unmatched reply answers nothing of ours.
      if (type !== ICMP_ECHO_REQUEST) return s.drop(C.D_ICMP_UNSUPPORTED);
      f = admitOutbound(s, b, off, l4 - off, total, IPPROTO_ICMP, src, id, dst, 0);
      if (f < 0) return ~f;
    }
    s.touch(f, total, true);
    toOutside(s.flowTable, f, b, off, l4, false);
    s.counters[C.C_TRANSLATED_OUT]++;
    return FORWARD;
  }
  if (icmpIsError(type)) {
    // An inside host reports a problem with a packet that came in through us: the quoted packet
    // went remote -> inside, so find the flow by its destination (inside) and source (remote).
    const e = s.embedded;
    if (!parseEmbedded(b, l4, off + total, e)) return s.drop(C.D_ICMP_ERROR_MALFORMED);
    const f =
      e.proto === IPPROTO_ICMP
        ? s.flowTable.lookupInside(IPPROTO_ICMP, e.dst, e.dport, e.src, 0)
        : e.proto === IPPROTO_TCP || e.proto === IPPROTO_UDP
          ? s.flowTable.lookupInside(e.proto, e.dst, e.dport, e.src, e.sport)
          : quotedGenericInbound(s, e);
    if (f === NO_FLOW) return s.drop(C.D_ICMP_ERROR_NO_FLOW);
    const u = s.flowTable.u32;
    const base = f * FLOW_WORDS;
    rewriteEmbedded(b, l4, e, 1, u[base + F_OUT_ADDR], u[base + F_PORTS] & 0xffff);
    unshiftQuotedSeq(s, b, l4, e, f, false);
    setSource(b, off, u[base + F_OUT_ADDR]);
    s.touch(f, total, true);
    s.counters[C.C_ICMP_ERRORS_TRANSLATED]++;
    s.counters[C.C_TRANSLATED_OUT]++;
    return FORWARD;
  }
  return s.drop(C.D_ICMP_UNSUPPORTED);
}

/** An ICMP message from outside to one of our addresses; its header at `l4`. */
export function inboundIcmp(
  s: EngineState,
  b: Uint8Array,
  off: number,
  l4: number,
  total: number,
  src: number,
  dst: number,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  const type = b[l4];
  if (type === ICMP_ECHO_REPLY) {
    const id = (b[l4 + 4] << 8) | b[l4 + 5];
    const f = s.flowTable.lookupOutside(IPPROTO_ICMP, dst, id, src, 0);
    if (f === NO_FLOW) {
      if (s.interfaceMode && !s.portsIcmp.inRange(id)) return s.passthrough();
      return s.drop(C.D_NO_MAPPING);
    }
    s.touch(f, total, false);
    toInside(s.flowTable, f, b, off, l4, false);
    s.counters[C.C_TRANSLATED_IN]++;
    return FORWARD;
  }
  if (type === ICMP_ECHO_REQUEST) {
    // A ping to the public address: the gateway's own stack answers in interface mode; in pool
    // mode nobody else holds the address, so the engine answers for it.
    if (s.interfaceMode) return s.passthrough();
    s.outLen = buildEchoReply(s.replyBuf, b, off, total);
    s.counters[C.C_REPLIES]++;
    return REPLY;
  }
  if (icmpIsError(type)) {
    // RFC 5508 REQ-3: the quoted packet went inside -> remote through us, so it carries our
    // outside address and port as its source.
    const e = s.embedded;
    if (!parseEmbedded(b, l4, off + total, e)) return s.drop(C.D_ICMP_ERROR_MALFORMED);
    const f = quotedOutboundFlow(s, e);
    if (f === NO_FLOW) return s.interfaceMode ? s.passthrough() : s.drop(C.D_ICMP_ERROR_NO_FLOW);
    return errorToInside(s, b, off, l4, total, f);
  }
  return s.interfaceMode ? s.passthrough() : s.drop(C.D_ICMP_UNSUPPORTED);
}

/** The flow of the packet quoted in an ICMP error that went inside -> remote through us. */
function quotedOutboundFlow(s: EngineState, e: Embedded): number {
  if (e.proto === IPPROTO_ICMP) return s.flowTable.lookupOutside(IPPROTO_ICMP, e.src, e.sport, e.dst, 0);
  if (e.proto === IPPROTO_TCP || e.proto === IPPROTO_UDP)
    return s.flowTable.lookupOutside(e.proto, e.src, e.sport, e.dst, e.dport);
  return quotedGenericOutbound(s, e);
}

/**
 * RFC 5508 REQ-3: translates the ICMP error at `off` about flow f's outbound packet (parsed
 * into s.embedded) back to the inside host: the quoted source and the error's destination
 * become the inside endpoint again. The rest (type, code, the next-hop MTU of a
 * fragmentation-needed) is the inside host's to read as it is.
 */
function errorToInside(
  s: EngineState,
  b: Uint8Array,
  off: number,
  l4: number,
  total: number,
  f: number,
): number {
  const e = s.embedded;
  const u = s.flowTable.u32;
  const base = f * FLOW_WORDS;
  rewriteEmbedded(b, l4, e, 0, u[base + F_IN_ADDR], u[base + F_PORTS] >>> 16);
  unshiftQuotedSeq(s, b, l4, e, f, true);
  setDestination(b, off, u[base + F_IN_ADDR]);
  s.touch(f, total, false);
  s.counters[C.C_ICMP_ERRORS_TRANSLATED]++;
  s.counters[C.C_TRANSLATED_IN]++;
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
export function gatewayError(
  s: EngineState,
  b: Uint8Array,
  off: number,
  l4: number,
  total: number,
  src: number,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  const e = s.embedded;
  if (!parseEmbedded(b, l4, off + total, e)) return s.drop(C.D_ICMP_ERROR_MALFORMED);
  const f = s.outsideIndex(e.src) >= 0 ? quotedOutboundFlow(s, e) : NO_FLOW;
  if (f === NO_FLOW) return s.interfaceMode ? s.passthrough() : s.drop(C.D_ICMP_ERROR_NO_FLOW);
  const from = s.gateway.facing(s.flowTable.u32[f * FLOW_WORDS + F_IN_ADDR]);
  if (from !== 0 && from !== src) setSource(b, off, from);
  s.counters[C.C_GATEWAY_ICMP_ERRORS]++;
  return errorToInside(s, b, off, l4, total, f);
}

/**
 * A TCP segment quoted in an ICMP error carries the sequence number its receiver saw. When an
 * ALG changed the length of that direction of the stream, the sender numbers it differently:
 * give it back the sender's number, or its TCP ignores the error as out of window (RFC 5927)
 * and path MTU discovery fails on the very connection the ALG edits. `segmentOutbound`: the
 * quoted segment went inside -> remote.
 */
function unshiftQuotedSeq(
  s: EngineState,
  b: Uint8Array,
  icmp: number,
  e: Embedded,
  f: number,
  segmentOutbound: boolean,
): void {
  if (e.proto !== IPPROTO_TCP || s.alg === null || s.flowTable.u32[f * FLOW_WORDS + F_ALG] === 0) return;
  const seqAt = e.ip + e.hl + 4;
  const seq = readU32(b, seqAt);
  const original = s.alg.quotedSeq(f, segmentOutbound, seq);
  if (original !== seq) rewriteEmbeddedSeq(b, icmp, e, original);
}

/** The engine is the hop and the TTL ran out: answer time-exceeded (RFC 792, RFC 1812). */
export function timeExceeded(s: EngineState, b: Uint8Array, off: number, total: number): number {
  // The packet itself ends here (counted as a drop with its reason); the error goes back.
  s.counters[C.D_TTL_EXCEEDED]++;
  s.counters[C.C_DROPPED]++;
  s.counters[C.C_REPLIES]++;
  s.outLen = buildIcmpError(s.replyBuf, b, off, total, s.hopAddress, ICMP_TIME_EXCEEDED, 0, 0);
  return REPLY;
}
