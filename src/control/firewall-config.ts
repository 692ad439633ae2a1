// The `[[firewall.rule]]` tables of the config file (src/policy/rules.ts): their schema and the
// rules they make, apart from config.ts so that file stays the list of sections.
import * as v from "valibot";
import type { FirewallRule } from "../policy/rules.ts";
import { prefixNumbers } from "./config-addresses.ts";
import { ConfigError } from "./config-error.ts";

const portsValue = v.union([v.number(), v.string()], 'must be a port or a range like "1000-2000"');
const RULE_DIRECTIONS = ["inbound", "outbound", "any"] as const;
const RULE_ACTIONS = ["accept", "drop", "reject"] as const;
const RULE_PROTOCOLS = ["tcp", "udp", "icmp", "any"] as const;
const ruleSchema = v.strictObject({
  name: v.optional(v.string()),
  direction: v.picklist(RULE_DIRECTIONS, `must be one of ${RULE_DIRECTIONS.join(", ")}`),
  action: v.picklist(RULE_ACTIONS, `must be one of ${RULE_ACTIONS.join(", ")}`),
  protocol: v.optional(v.picklist(RULE_PROTOCOLS, `must be one of ${RULE_PROTOCOLS.join(", ")}`)),
  source: v.optional(v.string()),
  destination: v.optional(v.string()),
  source_ports: v.optional(portsValue),
  destination_ports: v.optional(portsValue),
});

export const firewallSectionSchema = v.strictObject({
  rule: v.optional(v.array(ruleSchema, "must be an array of tables ([[firewall.rule]])")),
});

export type FirewallSection = v.InferOutput<typeof firewallSectionSchema>;

/** The rules of parsed `[[firewall.rule]]` tables, in order; errors name their key in file `src`. */
export function firewallRules(rules: NonNullable<FirewallSection["rule"]>, src: string): FirewallRule[] {
  return rules.map((r, i) => firewallRule(r, `${src}: firewall.rule.${i}`));
}

function firewallRule(r: v.InferOutput<typeof ruleSchema>, where: string): FirewallRule {
  const rule: FirewallRule = { direction: r.direction, action: r.action };
  if (r.name !== undefined) rule.name = r.name;
  if (r.protocol !== undefined) rule.protocol = r.protocol;
  const prefix = (text: string, key: string) => prefixNumbers(text, `${where}.${key}`);
  if (r.source !== undefined) rule.source = prefix(r.source, "source");
  if (r.destination !== undefined) rule.destination = prefix(r.destination, "destination");
  for (const [key, value] of [
    ["source_ports", r.source_ports],
    ["destination_ports", r.destination_ports],
  ] as const) {
    if (value === undefined) continue;
    if (r.protocol !== "tcp" && r.protocol !== "udp")
      throw new ConfigError(`${where}.${key}`, 'ports need protocol = "tcp" or "udp"');
    const range = ruleRange(String(value), `${where}.${key}`);
    if (key === "source_ports") rule.sourcePorts = range;
    else rule.destinationPorts = range;
  }
  return rule;
}

/** "22" or "1000-2000" (any size, unlike masq's own port range). */
function ruleRange(text: string, where: string): { first: number; last: number } {
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text);
  const first = Number(m?.[1]);
  const last = m?.[2] === undefined ? first : Number(m[2]);
  if (!m || first > last || last > 65535)
    throw new ConfigError(where, `${JSON.stringify(text)} is not a port or a range like 1000-2000 (0-65535)`);
  return { first, last };
}
