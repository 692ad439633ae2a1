// The [portmap] settings of NAT-PMP (RFC 6886) and PCP (RFC 6887), and their defaults.

import type { Prefix } from "./neighbours.ts";

export interface PortmapConfig {
  enabled: boolean;
  natpmp: boolean;
  pcp: boolean;
  /** Granted lifetimes are clamped to [minLifetime, maxLifetime] seconds (RFC 6887 §15). */
  minLifetime: number;
  maxLifetime: number;
  /** Live NAT-PMP/PCP mappings one inside host may hold (RFC 6888 REQ-4 spirit). */
  maxPerHost: number;
  /**
   * Live NAT-PMP/PCP mappings of all hosts together, per protocol; 0: the default share of the
   * protocol's port range (a quarter), so the protocols can never take the range.
   */
  maxMappings: number;
  /** Take requests only from hosts in the inside interface's neighbour (ARP) table (neighbours.ts). */
  requireNeighbour: boolean;
  /** Hosts taken without a neighbour entry (e.g. behind an inside router). */
  allowedHosts: Prefix[];
  /** Honour PCP THIRD_PARTY (a mapping for another inside host); off by default (§13.1). */
  thirdParty: boolean;
}

export function defaultPortmapConfig(): PortmapConfig {
  return {
    enabled: false,
    natpmp: true,
    pcp: true,
    // RFC 6887 §15: the minimum SHOULD be 120 s; 24 h is a sane ceiling for a home gateway.
    minLifetime: 120,
    maxLifetime: 86_400,
    maxPerHost: 64,
    maxMappings: 0,
    requireNeighbour: true,
    allowedHosts: [],
    thirdParty: false,
  };
}
