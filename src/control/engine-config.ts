// The engine's configuration from a `masq run` configuration and what the host said: shared by
// the daemon and `masq replay`, which must set up the engine exactly alike.
import { randomBytes } from "node:crypto";
import { DEFAULT_MTU, parsePrefix } from "../host/index.ts";
import { defaultEngineConfig, defaultMaxHalfOpen, type EngineConfig } from "../nat/config.ts";
import type { DeterministicPlan } from "../nat/deterministic.ts";
import type { LivePolicy } from "../nat/live-policy.ts";
import { natLogEnabled } from "../natlog/config.ts";
import { parseIpv4 } from "../packet/addr.ts";
import { deterministicPlan } from "./cgnat-config.ts";
import type { RunConfig } from "./config.ts";
import { ConfigError } from "./config-error.ts";

/** What the host says about a run: its mode, public addresses, inside networks and MTU. */
export interface Resolved {
  mode: "interface" | "pool";
  /** Interface mode: the outside interface's address now, none while it has none (it changes). */
  publicAddresses: string[];
  insideNetworks: string[];
  mtu: number;
  /** The smallest MTU of the inside interfaces, and the outside interface's (default 1500). */
  insideMtu?: number;
  outsideMtu?: number;
  /** Every address of the gateway's inside and outside interfaces (a live run only). */
  gatewayAddresses?: string[];
}

export function engineConfigFor(cfg: RunConfig, host: Resolved): EngineConfig {
  const ports = { first: cfg.ports.first, last: cfg.ports.last };
  return defaultEngineConfig({
    inside: host.insideNetworks.map((p) => {
      const { addr, len } = parsePrefix(p);
      return { addr: parseIpv4(addr)!, len };
    }),
    // Interface mode with no address yet: 0 holds its place, and the engine drops what would
    // leave until the address comes (src/nat/public-address.ts).
    outside: host.publicAddresses.length > 0 ? host.publicAddresses.map((a) => parseIpv4(a)!) : [0],
    gateway: (host.gatewayAddresses ?? []).map((a) => parseIpv4(a)!),
    mode: host.mode,
    ports: { tcp: ports, udp: ports, icmp: ports },
    maxFlows: cfg.limits.maxFlows,
    maxHosts: cfg.limits.maxHosts,
    maxHeldFragmentBytes: cfg.limits.fragmentBufferBytes,
    ...enginePolicyFor(cfg),
    insideMtu: host.insideMtu ?? DEFAULT_MTU,
    outsideMtu: host.outsideMtu ?? DEFAULT_MTU,
    // NAT event logging records into the engine's ring only when a target is set.
    ...(natLogEnabled(cfg.natLog)
      ? { natEvents: { capacity: cfg.natLog.bufferEvents, sessions: cfg.natLog.sessions } }
      : {}),
    ...(cfg.cgnat.deterministicInside !== undefined
      ? {
          deterministic: engineDeterministicPlan(
            cfg.cgnat.deterministicInside,
            host.publicAddresses.length,
            ports,
          ),
        }
      : {}),
    ...(cfg.cgnat.portBlock > 0
      ? { portBlocks: { size: cfg.cgnat.portBlock, maxPerHost: cfg.cgnat.maxBlocksPerHost } }
      : {}),
    // Unpredictable ports (RFC 6056) unless the configuration fixes the seed.
    portSeed: cfg.portSeed ?? randomBytes(4).readUInt32BE(0),
  });
}

/** The engine's live settings (nat/live-policy.ts) from a configuration: at start and at a reload. */
export function enginePolicyFor(cfg: RunConfig): LivePolicy {
  return {
    filtering: cfg.filtering,
    timeouts: { ...cfg.timeouts },
    maxFlowsPerHost: cfg.limits.maxFlowsPerHost,
    maxHalfOpen: cfg.limits.maxHalfOpen ?? defaultMaxHalfOpen(cfg.limits.maxFlows),
    unsolicitedSyn: cfg.unsolicitedSyn,
    maxPortsPerHost: cfg.limits.maxPortsPerHost,
    firewall: cfg.firewall,
    newFlowsPerSecPerHost: cfg.limits.newFlowsPerSecPerHost,
    newFlowsPerSec: cfg.limits.newFlowsPerSec,
    portParity: cfg.portParity,
    mssClamp: cfg.mssClamp,
  };
}

/** Deterministic mode's plan (checked when the config was read, so it is one here). */
function engineDeterministicPlan(
  inside: string,
  addresses: number,
  ports: { first: number; last: number },
): DeterministicPlan {
  const plan = deterministicPlan(inside, addresses, ports.first, ports.last);
  if (typeof plan === "string") throw new ConfigError("cgnat.inside", plan);
  return plan;
}
