// The `[upnp]` section of the config file (UPnP IGD, src/portmap/upnp): its schema and how it is
// applied, apart from config.ts so that file stays the list of sections.
import * as v from "valibot";
import { parsePermission, UPNP_MAX_LIFETIME_SEC, type UpnpConfig } from "../portmap/upnp/config.ts";
import { boundedInt, seconds } from "./config-values.ts";

export const upnpSectionSchema = v.strictObject({
  enabled: v.optional(v.boolean()),
  version: v.optional(v.picklist([1, 2] as const, "must be 1 or 2 (the IGD version presented)")),
  http_port: v.optional(
    boundedInt(undefined, 0, 65535, { integer: "must be a port number", max: "must be a port 0-65535" }),
  ),
  notify_interval: v.optional(
    v.pipe(seconds, v.minValue(10, "must be at least 10 seconds"), v.maxValue(86_400)),
  ),
  max_lifetime: v.optional(
    boundedInt("seconds", 1, UPNP_MAX_LIFETIME_SEC, {
      max: `must be at most ${UPNP_MAX_LIFETIME_SEC} seconds (a week)`,
    }),
  ),
  allow_low_ports: v.optional(v.boolean()),
  rules: v.optional(
    v.array(v.string(), 'must be a list of rules like "allow 1024-65535 192.168.0.0/24 1024-65535"'),
  ),
});

export type UpnpSection = v.InferOutput<typeof upnpSectionSchema>;

/** Applies a parsed `[upnp]` section; a bad rule is returned as its key and problem. */
export function applyUpnpSection(
  u: UpnpConfig,
  f: UpnpSection,
): { key: string; problem: string } | undefined {
  if (f.enabled !== undefined) u.enabled = f.enabled;
  if (f.version !== undefined) u.version = f.version;
  if (f.http_port !== undefined) u.httpPort = f.http_port;
  if (f.notify_interval !== undefined) u.notifyIntervalSec = f.notify_interval;
  if (f.max_lifetime !== undefined) u.maxLifetimeSec = f.max_lifetime;
  if (f.allow_low_ports !== undefined) u.allowLowPorts = f.allow_low_ports;
  if (f.rules !== undefined) {
    u.rules = [];
    for (const [i, text] of f.rules.entries()) {
      const rule = parsePermission(text);
      if (typeof rule === "string") return { key: `upnp.rules.${i}`, problem: rule };
      u.rules.push(rule);
    }
  }
  return undefined;
}
