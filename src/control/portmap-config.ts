// The `[portmap]` section of the config file (NAT-PMP and PCP, src/portmap): its schema and how
// it is applied, apart from config.ts so that file stays the list of sections.
import * as v from "valibot";
import type { PortmapConfig } from "../portmap/config.ts";
import { prefixNumbers } from "./config-addresses.ts";
import { ConfigError } from "./config-error.ts";
import { boundedInt } from "./config-values.ts";

const portmapLifetime = boundedInt("seconds", 1, 86_400 * 7, { max: "must be at most a week" });

export const portmapSectionSchema = v.strictObject({
  enabled: v.optional(v.boolean()),
  natpmp: v.optional(v.boolean()),
  pcp: v.optional(v.boolean()),
  min_lifetime: v.optional(portmapLifetime),
  max_lifetime: v.optional(portmapLifetime),
  max_per_host: v.optional(boundedInt("", 1, 65_535)),
  max_mappings: v.optional(boundedInt("", 1, 65_535)),
  require_neighbour: v.optional(v.boolean()),
  allowed_hosts: v.optional(v.array(v.string(), "must be a list of addresses or prefixes")),
  third_party: v.optional(v.boolean()),
});

export type PortmapSection = v.InferOutput<typeof portmapSectionSchema>;

/** Applies a parsed `[portmap]` section of file `src`; errors name their key. */
export function applyPortmapSection(P: PortmapConfig, f: PortmapSection, src: string): void {
  if (f.enabled !== undefined) P.enabled = f.enabled;
  if (f.natpmp !== undefined) P.natpmp = f.natpmp;
  if (f.pcp !== undefined) P.pcp = f.pcp;
  if (f.min_lifetime !== undefined) P.minLifetime = f.min_lifetime;
  if (f.max_lifetime !== undefined) P.maxLifetime = f.max_lifetime;
  if (f.max_per_host !== undefined) P.maxPerHost = f.max_per_host;
  if (f.max_mappings !== undefined) P.maxMappings = f.max_mappings;
  if (f.require_neighbour !== undefined) P.requireNeighbour = f.require_neighbour;
  if (f.allowed_hosts !== undefined)
    P.allowedHosts = f.allowed_hosts.map((h, i) => prefixNumbers(h, `${src}: portmap.allowed_hosts.${i}`));
  if (f.third_party !== undefined) P.thirdParty = f.third_party;
  if (P.minLifetime > P.maxLifetime)
    throw new ConfigError(
      `${src}: portmap.min_lifetime`,
      `${P.minLifetime} s is above portmap.max_lifetime (${P.maxLifetime} s)`,
    );
}
