// The `[cgnat]` section of the config file: port blocks (src/nat/port-blocks.ts), apart from
// config.ts so that file stays the list of sections; and deterministic mode (RFC 7422,
// src/nat/deterministic.ts), checked against the pool once the addresses are known; and the
// scale-out of deterministic mode over several gateways (`nodes`, `node`,
// src/nat/deterministic-pool.ts), which narrows the pool to this node's part.
import * as v from "valibot";
import { expandPrefix, parsePrefix, prefixSize } from "../host/ipv4.ts";
import { type DeterministicPlan, deterministicProblem } from "../nat/deterministic.ts";
import { DeterministicPool, nodePart } from "../nat/deterministic-pool.ts";
import { parseIpv4 } from "../packet/addr.ts";
import { boundedInt } from "./config-values.ts";

export interface CgnatConfig {
  /** Ports per block; 0: off (ports are allocated one by one). */
  portBlock: number;
  /** Blocks one inside host may hold per protocol (RFC 6888 REQ-4). */
  maxBlocksPerHost: number;
  /** Deterministic mode's inside prefix ("100.64.0.0/22"); undefined: not deterministic. */
  deterministicInside?: string;
  /**
   * Deterministic mode on several gateways sharing the pool (`nodes` > 1): how many, which one
   * this is, and the whole pool (every address, in configuration order) once it is known; the
   * run's own `addresses` are then this node's part alone.
   */
  scaleOut?: { nodes: number; node: number; pool: string[] };
}

/** Most gateways one pool may be shared by. */
export const MAX_NODES = 64;

export function defaultCgnatConfig(): CgnatConfig {
  return { portBlock: 0, maxBlocksPerHost: 4 };
}

export const cgnatSectionSchema = v.strictObject({
  mode: v.optional(v.string('must be "blocks" or "deterministic"')),
  inside: v.optional(v.string("must be a prefix")),
  port_block: v.optional(boundedInt("ports", 8, 32_768, { bounds: "number and unit" })),
  nodes: v.optional(boundedInt("gateways", 1, MAX_NODES, { bounds: "number" })),
  node: v.optional(boundedInt("", 0, Number.POSITIVE_INFINITY, { min: "must be 0 or more" })),
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
    return applyNodes(c, f);
  }
  if (f.inside !== undefined) return { key: "cgnat.inside", problem: 'is for mode = "deterministic"' };
  if (f.nodes !== undefined) return { key: "cgnat.nodes", problem: 'is for mode = "deterministic"' };
  if (f.node !== undefined) return { key: "cgnat.node", problem: 'is for mode = "deterministic"' };
  if (f.port_block !== undefined) c.portBlock = f.port_block;
  if (f.max_blocks_per_host !== undefined) c.maxBlocksPerHost = f.max_blocks_per_host;
  if (f.max_blocks_per_host !== undefined && c.portBlock === 0)
    return { key: "cgnat.max_blocks_per_host", problem: "needs cgnat.port_block" };
  return undefined;
}

/** `nodes` and `node` of a deterministic section. */
function applyNodes(c: CgnatConfig, f: CgnatSection): { key: string; problem: string } | undefined {
  const nodes = f.nodes ?? 1;
  if (f.node !== undefined && f.nodes === undefined)
    return { key: "cgnat.node", problem: "needs cgnat.nodes, the number of gateways sharing the pool" };
  if (nodes > 1 && f.node === undefined)
    return {
      key: "cgnat.node",
      problem: `missing: which of the ${nodes} gateways sharing the pool this one is (0-${nodes - 1})`,
    };
  const node = f.node ?? 0;
  if (node >= nodes)
    return { key: "cgnat.node", problem: `${node} is not one of the ${nodes} gateways (0-${nodes - 1})` };
  if (nodes > 1) c.scaleOut = { nodes, node, pool: [] };
  return undefined;
}

/**
 * Scale-out: checks the whole pool `addresses` against the nodes and returns this node's part
 * (the addresses it owns, one by one), recording the whole pool; a key and problem when refused.
 * Each part must give every inside address of the prefix enough ports: any node may be handed
 * any inside host by the router.
 */
export function narrowToNode(
  c: CgnatConfig,
  addresses: readonly string[],
  ports: { first: number; last: number },
  keys: { nodes: string; inside: string },
): string[] | { key: string; problem: string } {
  const so = c.scaleOut;
  if (so === undefined || c.deterministicInside === undefined) return [...addresses];
  const whole = addresses.flatMap((a) => expandPrefix(parsePrefix(a)));
  if (whole.length < so.nodes)
    return {
      key: keys.nodes,
      problem: `${so.nodes} gateways need at least ${so.nodes} pool addresses, one each; the pool (addresses) has ${whole.length}`,
    };
  const smallest = Math.floor(whole.length / so.nodes);
  const plan = deterministicPlan(c.deterministicInside, smallest, ports.first, ports.last);
  if (typeof plan === "string")
    return { key: keys.inside, problem: `each gateway's part of the pool (${smallest}+ addresses): ${plan}` };
  const part = nodePart(whole.length, so.nodes, so.node);
  so.pool = whole;
  return whole.slice(part.first, part.first + part.count);
}

/**
 * The whole-pool function of a scale-out configuration and this gateway's node, for whois (as
 * the API sources' `scaleOut`); nothing when the pool is not shared.
 */
export function scaleOutOf(
  c: CgnatConfig,
  ports: { first: number; last: number },
): { scaleOut?: { pool: DeterministicPool; node: number } } {
  const so = c.scaleOut;
  if (so === undefined || c.deterministicInside === undefined || so.pool.length === 0) return {};
  const pool = new DeterministicPool(
    so.pool.map((a) => parseIpv4(a)!),
    so.nodes,
    insidePlan(c.deterministicInside, ports.first, ports.last),
  );
  return { scaleOut: { pool, node: so.node } };
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
  const plan = { ...insidePlan(inside, first, last), addresses };
  return deterministicProblem(plan) ?? plan;
}

/** A plan's inside prefix and ports (the unprivileged class of first-last), for any pool. */
function insidePlan(inside: string, first: number, last: number): Omit<DeterministicPlan, "addresses"> {
  const p = parsePrefix(inside);
  return {
    base: parseIpv4(p.addr)!,
    size: prefixSize(p),
    lo: Math.max(first, last >= 1024 ? 1024 : first),
    hi: last,
  };
}
