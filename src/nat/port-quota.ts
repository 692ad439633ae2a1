// Outside ports per inside host (RFC 6888 REQ-4). With endpoint-independent mapping every inside
// endpoint holds an outside port of its own (RFC 4787 REQ-1), so a host's share of a protocol's
// port range is the number of its mappings of that protocol. The count is kept per mapping, where
// a mapping is made and where it goes; the packets of existing flows never see it.
//
// What counts is the mapping, not the port. When a new connection takes the port of a finished
// mapping (src/nat/closed-mappings.ts), the finished one goes (released) and the new one is
// charged: a host taking one of its own keeps its count.
import { IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import type { PortRange } from "./config.ts";
import { type HostTable, NO_HOST, PORT_SLOTS } from "./host-table.ts";

export const SLOT_TCP = 0;
export const SLOT_UDP = 1;
export const SLOT_ICMP = 2;

export function portSlot(proto: number): number {
  return proto === IPPROTO_TCP ? SLOT_TCP : proto === IPPROTO_UDP ? SLOT_UDP : SLOT_ICMP;
}

/** Fewest ports a host may hold by default: a browser alone opens dozens of connections. */
const MIN_DEFAULT_SHARE = 64;

/**
 * One host's default share of a range: a quarter of it, so even three hosts at their limit leave a
 * quarter for everyone else, but at least 64 ports (all of them when the range is smaller).
 */
export function defaultPortShare(range: PortRange): number {
  const size = range.last - range.first + 1;
  return Math.max(Math.min(MIN_DEFAULT_SHARE, size), Math.floor(size / 4));
}

export class PortQuota {
  /** Ports one host may hold, per protocol slot. */
  readonly limit = new Uint32Array(PORT_SLOTS);
  /** Per mapping: the host (index + 1) it is counted against, 0 when it is not counted. */
  private readonly chargedTo: Uint32Array;
  private readonly hosts: HostTable;

  /** `perHost` 0: each protocol's default share of its range. */
  constructor(
    hosts: HostTable,
    mappingCapacity: number,
    ports: { tcp: PortRange; udp: PortRange; icmp: PortRange },
    perHost: number,
  ) {
    this.hosts = hosts;
    this.chargedTo = new Uint32Array(mappingCapacity);
    this.setLimits(ports, perHost);
  }

  /**
   * The ports one host may hold from now on (a reload); a host above a lowered limit keeps what
   * it holds (mappings in use are never taken, RFC 6888 REQ-11 d) and gets no more.
   */
  setLimits(ports: { tcp: PortRange; udp: PortRange; icmp: PortRange }, perHost: number): void {
    this.limit[SLOT_TCP] = perHost > 0 ? perHost : defaultPortShare(ports.tcp);
    this.limit[SLOT_UDP] = perHost > 0 ? perHost : defaultPortShare(ports.udp);
    this.limit[SLOT_ICMP] = perHost > 0 ? perHost : defaultPortShare(ports.icmp);
  }

  get byteLength(): number {
    return this.chargedTo.byteLength;
  }

  /** Whether host (an index, or NO_HOST for one that holds nothing yet) may take one more port. */
  allows(host: number, proto: number): boolean {
    if (host === NO_HOST) return true;
    const slot = portSlot(proto);
    return this.hosts.ports[host * PORT_SLOTS + slot] < this.limit[slot];
  }

  /** Counts new mapping m (of `proto`) against host, which must exist. */
  charge(m: number, host: number, proto: number): void {
    this.hosts.ports[host * PORT_SLOTS + portSlot(proto)]++;
    this.chargedTo[m] = host + 1;
  }

  /** Mapping m (of `proto`) is going: its host gets the port back (the host may go with it). */
  release(m: number, proto: number): void {
    const h = this.chargedTo[m];
    if (h === 0) return;
    this.chargedTo[m] = 0;
    this.hosts.releasePort(h - 1, portSlot(proto));
  }

  /** The host (index) mapping m is counted against, or NO_HOST. */
  hostOf(m: number): number {
    return this.chargedTo[m] - 1;
  }

  /** Ports host holds of `proto` (for listings and tests). */
  held(host: number, proto: number): number {
    return host === NO_HOST ? 0 : this.hosts.ports[host * PORT_SLOTS + portSlot(proto)];
  }
}
