// Address-only NAT for the IP protocols other than TCP, UDP and ICMP (GRE, ESP, SCTP, IPIP …), as
// netfilter's generic protocol handler does it: they have no ports masq could multiplex, so a flow
// is (inside host, remote, protocol) on the host's paired public address, the source address is
// rewritten on the way out and the destination on the way in, and a second inside host that
// wants the same remote with the same protocol is refused (protocol_remote_taken): the replies
// could not be told apart. Unsolicited inbound packets open nothing.
//
// GRE version 1 (PPTP's enhanced GRE, RFC 2637 §4.1) is the one protocol with something like a
// port: each packet carries the receiver's call id as its key. The PPTP ALG (src/alg/pptp.ts)
// makes a keyed flow per call, with the inside host's call id translated to one unique per public
// address and server (pptpCall), so several inside hosts can call the same server; a GRE
// packet that matches no keyed flow is translated by address like any other.
//
// Checksums: the IPv4 header's is updated incrementally (RFC 1624). Of the L4 checksums only
// those that cover the IPv4 pseudo-header change with an address: TCP and UDP (not here), DCCP
// (RFC 4340 §9.1) and UDP-Lite (RFC 3828 §3.1), whose checksum field sits at offset 6 like UDP's.
// SCTP's CRC32c covers only the SCTP packet (RFC 9260 §6.8), GRE's optional checksum only the
// GRE packet (RFC 2784 §2.5), ESP has none and its ICV covers the ESP packet only (RFC 4303
// §2.8), IPIP's inner header is not ours to change. AH's ICV covers the addresses (RFC 4302
// §3.3.3.1): a translated AH packet can only fail its check, so it is dropped as unsupported
// (RFC 3715 §2.1), and so is protocol 0.
import { adjustChecksum, diff32, readU16, readU32, writeU16 } from "../packet/checksum.ts";
import { IPPROTO_AH, IPPROTO_DCCP, IPPROTO_GRE, IPPROTO_UDPLITE } from "../packet/ipv4.ts";
import { DIR_OUTBOUND } from "../policy/rules.ts";
import * as C from "./counters.ts";
import { addFlowRecord, expireFlow } from "./flow-life.ts";
import {
  F_IN_ADDR,
  F_META,
  F_OUT_ADDR,
  F_PORTS,
  F_REM_ADDR,
  FLOW_WORDS,
  type FlowTable,
  NO_FLOW,
  ORIGIN_OUTBOUND,
} from "./flow-table.ts";
import type { Embedded } from "./icmp.ts";
import { outboundLimits, screen, spendHostToken } from "./new-flow.ts";
import { PPTP_CALL_IDS, sliceOfClass, WHOLE_RANGE } from "./port-slices.ts";
import type { EngineState } from "./state.ts";
import { FORWARD, PROCEED } from "./verdicts.ts";

/** A packet from an inside host (first fragment or whole) of a protocol other than TCP/UDP/ICMP. */
export function genericOutbound(
  s: EngineState,
  b: Uint8Array,
  off: number,
  hl: number,
  total: number,
  proto: number,
  src: number,
  dst: number,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  if (proto === 0 || proto === IPPROTO_AH) return s.drop(C.D_UNSUPPORTED_PROTOCOL);
  // To one of our own addresses: nothing to translate it to (no ports to hairpin by). In
  // interface mode the address is the gateway's own, whose stack gets it.
  if (s.outsideIndex(dst) >= 0) return s.interfaceMode ? s.passthrough() : s.drop(C.D_NO_MAPPING);
  const l4 = off + hl;
  const end = off + total;
  const ft = s.flowTable;
  let f = NO_FLOW;
  const keyAt = proto === IPPROTO_GRE ? pptpKeyAt(b, l4, end) : -1;
  if (keyAt >= 0) f = insideFlow(ft, proto, src, dst, readU16(b, keyAt), true);
  if (f === NO_FLOW) f = insideFlow(ft, proto, src, dst, 0, false);
  if (f === NO_FLOW) {
    f = admitGeneric(s, b, off, total, proto, src, dst);
    if (f < 0) return ~f;
  }
  s.touch(f, total, true);
  setAddress(b, off, l4, end, proto, off + 12, ft.u32[f * FLOW_WORDS + F_OUT_ADDR]);
  s.counters[C.C_TRANSLATED_OUT]++;
  return FORWARD;
}

