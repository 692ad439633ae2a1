// Ports of this shard's slice that another shard holds (several workers, issue 13): a forward or a
// pin names its outside port, which can lie in any worker's slice, but lives on the worker of its
// inside host, and the steering's override table then sends that port to that worker. The table
// knows the port, not the address, so the slice's own worker must give the port out on no public
// address while the other worker holds it: it keeps it taken in its allocator, with no mapping.
// The main thread's bookkeeping (src/datapath/cross-slice-pins.ts) asks for these and returns them.
import { tcpOrUdp } from "../packet/ipv4.ts";
import { NO_MAPPING } from "./mapping-table.ts";
import type { EngineState } from "./state.ts";

/**
 * Takes `port` of the range on every public address for another shard's mapping: false, taking
 * nothing, when a mapping of this shard uses it on any of them.
 */
export function reserveForeignPort(s: EngineState, proto: "tcp" | "udp", port: number): boolean {
  const ports = s.portsFor(tcpOrUdp(proto));
  if (!ports.inRange(port)) return !holdsOutsidePort(s, proto, port);
  for (let a = 0; a < s.outside.length; a++) {
    if (ports.take(a, port)) continue;
    for (let b = 0; b < a; b++) ports.release(b, port);
    return false;
  }
  return true;
}

/** Gives a port reserved by reserveForeignPort back to this shard's allocator. */
export function releaseForeignPort(s: EngineState, proto: "tcp" | "udp", port: number): void {
  const p = tcpOrUdp(proto);
  const ports = s.portsFor(p);
  for (let a = 0; a < s.outside.length; a++)
    if (s.mappingTable.lookupOutside(p, s.outside[a], port) === NO_MAPPING) ports.release(a, port);
}

/** Whether a mapping of this shard holds outside `port` on any public address (its flows may outlive its pins). */
export function holdsOutsidePort(s: EngineState, proto: "tcp" | "udp", port: number): boolean {
  const p = tcpOrUdp(proto);
  for (let a = 0; a < s.outside.length; a++)
    if (s.mappingTable.lookupOutside(p, s.outside[a], port) !== NO_MAPPING) return true;
  return false;
}
