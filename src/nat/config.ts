// The engine's configuration: plain data, validated by control/config before it gets here.

import type { FirewallRule } from "../policy/rules.ts";
import type { DeterministicPlan } from "./deterministic.ts";
import type { NatEventConfig } from "./nat-event-log.ts";
import type { PortSlice } from "./port-slices.ts";

export type Filtering = "endpoint-independent" | "address-dependent" | "address-port-dependent";

/** How the engine treats the IPv4 TTL of a packet it forwards. */
export type TtlMode =
  /** The kernel routes the packet into the TUN and out again, decrementing twice: add one back. */
  | "compensate"
  /** The engine is the hop (e.g. tc mirred datapath): decrement, answer time-exceeded at 1. */
  | "decrement"
  /** Leave the TTL alone. */
  | "preserve";

export type UnsolicitedSyn = "drop" | "port-unreachable";

/**
 * MSS clamping of SYNs (src/nat/mss-clamp.ts): "pmtu" to the MTU of the link the SYN leaves by
 * minus 40, a number for both directions, or "off".
 */
export type MssClampSetting = "pmtu" | "off" | number;

export interface PortRange {
  first: number;
  last: number;
}

export interface Timeouts {
  /** RFC 5382 REQ-5: at least 2 h 4 min. */
  tcpEstablishedSec: number;
  /** RFC 5382 REQ-5: partially open or closing connections, 4 min. */
  tcpTransitorySec: number;
  /**
   * Inbound connections that have not completed their handshake (a SYN flood's). RFC 7857 §2.2
   * lets this be shorter than the transitory 4 min; netfilter keeps them 60 s (SYN_RECV).
   */
  tcpHalfOpenSec: number;
  /** After a valid RST: RFC 7857 §2.2, 4 min, so late segments still translate. */
  tcpClosedSec: number;
  /** RFC 4787 REQ-5: at least 2 min, default 5 min. */
  udpSec: number;
  /** RFC 5508 REQ-1: ICMP query mappings, 60 s. */
  icmpSec: number;
  /**
   * Flows of the other IP protocols (GRE, ESP, SCTP …), translated by address only
   * (src/nat/generic-flow.ts): 600 s, netfilter's generic timeout.
   */
  genericSec: number;
  /** Buffered fragments waiting for their first fragment. */
  fragmentSec: number;
}

export interface EngineConfig {
  /** Inside networks, as [address, prefix length] with the address as a 32-bit unsigned int. */
  inside: Array<{ addr: number; len: number }>;
  /** Outside (public) addresses, 32-bit unsigned ints. Paired pooling chooses one per inside host. */
  outside: number[];
  /**
   * The gateway's own addresses (those of its inside and outside interfaces), 32-bit unsigned
   * ints. An ICMP error from one of them that is not from the LAN was sent by the gateway's own
   * stack about a packet masq translated, and is translated back to the inside host
   * (src/nat/gateway-addresses.ts). Empty (replay, most tests): none is recognised.
   */
  gateway: number[];
  /**
   * interface mode: the outside address is also the gateway's own, so packets to it that masq
   * does not own (other ports, pings to the gateway) are handed back unchanged; pool mode drops them.
   */
  mode: "interface" | "pool";
  ports: { tcp: PortRange; udp: PortRange; icmp: PortRange };
  filtering: Filtering;
  timeouts: Timeouts;
  /** Total flows, preallocated. */
  maxFlows: number;
  /** Endpoint mappings (inside address:port -> outside address:port); default maxFlows / 2. */
  maxMappings: number;
  /** Per inside host (RFC 6888 REQ-4); inbound half-open TCP connections are not counted. */
  maxFlowsPerHost: number;
  /**
   * Inbound TCP connections that have not completed their handshake, all hosts together; at the
   * cap the oldest is evicted (src/nat/half-open.ts). Default a quarter of maxFlows.
   */
  maxHalfOpen: number;
  /**
   * An unsolicited inbound SYN: dropped silently, or answered after 6 s with ICMP port
   * unreachable (RFC 5382 REQ-4). Silence is the default: a gateway that answers scans tells
   * the scanner it is there (REQ-4a allows it).
   */
  unsolicitedSyn: UnsolicitedSyn;
  /**
   * Outside ports (mappings) one inside host may hold per protocol (RFC 6888 REQ-4); 0: each
   * protocol's default share of its range (src/nat/port-quota.ts, a quarter, at least 64).
   */
  maxPortsPerHost: number;
  /** Distinct inside hosts tracked at once. */
  maxHosts: number;
  /**
   * Bytes of fragments held while waiting for the first fragment of their datagram (RFC 4787
   * REQ-14), preallocated at the first one: an eighth for outside sources, the rest for inside
   * ones, a quarter of its class at most per source (src/nat/fragment-store.ts).
   */
  maxHeldFragmentBytes: number;
  ttlMode: TtlMode;
  /** Keep odd/even parity of the inside port (RFC 4787 REQ-4, optional). */
  portParity: boolean;
  /**
   * Seed of the port allocators' random starting points (RFC 6056: hard-to-guess ports). `masq
   * run` draws a fresh one at each start; a fixed one makes allocation reproducible (replay, tests).
   */
  portSeed: number;
  /**
   * With several workers, this engine shard's share of every port range (src/nat/port-slices.ts):
   * its allocators hand out ports of that slice only. Absent: the whole range (one worker).
   */
  portSlice?: PortSlice;
  /**
   * Seed of the flow, mapping and host tables' hashes (0: a random one per table, as `masq run`
   * uses, so remote parties cannot aim collisions at the probe runs). A fixed seed makes the
   * tables' layout reproducible (randomized tests replay from their seed).
   */
  hashSeed: number;
  /** Firewall rules, first match wins, evaluated for new flows only (src/policy/rules.ts). */
  firewall: FirewallRule[];
  /** New flows per second an inside host may open (0: no limit); bursts up to one second's worth. */
  newFlowsPerSecPerHost: number;
  /** New flows per second through the whole gateway, both directions (0: no limit). */
  newFlowsPerSec: number;
  mssClamp: MssClampSetting;
  /** MTUs of the links (inside: the smallest of the inside interfaces'), for mssClamp "pmtu". */
  insideMtu: number;
  outsideMtu: number;
  /** NAT event logging (src/nat/nat-event-log.ts); absent: off, nothing is recorded. */
  natEvents?: NatEventConfig;
  /**
   * Port blocks (`[cgnat]`, src/nat/port-blocks.ts): ports per block and blocks per host and
   * protocol. Absent: ports are allocated one by one (port-allocator.ts).
   */
  portBlocks?: { size: number; maxPerHost: number };
  /** Deterministic NAT (`[cgnat] mode = "deterministic"`, src/nat/deterministic.ts); absent: off. */
  deterministic?: DeterministicPlan;
}