/** A packet from outside to one of our addresses, of a protocol other than TCP/UDP/ICMP. */
export function genericInbound(
  s: EngineState,
  b: Uint8Array,
  off: number,
  hl: number,
  total: number,
  proto: number,
  src: number,
  dst: number,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  const l4 = off + hl;
  const end = off + total;
  const ft = s.flowTable;
  let f = NO_FLOW;
  const keyAt = proto === IPPROTO_GRE ? pptpKeyAt(b, l4, end) : -1;
  if (keyAt >= 0) f = outsideFlow(ft, proto, dst, src, readU16(b, keyAt));
  const keyed = f !== NO_FLOW;
  if (!keyed) f = outsideFlow(ft, proto, dst, src, 0);
  // Unsolicited: in interface mode the address is also the gateway's, whose own tunnels or
  // protocols it may be; pool mode's addresses are masq's alone.
  if (f === NO_FLOW) return s.interfaceMode ? s.passthrough() : s.drop(C.D_NO_MAPPING);
  s.touch(f, total, false);
  const base = f * FLOW_WORDS;
  const u = ft.u32;
  setAddress(b, off, l4, end, proto, off + 16, u[base + F_IN_ADDR]);
  // The inside host's own call id back; enhanced GRE has no checksum (RFC 2637 §4.1).
  if (keyed) writeU16(b, keyAt, u[base + F_PORTS] >>> 16);
  s.counters[C.C_TRANSLATED_IN]++;
  return FORWARD;
}

/**
 * A new address-only flow for inside host `src` to `dst`: the flow, or ~verdict. One per remote
 * and protocol on a public address (what netfilter's generic NAT can tell apart).
 */
function admitGeneric(
  s: EngineState,
  b: Uint8Array,
  off: number,
  total: number,
  proto: number,
  src: number,
  dst: number,
): number {
  if (s.firewall !== null) {
    const v = screen(s, b, off, total, DIR_OUTBOUND, proto, src, 0, dst, 0);
    if (v !== PROCEED) return ~v;
  }
  const outAddr = s.outside[s.pairedAddressIndex(src)];
  if (outsideFlow(s.flowTable, proto, outAddr, dst, 0) !== NO_FLOW) return ~s.drop(C.D_PROTOCOL_REMOTE_TAKEN);
  const refused = outboundLimits(s, src);
  if (refused !== 0) return ~s.drop(refused);
  const f = addFlowRecord(s, proto, src, outAddr, 0, dst, 0, ORIGIN_OUTBOUND);
  if (f < 0) return ~s.drop(-f);
  if (s.events !== null) s.events.flow(s, f, true);
  spendHostToken(s, src);
  return f;
}

/**
 * A keyed GRE flow for a new PPTP call (src/alg/pptp.ts) of inside host `inAddr` with call id
 * `inCallId` (the key of the GRE packets it receives) to server `remAddr`: the host's call id is
 * seen outside as one no other call on its public address to that server has (its own when free).
 * `remCallId`: the server's call id (the key of the packets it receives) when known (an incoming
 * call's reply), else 0 until the server answers (pptpCallAnswered). The flow, or -reason.
 */
export function pptpCall(
  s: EngineState,
  inAddr: number,
  inCallId: number,
  remAddr: number,
  remCallId: number,
): number {
  const ft = s.flowTable;
  const outAddr = s.outside[s.pairedAddressIndex(inAddr)];
  // The host's own id when it is in this worker's slice of the ids (all of them with one worker).
  const ids = sliceOfClass(PPTP_CALL_IDS, s.config.portSlice ?? WHOLE_RANGE);
  if (ids === undefined) return -C.D_PROTOCOL_REMOTE_TAKEN;
  let outCallId = inCallId >= ids.first && inCallId <= ids.last ? inCallId : ids.first;
  let tries = 0;
  while (outsideFlow(ft, IPPROTO_GRE, outAddr, remAddr, outCallId) !== NO_FLOW) {
    if (++tries === ids.last - ids.first + 1) return -C.D_PROTOCOL_REMOTE_TAKEN;
    outCallId = outCallId === ids.last ? ids.first : outCallId + 1;
  }
  if (remCallId !== 0) endStaleCall(s, inAddr, remAddr, remCallId);
  const refused = outboundLimits(s, inAddr);
  if (refused !== 0) return -refused;
  const ports = ((inCallId << 16) | outCallId) >>> 0;
  const f = addFlowRecord(s, IPPROTO_GRE, inAddr, outAddr, ports, remAddr, remCallId, ORIGIN_OUTBOUND);
  if (f >= 0 && s.events !== null) s.events.flow(s, f, true);
  return f;
}

/** The server answered call flow f with its call id: from now on the inside host's GRE packets carry it. */
export function pptpCallAnswered(s: EngineState, f: number, remCallId: number): void {
  const ft = s.flowTable;
  const u = ft.u32;
  const base = f * FLOW_WORDS;
  if (u[base + F_META] >>> 16 === remCallId) return;
  endStaleCall(s, u[base + F_IN_ADDR], u[base + F_REM_ADDR], remCallId);
  ft.unlink(f);
  u[base + F_META] = ((remCallId << 16) | (u[base + F_META] & 0xffff)) >>> 0;
  ft.link(f);
}

/** An older call of this host to this server with server call id `remCallId` is over: its flow goes. */
function endStaleCall(s: EngineState, inAddr: number, remAddr: number, remCallId: number): void {
  const old = insideFlow(s.flowTable, IPPROTO_GRE, inAddr, remAddr, remCallId, true);
  if (old === NO_FLOW) return;
  s.wheel.unschedule(old);
  expireFlow(s, old);
}

