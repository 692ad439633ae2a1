// The `[alg]` section of the config file, built from the list of ALG descriptors: a table
// `[alg.<name>]` (enabled, ports) per ALG, so a new ALG is configurable without an edit here.
import * as v from "valibot";
import { type AlgPorts, type AnyAlgConfig, algPorts } from "../alg/config.ts";
import type { Alg } from "../alg/types.ts";
import { boundedInt } from "./config-values.ts";

const algPort = boundedInt(undefined, 1, 65535, {
  number: "must be a port number",
  integer: "must be a whole port number",
  min: "must be a port 1-65535",
  max: "must be a port 1-65535",
});
const algEntry = v.optional(
  v.strictObject({
    enabled: v.optional(v.boolean()),
    ports: v.optional(
      v.pipe(v.array(algPort, "must be a list of ports"), v.minLength(1, "must list at least one port")),
    ),
  }),
);
const algLimits = {
  expect_timeout: v.optional(boundedInt("seconds", 1, 3600, { max: "must be at most 3600 seconds" })),
  max_expectations_per_flow: v.optional(boundedInt(undefined, 1, 255)),
  max_expectations: v.optional(boundedInt(undefined, 1, 1_048_576)),
};

/** The schema of `[alg]` for the ALGs `algs`: unknown tables (an ALG masq lacks) are refused. */
export function algSectionSchema(algs: readonly Alg[]) {
  const entries: Record<string, typeof algEntry> = {};
  for (const a of algs) entries[a.name] = algEntry;
  return v.strictObject({ ...entries, ...algLimits });
}

export type AlgSection = v.InferOutput<ReturnType<typeof algSectionSchema>>;

/**
 * Applies a parsed `[alg]` section to `a`. Returns the key and problem of a conflict (two ALGs
 * on one server port and transport), null when there is none.
 */
export function applyAlgSection(
  algs: readonly Alg[],
  a: AnyAlgConfig,
  f: AlgSection,
): { key: string; problem: string } | null {
  const entries = f as Record<string, { enabled?: boolean; ports?: number[] } | undefined>;
  for (const alg of algs) {
    const e = entries[alg.name];
    const c: AlgPorts = { ...algPorts(a, alg.name) };
    if (e?.enabled !== undefined) c.enabled = e.enabled;
    if (e?.ports !== undefined) c.ports = [...new Set(e.ports)];
    a[alg.name] = c;
  }
  if (f.expect_timeout !== undefined) a.expectTimeoutSec = f.expect_timeout;
  if (f.max_expectations_per_flow !== undefined) a.maxExpectationsPerFlow = f.max_expectations_per_flow;
  if (f.max_expectations !== undefined) a.maxExpectations = f.max_expectations;
  // One ALG per server port and transport (the registry picks a flow's ALG by its server port).
  for (const transport of ["tcp", "udp"] as const) {
    const owner = new Map<number, string>();
    for (const alg of algs) {
      const c = algPorts(a, alg.name);
      if (alg.transport !== transport || !c.enabled) continue;
      for (const p of c.ports) {
        const o = owner.get(p);
        if (o !== undefined)
          return { key: `alg.${alg.name}.ports`, problem: `port ${p} is already watched by alg.${o}` };
        owner.set(p, alg.name);
      }
    }
  }
  return null;
}