/**
 * Interface mode shares the gateway's own address: masq owns a range above the kernel's
 * ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default), the rest is the
 * gateway's.
 */
export const DEFAULT_INTERFACE_PORTS: PortRange = { first: 61000, last: 65534 };
/**
 * Pool mode owns its addresses, so every port: 1-1023 for inside ports below 1024 and
 * 1024-65535 for the others (RFC 4787 REQ-3, src/nat/port-allocator.ts). Port 0 is no TCP or UDP
 * port a host sends from.
 */
export const DEFAULT_POOL_PORTS: PortRange = { first: 1, last: 65535 };

/** The port range a mode owns when the configuration names none. */
export function defaultPortRange(mode: "interface" | "pool"): PortRange {
  return mode === "pool" ? DEFAULT_POOL_PORTS : DEFAULT_INTERFACE_PORTS;
}

/** Held fragments: 4 MiB, what Linux allows its own reassembly per namespace (ipfrag_high_thresh). */
export const DEFAULT_FRAGMENT_BUFFER_BYTES = 4 * 1024 * 1024;

export const DEFAULT_TIMEOUTS: Timeouts = {
  tcpEstablishedSec: 7440,
  tcpTransitorySec: 240,
  tcpHalfOpenSec: 60,
  tcpClosedSec: 240,
  udpSec: 300,
  icmpSec: 60,
  genericSec: 600,
  fragmentSec: 30,
};

/** Inbound half-open TCP connections allowed by default: a quarter of the flow table. */
export function defaultMaxHalfOpen(maxFlows: number): number {
  return Math.max(1, Math.floor(maxFlows / 4));
}

export function defaultEngineConfig(over: Partial<EngineConfig> = {}): EngineConfig {
  const maxFlows = over.maxFlows ?? 65536;
  const ports = defaultPortRange(over.mode ?? "pool");
  return {
    inside: [],
    outside: [],
    gateway: [],
    mode: "pool",
    ports: { tcp: ports, udp: ports, icmp: ports },
    filtering: "address-dependent",
    timeouts: DEFAULT_TIMEOUTS,
    maxFlows,
    maxMappings: Math.max(1024, Math.ceil(maxFlows / 2)),
    maxFlowsPerHost: 8192,
    maxHalfOpen: defaultMaxHalfOpen(maxFlows),
    unsolicitedSyn: "drop",
    maxPortsPerHost: 0,
    maxHosts: 4096,
    maxHeldFragmentBytes: DEFAULT_FRAGMENT_BUFFER_BYTES,
    ttlMode: "compensate",
    portParity: false,
    portSeed: 0,
    hashSeed: 0,
    firewall: [],
    newFlowsPerSecPerHost: 0,
    newFlowsPerSec: 0,
    mssClamp: "pmtu",
    insideMtu: 1500,
    outsideMtu: 1500,
    ...over,
  };
}
