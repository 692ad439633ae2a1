// The control plane's pins (forwards, NAT-PMP/PCP mappings, ALG expectations; pins.ts): making
// one, with its mapping when the inside endpoint has none, and listing them. Removing one is
// flow-life.ts `unpin` (a pin's end can end its mapping).
import type { ErrorCode } from "../errors/codes.ts";
import { formatIpv4 } from "../packet/addr.ts";
import { tcpOrUdp } from "../packet/ipv4.ts";
import * as C from "./counters.ts";
import { dropEmptyMapping } from "./flow-life.ts";
import { NO_HOST } from "./host-table.ts";
import { M_IN_ADDR, M_OUT_ADDR, M_PORTS, MAPPING_WORDS, NO_MAPPING } from "./mapping-table.ts";
import { EV_MAPPING_CREATED } from "./nat-events.ts";
import type { Pin } from "./pins.ts";
import { NO_PORT } from "./port-allocator.ts";
import type { EngineState } from "./state.ts";
import { type PinView, protoName } from "./view.ts";

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

export type PinResult =
  | { id: number; outAddr: number; outPort: number }
  /** Refused: what happened, and its stable code (src/errors/codes.ts). */
  | { error: string; code: ErrorCode };

/** NatEngine.pinMapping (see there). */
export function pinMapping(s: EngineState, req: PinRequest): PinResult {
  const proto = tcpOrUdp(req.proto);
  if (!s.isInside(req.inAddr))
    return { error: `${formatIpv4(req.inAddr)} is not on an inside network`, code: "MASQ_ERR_NOT_INSIDE" };
  const mt = s.mappingTable;
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
    if (mt.count >= mt.capacity) return { error: "mapping table full", code: "MASQ_ERR_MAPPING_TABLE_FULL" };
    // A mapping the host asked for itself (port mapping protocols, ALG expectations) counts
    // against its share of the ports like any other; the administrator's forwards do not.
    const counted = req.hostQuota !== false;
    const ht = s.hostTable;
    const host = counted ? ht.find(req.inAddr) : NO_HOST;
    if (counted && !s.portQuota.allows(host, proto))
      return {
        error: `${formatIpv4(req.inAddr)} holds its share of ${req.proto} ports (limits.max_ports_per_host)`,
        code: "MASQ_ERR_HOST_PORT_QUOTA",
      };
    if (counted && host === NO_HOST && ht.count >= ht.capacity)
      return { error: "host table full", code: "MASQ_ERR_HOST_TABLE_FULL" };
    const addrIdx =
      req.outAddr === undefined ? s.pairedAddressIndex(req.inAddr) : s.outsideIndex(req.outAddr);
    if (addrIdx < 0)
      return {
        error: `${formatIpv4(req.outAddr ?? 0)} is not a public address of masq`,
        code: "MASQ_ERR_NOT_PUBLIC_ADDRESS",
      };
    const outAddr = s.outside[addrIdx];
    const ports = s.portsFor(proto);
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
      outPort = ports.allocate(addrIdx, req.inPort, s.config.portParity);
      if (outPort === NO_PORT)
        return {
          error: `no free ${req.proto} port on ${formatIpv4(outAddr)}`,
          code: "MASQ_ERR_PORTS_EXHAUSTED",
        };
    }
    m = mt.add(proto, req.inAddr, req.inPort, outAddr, outPort);
    if (counted) s.portQuota.charge(m, host !== NO_HOST ? host : ht.findOrAdd(req.inAddr), proto);
    s.counters[C.C_MAPPINGS_CREATED]++;
    if (s.events !== null) s.events.mapping(s, EV_MAPPING_CREATED, m, req.remoteAddr ?? 0, 0);
  }
  const pin = s.pins.add({
    mapping: m,
    remoteAddr: req.remoteAddr ?? 0,
    expiresAtSec: req.expiresAtSec ?? 0,
    oneShot: req.oneShot ?? false,
    origin: req.origin,
    note: req.note ?? "",
  });
  if (!pin) {
    dropEmptyMapping(s, m);
    return { error: "too many pins on one mapping", code: "MASQ_ERR_TOO_MANY_PINS" };
  }
  // A pinned mapping is in use, whatever its connections.
  s.closedMappings.review(m);
  s.counters[C.C_PINS_CREATED]++;
  const mb = m * MAPPING_WORDS;
  return { id: pin.id, outAddr: mt.u32[mb + M_OUT_ADDR], outPort: mt.u32[mb + M_PORTS] & 0xffff };
}

/** Pins for listing (not for the packet path). */
export function pinList(s: EngineState): PinView[] {
  const mt = s.mappingTable;
  return s.pins.all().map((p: Pin) => {
    const mb = p.mapping * MAPPING_WORDS;
    return {
      id: p.id,
      protocol: protoName(mt.proto[p.mapping]),
      inside: { addr: formatIpv4(mt.u32[mb + M_IN_ADDR]), port: mt.u32[mb + M_PORTS] >>> 16 },
      outside: { addr: formatIpv4(mt.u32[mb + M_OUT_ADDR]), port: mt.u32[mb + M_PORTS] & 0xffff },
      remote: p.remoteAddr === 0 ? "*" : formatIpv4(p.remoteAddr),
      origin: p.origin,
      note: p.note,
      expiresInSec: p.expiresAtSec === 0 ? null : Math.max(0, p.expiresAtSec - s.nowSec),
      flows: mt.flowCount(p.mapping),
    };
  });
}
