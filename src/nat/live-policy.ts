// What of the engine's configuration may change while it runs (`masq reload`): the policy it
// applies to new flows (admission, the firewall, rates, per-host limits, port parity, the MSS
// clamp) and the timeouts it arms timers with. Everything else (the tables' capacities, the
// addresses, the port ranges and the seeds) sizes or keys preallocated state and is fixed at
// construction. The constructor applies its configuration through `applyPolicy` too, so a reload
// configures the engine by the same code as a start.
import { isDeepStrictEqual } from "node:util";
import { TokenBucket } from "../policy/rate.ts";
import { RuleSet } from "../policy/rules.ts";
import type { EngineConfig } from "./config.ts";
import {
  type EngineState,
  FILTER_ADDRESS_DEPENDENT,
  FILTER_ADDRESS_PORT_DEPENDENT,
  FILTER_ENDPOINT_INDEPENDENT,
} from "./state.ts";
import { UnsolicitedSyns } from "./unsolicited-syn.ts";

/** The engine settings a reload may change. */
export const LIVE_POLICY_KEYS = [
  "filtering",
  "timeouts",
  "maxFlowsPerHost",
  "maxHalfOpen",
  "maxPortsPerHost",
  "unsolicitedSyn",
  "firewall",
  "newFlowsPerSecPerHost",
  "newFlowsPerSec",
  "portParity",
  "mssClamp",
] as const satisfies ReadonlyArray<keyof EngineConfig>;

export type LivePolicy = Pick<EngineConfig, (typeof LIVE_POLICY_KEYS)[number]>;

/**
 * Sets the state's derived policy from `c` (`previous`: the configuration it ran with, none at
 * construction). Flows already admitted keep their admission; a changed timeout applies when a
 * flow's timer is next armed; firewall hit counters start again only when the rules changed.
 */
export function applyPolicy(s: EngineState, c: EngineConfig, previous?: EngineConfig): void {
  s.filtering =
    c.filtering === "endpoint-independent"
      ? FILTER_ENDPOINT_INDEPENDENT
      : c.filtering === "address-dependent"
        ? FILTER_ADDRESS_DEPENDENT
        : FILTER_ADDRESS_PORT_DEPENDENT;
  const t = c.timeouts;
  s.tEstablished = t.tcpEstablishedSec;
  s.tTransitory = t.tcpTransitorySec;
  s.tClosed = t.tcpClosedSec;
  s.tHalfOpen = t.tcpHalfOpenSec;
  s.tUdp = t.udpSec;
  s.tIcmp = t.icmpSec;
  s.tGeneric = t.genericSec;
  s.fragments.setTimeout(t.fragmentSec);
  if (previous === undefined || !isDeepStrictEqual(previous.firewall, c.firewall))
    s.firewall = c.firewall.length > 0 ? new RuleSet(c.firewall) : null;
  s.hostRate = c.newFlowsPerSecPerHost;
  if (previous === undefined || previous.newFlowsPerSec !== c.newFlowsPerSec)
    s.globalRate = c.newFlowsPerSec > 0 ? new TokenBucket(c.newFlowsPerSec, c.newFlowsPerSec) : null;
  s.maxHalfOpen = c.maxHalfOpen;
  if (c.unsolicitedSyn !== "port-unreachable") s.unsolicitedSyns = null;
  else if (s.unsolicitedSyns === null) s.unsolicitedSyns = new UnsolicitedSyns(c.hashSeed, s.counters);
  s.portQuota.setLimits(c.ports, c.maxPortsPerHost);
  s.mss.setSetting(c.mssClamp);
}

/** The engine's configuration with `policy` in place of its live settings. */
export function withPolicy(c: EngineConfig, policy: LivePolicy): EngineConfig {
  const next = { ...c };
  for (const k of LIVE_POLICY_KEYS) (next as Record<string, unknown>)[k] = policy[k];
  return next;
}
