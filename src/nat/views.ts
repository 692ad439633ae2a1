// What the engine shows of itself (the types are in view.ts): flows one at a time or all at
// once, its statistics and its memory. For the control plane: allocates freely, not per packet.
import { formatIpv4 } from "../packet/addr.ts";
import * as C from "./counters.ts";
import {
  D_BYTES_IN,
  D_BYTES_OUT,
  D_PKTS_IN,
  D_PKTS_OUT,
  F_IN_ADDR,
  F_LAST_SEEN,
  F_META,
  F_OUT_ADDR,
  F_PORTS,
  F_REM_ADDR,
  FLOW_BYTES,
  FLOW_WORDS,
  ORIGIN_INBOUND,
  STATE_MASK,
  STATE_NAMES,
} from "./flow-table.ts";
import { NO_MAPPING } from "./mapping-table.ts";
import type { EngineState } from "./state.ts";
import { type EngineStats, type FlowFields, type FlowView, flowProtocolName } from "./view.ts";

/** Fills `out` with live flow f's fields (no allocation); returns it. */
export function readFlow(s: EngineState, f: number, out: FlowFields): FlowFields {
  const ft = s.flowTable;
  const u = ft.u32;
  const d = ft.f64;
  const base = f * FLOW_WORDS;
  const db = f * (FLOW_BYTES / 8);
  const proto = ft.proto(f);
  const sb = ft.stateByte(f);
  const lastSeen = u[base + F_LAST_SEEN];
  out.protocol = flowProtocolName(proto);
  out.inAddr = u[base + F_IN_ADDR];
  out.inPort = u[base + F_PORTS] >>> 16;
  out.outAddr = u[base + F_OUT_ADDR];
  out.outPort = u[base + F_PORTS] & 0xffff;
  out.remAddr = u[base + F_REM_ADDR];
  out.remPort = u[base + F_META] >>> 16;
  out.state = STATE_NAMES[sb & STATE_MASK];
  out.origin =
    s.outsideIndex(out.remAddr) >= 0
      ? "hairpin"
      : (sb & ORIGIN_INBOUND) !== 0
        ? inboundOrigin(s, proto, out.inAddr, out.inPort)
        : "outbound";
  out.idleSec = Math.max(0, s.nowSec - lastSeen);
  out.expiresInSec = Math.max(0, lastSeen + s.timeoutOf(f) - s.nowSec);
  out.packetsOut = d[db + D_PKTS_OUT];
  out.packetsIn = d[db + D_PKTS_IN];
  out.bytesOut = d[db + D_BYTES_OUT];
  out.bytesIn = d[db + D_BYTES_IN];
  return out;
}

/** What a listing shows of a flow read by readFlow, as an object. */
export function flowView(x: FlowFields): FlowView {
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

/** What admitted an inbound flow: the origin of its mapping's pin ("forward", "pcp" …) or filtering. */
function inboundOrigin(s: EngineState, proto: number, inAddr: number, inPort: number): string {
  const m = s.mappingTable.lookupInside(proto, inAddr, inPort);
  if (m === NO_MAPPING || s.pins.count[m] === 0) return "inbound";
  return s.pins.of(m)[0].origin;
}

/** Total bytes preallocated for flows and everything sized by them. */
export function memoryBytes(s: EngineState): number {
  return (
    s.flowTable.byteLength +
    s.tcp.byteLength +
    s.halfOpen.byteLength +
    s.mappingTable.byteLength +
    s.closedMappings.byteLength +
    s.hostTable.byteLength +
    s.wheel.byteLength +
    s.fragments.byteLength +
    s.portsTcp.byteLength +
    s.portsUdp.byteLength +
    s.portsIcmp.byteLength
  );
}

export function engineStats(s: EngineState): EngineStats {
  return {
    counters: { ...C.namedCounters(s.counters), ...s.alg?.namedCounters() },
    flows: s.flowTable.count,
    halfOpen: s.halfOpen.count,
    mappings: s.mappingTable.count,
    hosts: s.hostTable.count,
    heldFragments: s.fragments.store.count,
    heldFragmentBytes: s.fragments.store.heldBytes,
    capacity: {
      flows: s.flowTable.capacity,
      mappings: s.mappingTable.capacity,
      hosts: s.hostTable.capacity,
    },
    bytesPerFlow: Math.round(memoryBytes(s) / s.flowTable.capacity),
  };
}
