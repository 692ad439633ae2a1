// Interface mode's public address is the outside interface's, and that changes: at every PPP
// dial-up, at a DHCP renewal that brings another lease. The control plane follows the interface
// (src/control/wan-follow.ts) and tells the engine here. Never on the packet path.
//
// When the address goes, the engine keeps its state and drops what inside hosts send to the
// Internet (D_NO_PUBLIC_ADDRESS: nothing leaves untranslated), so a link that comes back with
// the same address (a flap, a PPP redial that gets the same lease) loses nothing. When another
// address comes, every flow on the old one is dead (its remotes answer an address that is no
// longer the gateway's): they go, and each inside host's TCP connection on it gets a reset, so
// the application reconnects at once instead of waiting out its timeouts (RFC 6886 §3.4).
// Pinned mappings (forwards, NAT-PMP/PCP mappings) move to the new address with their ports.
import { IPPROTO_TCP } from "../packet/ipv4.ts";
import { TCP_ACK, TCP_RST } from "../packet/l4.ts";
import { writeTcpReset } from "../policy/reject.ts";
import * as C from "./counters.ts";
import { expireFlow } from "./flow-life.ts";
import { F_IN_ADDR, F_OUT_ADDR, F_PORTS, F_REM_ADDR, FLOW_WORDS } from "./flow-table.ts";
import { M_OUT_ADDR, MAPPING_WORDS } from "./mapping-table.ts";
import type { EngineState } from "./state.ts";

export interface AddressChange {
  /** The address the engine translated to before (0: none yet). */
  old: number;
  /** Flows on the old address that were dropped. */
  flows: number;
  /** Pinned mappings (forwards, NAT-PMP/PCP) moved to the new address. */
  moved: number;
  /** TCP resets for the inside hosts (IPv4 packets, to be written to the inside TUN). */
  resets: Uint8Array[];
}

/** The outside interface lost its address (`true`) or has it back, the same one (`false`). */
export function setAddressless(s: EngineState, none: boolean): void {
  if (!s.interfaceMode) throw new Error("engine: only interface mode follows its interface's address");
  s.addressless = none;
}

/**
 * The public address is now `to` (interface mode). Flows on the old address go, with a reset
 * to the inside host of each TCP connection that has not finished; pinned mappings move to `to`
 * with their ports. The same address again only ends the addressless state.
 */
export function changePublicAddress(s: EngineState, to: number): AddressChange {
  if (!s.interfaceMode) throw new Error("engine: only interface mode follows its interface's address");
  to >>>= 0;
  const old = s.outside[0];
  const change: AddressChange = { old, flows: 0, moved: 0, resets: [] };
  s.addressless = false;
  if (to === old) return change;
  const ft = s.flowTable;
  const u = ft.u32;
  for (let f = 0; f < ft.capacity; f++) {
    if (!ft.isLive(f) || u[f * FLOW_WORDS + F_OUT_ADDR] !== old) continue;
    if (ft.proto(f) === IPPROTO_TCP && !s.tcp.finished(f)) {
      const rst = buildInsideReset(s, f);
      if (rst) change.resets.push(rst);
    }
    s.wheel.unschedule(f);
    expireFlow(s, f);
    change.flows++;
  }
  // What is left on the old address is pinned (a mapping goes with its last flow unless pinned).
  const mt = s.mappingTable;
  const pinned = new Set(s.pins.all().map((p) => p.mapping));
  for (const m of pinned)
    if (mt.u32[m * MAPPING_WORDS + M_OUT_ADDR] === old) {
      if (s.events !== null) s.events.moved(s, m, to);
      mt.moveOutside(m, to);
      change.moved++;
    }
  s.outside[0] = to;
  s.config.outside[0] = to;
  s.outsideIndexOf.clear();
  s.outsideIndexOf.set(to, 0);
  s.outsideMin = to;
  s.outsideMax = to;
  s.hopAddress = to;
  s.gateway.replace(old, to);
  s.counters[C.C_ADDRESS_CHANGES]++;
  s.counters[C.C_ADDRESS_FLOWS_DROPPED] += change.flows;
  s.counters[C.C_ADDRESS_RESETS] += change.resets.length;
  return change;
}

/**
 * A reset from the remote to the inside host of TCP flow f, at the number the host expects next
 * from the remote (it reached the host through masq, in order before this reset), so the host
 * takes it at once (RFC 5961 §3.2: exactly at RCV.NXT). Before the remote's SYN-ACK, the reset
 * acknowledges the host's SYN instead, as a SYN-SENT connection requires (RFC 9293 §3.10.7.3).
 * undefined when neither side's numbers are known.
 */
export function buildInsideReset(s: EngineState, f: number): Uint8Array | undefined {
  const { fromRemote, fromInside } = s.tcp.resetNumbers(f);
  if (fromRemote < 0 && fromInside < 0) return undefined;
  const u = s.flowTable.u32;
  const base = f * FLOW_WORDS;
  const out = new Uint8Array(40);
  writeTcpReset(
    out,
    {
      src: u[base + F_REM_ADDR],
      dst: u[base + F_IN_ADDR],
      sport: s.flowTable.remPort(f),
      dport: u[base + F_PORTS] >>> 16,
    },
    Math.max(0, fromRemote),
    Math.max(0, fromInside),
    fromInside < 0 ? TCP_RST : TCP_RST | TCP_ACK,
  );
  return out;
}
