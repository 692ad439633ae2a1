// The `[ipv6]` section of the config file: IPv6 simple security (RFC 6092, src/ipv6fw). Its
// schema and how it is applied, apart from config.ts so that file stays the list of sections.
import * as v from "valibot";
import { parseIpv6, parseIpv6Prefix } from "../ipv6fw/addr6.ts";
import { IPPROTO_TCP, IPPROTO_UDP, type Ip6Pinhole } from "../ipv6fw/filter.ts";
import { boundedInt } from "./config-values.ts";

export interface Ipv6Config {
  /** Steer forwarded IPv6 through masq and filter it (RFC 6092). */
  firewall: boolean;
  /** The inside IPv6 prefixes (global): what arrives on the outside interface for them is filtered. */
  insideNetworks: string[];
  maxFlows: number;
  /** Inbound openings: one inside address, protocol and port each. */
  pinholes: Array<{ address: string; proto: "tcp" | "udp"; port: number }>;
}

export const DEFAULT_IPV6_MAX_FLOWS = 65_536;

export function defaultIpv6Config(): Ipv6Config {
  return { firewall: false, insideNetworks: [], maxFlows: DEFAULT_IPV6_MAX_FLOWS, pinholes: [] };
}

const pinholeSchema = v.strictObject({
  address: v.string("must be an inside IPv6 address"),
  protocol: v.picklist(["tcp", "udp"] as const, 'must be "tcp" or "udp"'),
  port: boundedInt(undefined, 1, 65535, { integer: "must be a port number" }),
});

export const ipv6SectionSchema = v.strictObject({
  firewall: v.optional(v.boolean()),
  inside_networks: v.optional(v.array(v.string(), 'must be a list of prefixes like "2001:db8:1::/64"')),
  max_flows: v.optional(boundedInt("", 16, 4_194_304)),
  pinhole: v.optional(v.array(pinholeSchema, "must be an array of tables ([[ipv6.pinhole]])")),
  pcp: v.optional(v.boolean()),
});

export type Ipv6Section = v.InferOutput<typeof ipv6SectionSchema>;

/** Applies a parsed `[ipv6]` section; a bad value is returned as its key and problem. */
export function applyIpv6Section(
  c: Ipv6Config,
  f: Ipv6Section,
): { key: string; problem: string } | undefined {
  if (f.pcp === true)
    return {
      key: "ipv6.pcp",
      problem: "PCP MAP for IPv6 pinholes is not yet supported; use [[ipv6.pinhole]]",
    };
  if (f.firewall !== undefined) c.firewall = f.firewall;
  if (f.max_flows !== undefined) c.maxFlows = f.max_flows;
  if (f.inside_networks !== undefined) {
    for (const [i, text] of f.inside_networks.entries()) {
      const p = parseIpv6Prefix(text);
      if (typeof p === "string") return { key: `ipv6.inside_networks.${i}`, problem: p };
      if ((p.addr[0] & 0xe0) !== 0x20)
        return {
          key: `ipv6.inside_networks.${i}`,
          problem: `${text} is not a global unicast prefix (2000::/3)`,
        };
    }
    c.insideNetworks = [...f.inside_networks];
  }
  if (f.pinhole !== undefined) {
    c.pinholes = [];
    for (const [i, h] of f.pinhole.entries()) {
      if (parseIpv6(h.address) === undefined)
        return {
          key: `ipv6.pinhole.${i}.address`,
          problem: `${JSON.stringify(h.address)} is not an IPv6 address`,
        };
      c.pinholes.push({ address: h.address, proto: h.protocol, port: h.port });
    }
  }
  if (c.firewall && c.insideNetworks.length === 0)
    return {
      key: "ipv6.inside_networks",
      problem: "is needed with ipv6.firewall = true (the inside IPv6 prefixes)",
    };
  for (const [i, h] of c.pinholes.entries()) {
    const a = parseIpv6(h.address) as Uint8Array;
    if (!c.insideNetworks.some((n) => inPrefix(a, parseIpv6Prefix(n) as { addr: Uint8Array; len: number })))
      return { key: `ipv6.pinhole.${i}.address`, problem: `${h.address} is not in ipv6.inside_networks` };
  }
  return undefined;
}

/** The filter's pinholes and inside prefixes for a validated section. */
export function ipv6FilterInputs(c: Ipv6Config): {
  pinholes: Ip6Pinhole[];
  insidePrefixes: Array<{ addr: Uint8Array; len: number }>;
} {
  return {
    pinholes: c.pinholes.map((h) => ({
      address: parseIpv6(h.address) as Uint8Array,
      proto: h.proto === "tcp" ? IPPROTO_TCP : IPPROTO_UDP,
      port: h.port,
    })),
    insidePrefixes: c.insideNetworks.map((n) => parseIpv6Prefix(n) as { addr: Uint8Array; len: number }),
  };
}

function inPrefix(a: Uint8Array, p: { addr: Uint8Array; len: number }): boolean {
  for (let bit = 0; bit < p.len; bit++) {
    const m = 0x80 >> (bit % 8);
    if ((a[bit >> 3] & m) !== (p.addr[bit >> 3] & m)) return false;
  }
  return true;
}
