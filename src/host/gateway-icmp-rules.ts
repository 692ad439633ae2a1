// Interface mode: the rules that hand masq the ICMP errors the gateway's own stack sends about
// packets masq translated. Forwarding what masq wrote back, the kernel reports a problem with a
// packet (fragmentation needed on a WAN with a smaller MTU than the LAN's, host unreachable) to
// its source, the public address: the gateway's own, so without these the error is delivered to
// the gateway itself and the inside host that sent the packet never hears of it (uploads hang,
// tracepath sees nothing). In pool mode the public addresses are routed to the outside TUN
// anyway, errors included.
//
// Only errors: the kernel's route lookup for an ICMP message it sends carries the type and code
// where a TCP/UDP lookup carries the destination port (struct flowi4's uli union: icmpt.type and
// icmpt.code overlay ports.dport), so `dport` selects by type << 8 | code. The gateway's own
// pings to its address and their replies stay with its stack, untouched.
import { GATEWAY_ICMP_RULE_PREF } from "./footprint.ts";
import { type HostStep, ruleStep } from "./steps.ts";

/** The ICMP error types masq translates (RFC 5508 REQ-3), as `dport` ranges of type << 8 | code. */
export const GATEWAY_ICMP_ERROR_RANGES: ReadonlyArray<{ types: string; dport: string }> = [
  { types: "destination unreachable", dport: `${3 << 8}-${(3 << 8) | 0xff}` },
  { types: "time exceeded, parameter problem", dport: `${11 << 8}-${(12 << 8) | 0xff}` },
];

/**
 * Locally generated packets (`iif lo`) that are ICMP errors to the public address go to the
 * outside table (the outside TUN). When masq is gone the table is empty and 'local' takes them
 * as before.
 */
export function gatewayIcmpRuleSteps(opts: {
  publicAddress: string;
  tunOutside: string;
  table: number;
}): HostStep[] {
  return GATEWAY_ICMP_ERROR_RANGES.map(({ types, dport }) =>
    ruleStep(
      `steer the gateway's own ICMP errors (${types}) to ${opts.publicAddress} into ${opts.tunOutside}`,
      [
        "pref",
        String(GATEWAY_ICMP_RULE_PREF),
        "iif",
        "lo",
        "to",
        `${opts.publicAddress}/32`,
        "ipproto",
        "icmp",
        "dport",
        dport,
        "lookup",
        String(opts.table),
      ],
    ),
  );
}