/**
 * The flow of an outbound packet of `proto` quoted in an ICMP error (RFC 5508 REQ-3), or NO_FLOW.
 * Address-only flows only: a PPTP call's packet carries the server's call id, and its flow's
 * outside view is keyed by ours, which the quote does not hold.
 */
export function quotedGenericOutbound(s: EngineState, e: Embedded): number {
  return outsideFlow(s.flowTable, e.proto, e.src, e.dst, 0);
}

/** The flow of an inbound packet quoted in an inside host's ICMP error, or NO_FLOW (keyless only). */
export function quotedGenericInbound(s: EngineState, e: Embedded): number {
  return insideFlow(s.flowTable, e.proto, e.dst, e.src, 0, false);
}

/**
 * Where the call id sits in an enhanced GRE header (RFC 2637 §4.1: version 1, key present, no
 * checksum or routing) at `l4`, or -1 for any other GRE packet (translated by address only).
 */
export function pptpKeyAt(b: Uint8Array, l4: number, end: number): number {
  if (l4 + 8 > end) return -1;
  if ((b[l4 + 1] & 0x07) !== 1) return -1;
  if ((b[l4] & 0xe0) !== 0x20) return -1; // C and R clear, K set
  return l4 + 6;
}

/** The flow whose inside view is (proto, inAddr, remAddr, the remote's key); keyed: a PPTP call's. */
function insideFlow(
  ft: FlowTable,
  proto: number,
  inAddr: number,
  remAddr: number,
  remKey: number,
  keyed: boolean,
): number {
  const h = ft.insideHash(proto, inAddr, 0, remAddr, remKey);
  const slots = ft.index.slots;
  const mask = ft.index.mask;
  const u = ft.u32;
  const meta = ((remKey << 16) | (proto << 8)) >>> 0;
  for (let i = h & mask; ; i = (i + 1) & mask) {
    const ref = slots[2 * i + 1];
    if (ref === 0) return NO_FLOW;
    if (slots[2 * i] !== h || (ref & 1) !== 1) continue;
    const f = (ref - 1) >>> 1;
    const b = f * FLOW_WORDS;
    if (
      u[b + F_IN_ADDR] === inAddr &&
      u[b + F_REM_ADDR] === remAddr &&
      (u[b + F_META] & 0xffffff00) >>> 0 === meta &&
      // A call's outside call id is never 0; an address-only flow's ports are.
      ((u[b + F_PORTS] & 0xffff) !== 0) === keyed
    )
      return f;
  }
}

/** The flow whose outside view is (proto, outAddr, remAddr, our key: 0 for address-only). */
function outsideFlow(ft: FlowTable, proto: number, outAddr: number, remAddr: number, key: number): number {
  const h = ft.outsideHash(proto, outAddr, key, remAddr, 0);
  const slots = ft.index.slots;
  const mask = ft.index.mask;
  const u = ft.u32;
  for (let i = h & mask; ; i = (i + 1) & mask) {
    const ref = slots[2 * i + 1];
    if (ref === 0) return NO_FLOW;
    if (slots[2 * i] !== h || (ref & 1) !== 0) continue;
    const f = (ref - 2) >>> 1;
    const b = f * FLOW_WORDS;
    if (
      u[b + F_OUT_ADDR] === outAddr &&
      u[b + F_REM_ADDR] === remAddr &&
      (u[b + F_PORTS] & 0xffff) === key &&
      ((u[b + F_META] >>> 8) & 0xff) === proto
    )
      return f;
  }
}

/**
 * Replaces the address at `addrAt` (source or destination) with `addr`: the IPv4 header checksum
 * and, for DCCP and UDP-Lite when their header is in this packet, the pseudo-header checksum.
 */
function setAddress(
  b: Uint8Array,
  off: number,
  l4: number,
  end: number,
  proto: number,
  addrAt: number,
  addr: number,
): void {
  const d = diff32(readU32(b, addrAt), addr);
  b[addrAt] = addr >>> 24;
  b[addrAt + 1] = (addr >>> 16) & 0xff;
  b[addrAt + 2] = (addr >>> 8) & 0xff;
  b[addrAt + 3] = addr & 0xff;
  writeU16(b, off + 10, adjustChecksum(readU16(b, off + 10), d));
  if ((proto === IPPROTO_DCCP || proto === IPPROTO_UDPLITE) && l4 + 8 <= end) {
    // Both always carry a checksum (zero is not "none" for them); UDP-Lite sends a computed 0
    // as all ones, as UDP does (RFC 3828 §3.1).
    const n = adjustChecksum(readU16(b, l4 + 6), d);
    writeU16(b, l4 + 6, n === 0 && proto === IPPROTO_UDPLITE ? 0xffff : n);
  }
}
