// What marks an object on the host as masq's: its routing tables, the preferences of its policy
// rules and the metric of its fallback routes. The plans use them to build the setup; the
// leftover scan (leftovers.ts) uses them to recognise that setup when its record is lost.
import { DEFAULT_INTERFACE_PORTS } from "../nat/config.ts";

export interface PortRange {
  first: number;
  last: number;
}

export interface RoutingTables {
  /** Where inside traffic goes: the inside TUN, else `unreachable`. */
  inside: number;
  /** Interface mode: what masq owns of the outside traffic (its ports, UDP, ICMP): the outside TUN. */
  outside: number;
  /** Forgeries from the outside (inside sources or destinations): the outside TUN, else `blackhole`. */
  guard: number;
}

export interface RulePrefs {
  /** iif <wan> from|to <inside network> lookup <guard>: before 'local', so nothing forged is delivered. */
  guard: number;
  /** Interface mode: iif <wan> tcp dport A-B / udp / icmp lookup <outside table>. */
  tcp: number;
  udp: number;
  icmp: number;
  /** Where the 'local' rule moves to (from 0), so the rules above can come before it. */
  local: number;
  /** iif <lan> lookup <inside table> (after 'local', so traffic to the gateway stays local). */
  inside: number;
}

export const DEFAULT_TABLES: RoutingTables = { inside: 100, outside: 101, guard: 102 };
export const DEFAULT_PREFS: RulePrefs = { guard: 90, tcp: 110, udp: 111, icmp: 112, local: 200, inside: 300 };
/** Interface mode: pref of the rules that steer forwarded ports (before 'local', like masq's own). */
export const FORWARD_RULE_PREF = 113;
/** Interface mode: pref of the rules for hairpinned traffic to masq's own ports. */
export const HAIRPIN_RULE_PREF = 114;
/**
 * Interface mode: pref of the rules that steer the ICMP errors the gateway's own stack sends to
 * the public address (about packets masq translated) into the outside TUN, before 'local'.
 */
export const GATEWAY_ICMP_RULE_PREF = 115;
/**
 * Interface mode: pref of the rules that steer the other IP protocols (GRE, ESP …) to the public
 * address into masq (host/other-protocol-rules.ts).
 */
export const OTHER_PROTOCOLS_RULE_PREF = 116;
/** Where versions before the guard rules put pool mode's inside rule (still recognised as masq's). */
export const LEGACY_POOL_PREF = 100;

/**
 * The metric of masq's fallback routes (`unreachable`/`blackhole`, behind the TUN routes): the
 * kernel removes a TUN's routes with the TUN, so when masq dies these are what is left, and the
 * host fails closed. Distinctive, so the leftover scan knows those in the main table as masq's.
 */
export const FALLBACK_METRIC = 4242424242;

/** Interface mode's range (its rules steer it); pool mode owns every port and needs no port rules. */
export const DEFAULT_PORT_RANGE: PortRange = DEFAULT_INTERFACE_PORTS;
/** iproute2 6.1 rejects 65535 in `dport` (as a bound and alone), so rules stop one short. */
export const MAX_RULE_PORT = 65534;

/** Every rule pref masq uses (with the default prefs). */
export function masqRulePrefs(prefs: RulePrefs = DEFAULT_PREFS): number[] {
  const { guard, tcp, udp, icmp, inside } = prefs;
  return [
    guard,
    tcp,
    udp,
    icmp,
    FORWARD_RULE_PREF,
    HAIRPIN_RULE_PREF,
    GATEWAY_ICMP_RULE_PREF,
    OTHER_PROTOCOLS_RULE_PREF,
    inside,
    LEGACY_POOL_PREF,
  ];
}
