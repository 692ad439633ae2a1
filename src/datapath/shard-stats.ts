// `masq stats` over several engine shards: one EngineStats as if one engine held every flow, so
// the listings, the metrics and the dashboard read the same fields with one worker or many.
import type { EngineStats } from "../nat/view.ts";

/**
 * Counters of the gateway's own events, which every shard counts once for the same event (each
 * moves to the new address): taken once, not added up.
 */
const GATEWAY_EVENTS = new Set(["public_address_changes"]);

/** The shards' statistics added up, field by field (bytes per flow is the same in every shard). */
export function mergeEngineStats(shards: readonly EngineStats[]): EngineStats {
  if (shards.length === 0) throw new RangeError("mergeEngineStats: no shards");
  const counters: Record<string, number> = {};
  for (const s of shards)
    for (const [k, v] of Object.entries(s.counters))
      counters[k] = GATEWAY_EVENTS.has(k) ? Math.max(counters[k] ?? 0, v) : (counters[k] ?? 0) + v;
  const sum = (f: (s: EngineStats) => number) => shards.reduce((n, s) => n + f(s), 0);
  return {
    counters,
    flows: sum((s) => s.flows),
    halfOpen: sum((s) => s.halfOpen),
    mappings: sum((s) => s.mappings),
    hosts: sum((s) => s.hosts),
    heldFragments: sum((s) => s.heldFragments),
    heldFragmentBytes: sum((s) => s.heldFragmentBytes),
    capacity: {
      flows: sum((s) => s.capacity.flows),
      mappings: sum((s) => s.capacity.mappings),
      hosts: sum((s) => s.capacity.hosts),
    },
    bytesPerFlow: shards[0].bytesPerFlow,
  };
}
