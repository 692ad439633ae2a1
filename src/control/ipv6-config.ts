// The `[ipv6]` section of the config file: IPv6 simple security (RFC 6092, src/ipv6fw). Its
// schema and how it is applied, apart from config.ts so that file stays the list of sections.
import * as v from "valibot";
import { inPrefix, parseIpv6, parseIpv6Prefix } from "../ipv6fw/addr6.ts";
import {
  IPPROTO_TCP,
  IPPROTO_UDP,
  Ip6Filter,
  type Ip6FilterOptions,
  type Ip6Pinhole,
} from "../ipv6fw/filter.ts";
import { PCP_MIN_LIFETIME } from "../ipv6fw/pcp6.ts";
import { Pcp6Server } from "../ipv6fw/pcp6-server.ts";
import type { PinView } from "../nat/view.ts";
import type { PortmapLog } from "../portmap/service.ts";
import type { RunConfig } from "./config.ts";
import { boundedInt } from "./config-values.ts";

export interface Ipv6Config {
  /** Steer forwarded IPv6 through masq and filter it (RFC 6092). */
  firewall: boolean;
  /** The inside IPv6 prefixes (global): what arrives on the outside interface for them is filtered. */
  insideNetworks: string[];
  maxFlows: number;
  /** Inbound openings: one inside address, protocol and port each. */
  pinholes: Array<{ address: string; proto: "tcp" | "udp"; port: number }>;
  /** PCP MAP (RFC 6887) for pinholes, served on the gateway's inside IPv6 addresses (src/ipv6fw/pcp6.ts). */
  pcp: boolean;
  /** Live PCP pinholes one requesting address may hold. */
  pcpMaxPerHost: number;
  /** Live PCP pinholes of all hosts together. */
  pcpMaxPinholes: number;
  /** Granted lifetimes are clamped to [PCP_MIN_LIFETIME, this] seconds (RFC 6887 §15). */
  pcpMaxLifetime: number;
  /** Honour THIRD_PARTY (a pinhole for another inside address); off by default (RFC 6887 §13.1). */
  pcpThirdParty: boolean;
}

export const DEFAULT_IPV6_MAX_FLOWS = 65_536;

export function defaultIpv6Config(): Ipv6Config {
  return {
    firewall: false,
    insideNetworks: [],
    maxFlows: DEFAULT_IPV6_MAX_FLOWS,
    pinholes: [],
    pcp: false,
    pcpMaxPerHost: 64,
    pcpMaxPinholes: 1024,
    pcpMaxLifetime: 86_400,
    pcpThirdParty: false,
  };
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
  pcp_max_per_host: v.optional(boundedInt("", 1, 65_536)),
  pcp_max_pinholes: v.optional(boundedInt("", 1, 65_536)),
  pcp_max_lifetime: v.optional(boundedInt("seconds", PCP_MIN_LIFETIME, 2 ** 31)),
  pcp_third_party: v.optional(v.boolean()),
});

export type Ipv6Section = v.InferOutput<typeof ipv6SectionSchema>;

/** Applies a parsed `[ipv6]` section; a bad value is returned as its key and problem. */
export function applyIpv6Section(
  c: Ipv6Config,
  f: Ipv6Section,
): { key: string; problem: string } | undefined {
  if (f.firewall !== undefined) c.firewall = f.firewall;
  if (f.pcp !== undefined) c.pcp = f.pcp;
  if (f.pcp_max_per_host !== undefined) c.pcpMaxPerHost = f.pcp_max_per_host;
  if (f.pcp_max_pinholes !== undefined) c.pcpMaxPinholes = f.pcp_max_pinholes;
  if (f.pcp_max_lifetime !== undefined) c.pcpMaxLifetime = f.pcp_max_lifetime;
  if (f.pcp_third_party !== undefined) c.pcpThirdParty = f.pcp_third_party;
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
  if (c.pcp && !c.firewall)
    return { key: "ipv6.pcp", problem: "needs ipv6.firewall = true (PCP opens pinholes in its filter)" };
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

/** The IPv6 PCP server of `[ipv6] pcp = true`, opening pinholes in `filter`; undefined when off. */
export async function startIpv6Pcp(
  c: Ipv6Config,
  inside: readonly string[],
  filter: Pick<Ip6Filter, "openPinhole" | "closePinhole"> | undefined,
  clock: () => number,
  openSocket: (address: string, port: number, device: string) => number,
  log: PortmapLog,
): Promise<Pcp6Server | undefined> {
  if (!c.pcp || filter === undefined) return undefined;
  return Pcp6Server.start({
    filter,
    settings: {
      maxPerHost: c.pcpMaxPerHost,
      maxPinholes: c.pcpMaxPinholes,
      maxLifetime: c.pcpMaxLifetime,
      thirdParty: c.pcpThirdParty,
    },
    insideNetworks: c.insideNetworks,
    nowMs: clock,
    inside,
    openSocket,
    log,
  });
}

/** The IPv6 pinholes as the listings show pinned mappings: the config's, then PCP's. */
export function ipv6PinViews(c: Ipv6Config, pcp: Pcp6Server | undefined): PinView[] {
  const fromConfig: PinView[] = c.firewall
    ? c.pinholes.map((h, i) => ({
        id: i + 1,
        protocol: h.proto,
        inside: { addr: h.address, port: h.port },
        outside: { addr: h.address, port: h.port },
        remote: "*",
        origin: "ipv6-config",
        note: "[[ipv6.pinhole]]",
        expiresInSec: null,
        flows: 0,
      }))
    : [];
  return [...fromConfig, ...(pcp?.service.pins() ?? [])];
}

/** The IPv6 filter of `[ipv6] firewall = true` (RFC 6092); undefined when it is off. */
export function ipv6Filter(cfg: Pick<RunConfig, "ipv6" | "filtering">): Ip6Filter | undefined {
  const opts = ipv6FilterOptions(cfg);
  return opts && new Ip6Filter(opts);
}

/** The options of that filter (each worker builds its own from them); undefined when it is off. */
export function ipv6FilterOptions(cfg: Pick<RunConfig, "ipv6" | "filtering">): Ip6FilterOptions | undefined {
  if (!cfg.ipv6.firewall) return undefined;
  return { capacity: cfg.ipv6.maxFlows, filtering: cfg.filtering, ...ipv6FilterInputs(cfg.ipv6) };
}
