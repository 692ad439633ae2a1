// The `[limits]` section of the config file (flow table, per-host shares, fragments, new-flow
// rates): its settings, defaults, schema and how it is applied, apart from config.ts so that
// file stays the list of sections.
import * as v from "valibot";
import { DEFAULT_FRAGMENT_BUFFER_BYTES } from "../nat/config.ts";
import { ConfigError } from "./config-error.ts";
import { boundedInt, flowCount, perSecond } from "./config-values.ts";

export interface LimitsConfig {
  maxFlows: number;
  maxFlowsPerHost: number;
  /** Inbound half-open TCP connections in all; undefined: a quarter of maxFlows. */
  maxHalfOpen?: number;
  /** Outside ports one inside host may hold per protocol; 0: the default share of the range. */
  maxPortsPerHost: number;
  maxHosts: number;
  /** Bytes of fragments held for their first fragment (src/nat/fragment-store.ts). */
  fragmentBufferBytes: number;
  /** New flows per second per inside host, and for the whole gateway (0: no limit). */
  newFlowsPerSecPerHost: number;
  newFlowsPerSec: number;
}

export function defaultLimits(): LimitsConfig {
  return {
    maxFlows: 262_144,
    maxFlowsPerHost: 8192,
    maxPortsPerHost: 0,
    maxHosts: 4096,
    fragmentBufferBytes: DEFAULT_FRAGMENT_BUFFER_BYTES,
    newFlowsPerSecPerHost: 0,
    newFlowsPerSec: 0,
  };
}

export const limitsSectionSchema = v.strictObject({
  max_flows: v.optional(flowCount(16)),
  max_flows_per_host: v.optional(flowCount(1)),
  max_half_open: v.optional(flowCount(1)),
  max_ports_per_host: v.optional(boundedInt("ports", 1, 65_535, { bounds: "number" })),
  max_hosts: v.optional(boundedInt(undefined, 1, 1_048_576)),
  fragment_buffer_bytes: v.optional(
    boundedInt("bytes", 65_536, 268_435_456, {
      min: "must be at least 65536 (64 KiB)",
      max: "must be at most 268435456 (256 MiB)",
    }),
  ),
  new_flows_per_sec_per_host: v.optional(perSecond),
  new_flows_per_sec: v.optional(perSecond),
});

export type LimitsSection = v.InferOutput<typeof limitsSectionSchema>;

/** Applies a parsed `[limits]` section of file `src`; errors name their key. */
export function applyLimitsSection(L: LimitsConfig, l: LimitsSection, src: string): void {
  if (l.max_flows !== undefined) L.maxFlows = l.max_flows;
  if (l.max_flows_per_host !== undefined) L.maxFlowsPerHost = l.max_flows_per_host;
  if (l.max_half_open !== undefined) {
    if (l.max_half_open > L.maxFlows)
      throw new ConfigError(
        `${src}: limits.max_half_open`,
        `${l.max_half_open} is above limits.max_flows (${L.maxFlows})`,
      );
    L.maxHalfOpen = l.max_half_open;
  }
  if (l.max_ports_per_host !== undefined) L.maxPortsPerHost = l.max_ports_per_host;
  if (l.max_hosts !== undefined) L.maxHosts = l.max_hosts;
  if (l.fragment_buffer_bytes !== undefined) L.fragmentBufferBytes = l.fragment_buffer_bytes;
  if (l.new_flows_per_sec_per_host !== undefined) L.newFlowsPerSecPerHost = l.new_flows_per_sec_per_host;
  if (l.new_flows_per_sec !== undefined) L.newFlowsPerSec = l.new_flows_per_sec;
}
