// The `[cgnat]` section of the config file: port blocks (src/nat/port-blocks.ts), apart from
// config.ts so that file stays the list of sections; and deterministic mode (RFC 7422,
// src/nat/deterministic.ts), checked against the pool once the addresses are known.
import * as v from "valibot";
import { parsePrefix, prefixSize } from "../host/ipv4.ts";
import { type DeterministicPlan, deterministicProblem } from "../nat/deterministic.ts";
import { parseIpv4 } from "../packet/addr.ts";
import { boundedInt } from "./config-values.ts";

export interface CgnatConfig {
  /** Ports per block; 0: off (ports are allocated one by one). */
  portBlock: number;
  /** Blocks one inside host may hold per protocol (RFC 6888 REQ-4). */
  maxBlocksPerHost: number;
  /** Deterministic mode's inside prefix ("100.64.0.0/22"); undefined: not deterministic. */
  deterministicInside?: string;
}

export function defaultCgnatConfig(): CgnatConfig {
  return { portBlock: 0, maxBlocksPerHost: 4 };
}

export const cgnatSectionSchema = v.strictObject({
  mode: v.optional(v.string('must be "blocks" or "deterministic"')),
  inside: v.optional(v.string("must be a prefix")),
  port_block: v.optional(boundedInt("ports", 8, 32_768, { bounds: "number and unit" })),
  max_blocks_per_host: v.optional(boundedInt("blocks", 1, 4096, { bounds: "number" })),
});

export type CgnatSection = v.InferOutput<typeof cgnatSectionSchema>;

/** Applies a parsed `[cgnat]` section; a refused setting is returned as its key and problem. */
export function applyCgnatSection(
  c: CgnatConfig,
  f: CgnatSection,
): { key: string; problem: string } | undefined {
  if (f.mode !== undefined && f.mode !== "blocks" && f.mode !== "deterministic")
    return { key: "cgnat.mode", problem: `${JSON.stringify(f.mode)} must be "blocks" or "deterministic"` };
  if (f.mode === "deterministic") {
    if (f.inside === undefined)
      return {
        key: "cgnat.inside",
        problem: 'deterministic mode needs its inside prefix, e.g. "100.64.0.0/22"',
      };
    if (f.port_block !== undefined || f.max_blocks_per_host !== undefined)
      return { key: "cgnat.port_block", problem: "is for block mode, not deterministic mode" };
    try {
      parsePrefix(f.inside);
    } catch (e) {
      return { key: "cgnat.inside", problem: (e as Error).message };
    }
    c.deterministicInside = f.inside;
    return undefined;
  }
  if (f.inside !== undefined) return { key: "cgnat.inside", problem: 'is for mode = "deterministic"' };
  if (f.port_block !== undefined) c.portBlock = f.port_block;
  if (f.max_blocks_per_host !== undefined) c.maxBlocksPerHost = f.max_blocks_per_host;
  if (f.max_blocks_per_host !== undefined && c.portBlock === 0)
    return { key: "cgnat.max_blocks_per_host", problem: "needs cgnat.port_block" };
  return undefined;
}

/**
 * The check a port range must pass for blocks of `portBlock` ports: at least one block per
 * worker's slice of its unprivileged class. undefined when it passes, else the problem.
 */
export function blockRangeProblem(
  portBlock: number,
  first: number,
  last: number,
  workers: number,
): string | undefined {
  const lo = Math.max(first, last >= 1024 ? 1024 : first);
  const per = Math.floor((last - lo + 1) / Math.max(1, workers));
  if (per >= portBlock) return undefined;
  return `${portBlock} ports do not fit the ${per} ports of the range (${first}-${last}) each worker has`;
}

/**
 * Deterministic mode's plan for inside prefix `inside`, `addresses` pool addresses and ports
 * first-last (their unprivileged class); a string when it leaves an inside address too few ports.
 */
export function deterministicPlan(
  inside: string,
  addresses: number,
  first: number,
  last: number,
): DeterministicPlan | string {
  const p = parsePrefix(inside);
  const plan = {
    base: parseIpv4(p.addr)!,
    size: prefixSize(p),
    addresses,
    lo: Math.max(first, last >= 1024 ? 1024 : first),
    hi: last,
  };
  return deterministicProblem(plan) ?? plan;
}
