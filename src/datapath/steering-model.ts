// Which worker (TUN queue) a packet belongs to, in TypeScript: the same decision as the eBPF
// program the TUN runs (steering-program.ts), for the control plane (a per-host operation goes to
// the host's worker) and for the unit tests, which check the two against each other.
//
// The rule makes a flow's both directions meet on one worker without any lookup shared between
// workers (VPP's NAT44 does the same):
// - from inside hosts (the inside TUN): a hash of the source address, so a host, with its
//   mappings, per-host limits and fragments, lives on one worker;
// - from outside (the outside TUN): the worker whose slice of the port range owns the destination
//   port (src/nat/port-slices.ts), as that worker's allocator gave the port out; ICMP echo by the
//   identifier's slice, an ICMP error by the quoted packet's source port (ours); PPTP's GRE by
//   its call id. A port named in the override table (a forward or a pin, whose port is chosen by
//   its owner, not by a slice) goes to the worker written there;
// - outside fragments (MF or an offset) by a hash of (source, destination, IP id): all fragments
//   of a datagram meet on one worker, which hands the datagram to its owner when that is another;
// - IPv6 (the IPv6 firewall's, RFC 6092): a hash of the inside host's address, the source from
//   inside and the destination from outside, so a host's IPv6 flows meet on its worker's filter;
// - anything else, or a packet too short to read: queue 0.
import type { PortRange } from "../nat/config.ts";
import { OVERRIDE_ENTRIES, overrideKey, PPTP_CALL_IDS, portOwner } from "../nat/port-slices.ts";

export { OVERRIDE_ENTRIES, overrideKey };

import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";

export const IPPROTO_GRE = 47;
/** Multiplier of the address hash (Knuth's golden ratio constant), the same on both sides. */
export const HASH_MUL = 0x9e3779b1;

export interface SteeringPlan {
  /** Workers (TUN queues), at least 2. */
  readonly queues: number;
  readonly ports: { readonly tcp: PortRange; readonly udp: PortRange; readonly icmp: PortRange };
}

/** The worker of inside host `addr` (a hash of the address). */
export function hostWorker(addr: number, queues: number): number {
  return (Math.imul(addr, HASH_MUL) >>> 16) % queues;
}

/** Reads `size` bytes (1, 2, 4) big-endian at `at`, or -1 beyond the packet (the program then answers 0). */
function read(b: Uint8Array, off: number, len: number, at: number, size: number): number {
  if (at < 0 || at + size > len) return -1;
  const p = off + at;
  if (size === 1) return b[p];
  if (size === 2) return (b[p] << 8) | b[p + 1];
  return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
}

/**
 * IPv6 (the IPv6 firewall's traffic): a hash of the inside host's address, its four words folded
 * into one, so both directions of a host's IPv6 flows meet on one worker's filter. `at` is the
 * address's offset (8: the source, from inside; 24: the destination, from outside).
 */
export function ipv6Queue(b: Uint8Array, off: number, len: number, at: number, queues: number): number {
  let fold = 0;
  for (let i = 0; i < 16; i += 4) {
    const w = read(b, off, len, at + i, 4);
    if (w < 0) return 0;
    fold ^= w;
  }
  return hostWorker(fold >>> 0, queues);
}

/** The queue of a packet read from the inside TUN. */
export function insideQueue(b: Uint8Array, off: number, len: number, queues: number): number {
  const version = read(b, off, len, 0, 1);
  if (version >>> 4 === 6) return ipv6Queue(b, off, len, 8, queues);
  const proto = read(b, off, len, 9, 1);
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP && proto !== IPPROTO_ICMP && proto !== IPPROTO_GRE)
    return 0;
  const src = read(b, off, len, 12, 4);
  return src < 0 ? 0 : hostWorker(src, queues);
}

/**
 * The queue of a packet read from the outside TUN; `overrides` is the override table (worker + 1
 * by overrideKey), absent: none.
 */
export function outsideQueue(
  b: Uint8Array,
  off: number,
  len: number,
  plan: SteeringPlan,
  overrides?: Uint32Array,
): number {
  const version = read(b, off, len, 0, 1);
  if (version >>> 4 === 6) return ipv6Queue(b, off, len, 24, plan.queues);
  const frag = read(b, off, len, 6, 2);
  if (frag < 0) return 0;
  if ((frag & 0x3fff) !== 0) {
    const src = read(b, off, len, 12, 4);
    const dst = read(b, off, len, 16, 4);
    const id = read(b, off, len, 4, 2);
    if (src < 0 || dst < 0) return 0;
    return hostWorker((src ^ dst ^ id) >>> 0, plan.queues);
  }
  const l4 = (read(b, off, len, 0, 1) & 0xf) << 2;
  const proto = read(b, off, len, 9, 1);
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP)
    return portQueue(read(b, off, len, l4 + 2, 2), proto, plan, overrides);
  if (proto === IPPROTO_GRE)
    return sliceQueue(read(b, off, len, l4 + 6, 2), PPTP_CALL_IDS, false, plan.queues);
  if (proto !== IPPROTO_ICMP) return 0;
  const type = read(b, off, len, l4, 1);
  if (type === 0 || type === 8)
    return sliceQueue(read(b, off, len, l4 + 4, 2), plan.ports.icmp, false, plan.queues);
  if (type !== 3 && type !== 11 && type !== 12) return 0;
  // The quoted packet is one we sent: its source port (or echo identifier) is ours.
  const ihl = read(b, off, len, l4 + 8, 1);
  const inner = read(b, off, len, l4 + 17, 1);
  if (ihl < 0 || inner < 0) return 0;
  const il4 = l4 + 8 + ((ihl & 0xf) << 2);
  if (inner === IPPROTO_TCP || inner === IPPROTO_UDP)
    return portQueue(read(b, off, len, il4, 2), inner, plan, overrides);
  if (inner === IPPROTO_ICMP)
    return sliceQueue(read(b, off, len, il4 + 4, 2), plan.ports.icmp, false, plan.queues);
  return 0;
}

function portQueue(port: number, proto: number, plan: SteeringPlan, overrides?: Uint32Array): number {
  if (port < 0) return 0;
  const pinned = overrides?.[overrideKey(proto, port)] ?? 0;
  if (pinned !== 0) return (pinned - 1) & 0xffff;
  return sliceQueue(port, proto === IPPROTO_TCP ? plan.ports.tcp : plan.ports.udp, true, plan.queues);
}

function sliceQueue(port: number, range: PortRange, keepClass: boolean, queues: number): number {
  if (port < 0) return 0;
  const w = portOwner(range, keepClass, port, queues);
  return Math.max(w, 0);
}
