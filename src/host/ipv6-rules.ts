// IPv6 simple security (`[ipv6] firewall = true`): the ip -6 rules and routes that steer forwarded
// IPv6 through masq's TUNs, where src/ipv6fw filters it (RFC 6092) and writes it back unchanged.
// Outbound: what arrives on an inside interface for a global unicast destination (2000::/3) goes
// to the inside TUN. Inbound: what arrives on the outside interface for an inside prefix goes to
// the outside TUN. What masq writes back arrives from a TUN, which no rule names, so the main
// table forwards it.
//
// Neighbour discovery is left alone: it is link-local (fe80::/10 sources, link-local and
// multicast destinations), which neither rule selects, and its unicast form to the gateway's own
// addresses is taken by 'local' (pref 0, which IPv6 keeps) before these rules. Fail closed as for
// IPv4: the TUN routes vanish with the TUNs and leave `unreachable` (inside) and `blackhole`
// (outside) behind, so no IPv6 is forwarded unfiltered while masq is down.
import { FALLBACK_METRIC } from "./footprint.ts";
import { cmdStep, type HostStep, sysctlKey, sysctlStep } from "./steps.ts";

/** Routing tables of the IPv6 steering. */
export const IPV6_TABLES = { inside: 106, outside: 107 } as const;
/** Rule prefs (after 'local' at 0, so traffic to the gateway's own addresses stays local). */
export const IPV6_PREFS = { inside: 310, outside: 311 } as const;
/** Global unicast: where forwarded traffic from the inside goes (never link-local or multicast). */
export const GLOBAL_UNICAST = "2000::/3";

export interface Ipv6SteeringOptions {
  tun: string;
  tunOutside: string;
  inside: readonly string[];
  outside: string;
  /** The inside IPv6 prefixes ("2001:db8:1::/64"). */
  insideNetworks: readonly string[];
}

function ip6(what: string, verb: "route" | "rule", spec: string[]): HostStep {
  return cmdStep(what, ["ip", "-6", verb, "add", ...spec], ["ip", "-6", verb, "del", ...spec]);
}

export function ipv6SteeringSteps(o: Ipv6SteeringOptions): HostStep[] {
  const tin = String(IPV6_TABLES.inside);
  const tout = String(IPV6_TABLES.outside);
  const metric = String(FALLBACK_METRIC);
  const steps: HostStep[] = [sysctlStep(sysctlKey("net", "ipv6", "conf", "all", "forwarding"), "1")];
  steps.push(
    ip6(`IPv6: unreachable default in table ${tin} behind masq (inside traffic fails fast)`, "route", [
      "unreachable",
      "default",
      "metric",
      metric,
      "table",
      tin,
    ]),
    ip6(`IPv6: blackhole default in table ${tout} behind masq (nothing unfiltered comes in)`, "route", [
      "blackhole",
      "default",
      "metric",
      metric,
      "table",
      tout,
    ]),
    ip6(`IPv6: default route via ${o.tun} in table ${tin}`, "route", ["default", "dev", o.tun, "table", tin]),
    ip6(`IPv6: default route via ${o.tunOutside} in table ${tout}`, "route", [
      "default",
      "dev",
      o.tunOutside,
      "table",
      tout,
    ]),
  );
  for (const net of o.insideNetworks)
    steps.push(
      ip6(`IPv6: steer ${o.outside}'s packets to ${net} into ${o.tunOutside} (RFC 6092 filter)`, "rule", [
        "pref",
        String(IPV6_PREFS.outside),
        "iif",
        o.outside,
        "to",
        net,
        "lookup",
        tout,
      ]),
    );
  for (const lan of o.inside)
    steps.push(
      ip6(`IPv6: steer forwarded traffic from ${lan} into ${o.tun} (RFC 6092 filter)`, "rule", [
        "pref",
        String(IPV6_PREFS.inside),
        "iif",
        lan,
        "to",
        GLOBAL_UNICAST,
        "lookup",
        tin,
      ]),
    );
  return steps;
}
