// Interface mode: the rules that hand masq the other IP protocols (GRE, ESP, SCTP …) arriving on
// the outside interface for the public address, the replies of inside hosts' address-only flows
// (src/nat/generic-flow.ts). The public address is the gateway's own, so without them 'local'
// takes these packets. A packet that no inside host's flow claims is written back by masq and
// delivered to the gateway's stack as before; when masq is gone the outside table is empty and
// 'local' takes them as before.
//
// One rule per protocol, not one for "everything but TCP": a rule without `ipproto` also matches
// the route lookup the kernel makes for an ARP request for the address (protocol 0), which then
// no longer resolves to a local route, so the gateway stops answering ARP for its own address
// (seen here: the ISP's neighbour entry failed half a minute into the test).
import { OTHER_PROTOCOLS_RULE_PREF } from "./footprint.ts";
import { type HostStep, ruleStep } from "./steps.ts";

/**
 * The protocols steered to masq in interface mode: tunnels, IPsec, transports. The rules name
 * them by number (no /etc/protocols needed); `ip -j rule` prints the /etc/protocols name
 * (`listed`), which the leftover scan maps back.
 */
export const INTERFACE_MODE_OTHER_PROTOCOLS: ReadonlyArray<{ name: string; number: number; listed: string }> =
  [
    { name: "IPIP", number: 4, listed: "ipencap" },
    { name: "DCCP", number: 33, listed: "dccp" },
    { name: "IPv6-in-IPv4", number: 41, listed: "ipv6" },
    { name: "GRE", number: 47, listed: "gre" },
    { name: "ESP", number: 50, listed: "esp" },
    { name: "L2TPv3", number: 115, listed: "l2tp" },
    { name: "SCTP", number: 132, listed: "sctp" },
    { name: "UDP-Lite", number: 136, listed: "udplite" },
  ];

/** A rule's protocol as `ip -j rule` lists it, as the plan writes it (other protocols by number). */
export function plannedIpproto(listed: string): string {
  const p = INTERFACE_MODE_OTHER_PROTOCOLS.find((x) => x.listed === listed);
  return p === undefined ? listed : String(p.number);
}

export function otherProtocolRuleSteps(opts: {
  outside: string;
  publicAddress: string;
  tunOutside: string;
  table: number;
}): HostStep[] {
  return INTERFACE_MODE_OTHER_PROTOCOLS.map(({ name, number }) =>
    ruleStep(`steer ${name} from ${opts.outside} to ${opts.publicAddress} into ${opts.tunOutside}`, [
      "pref",
      String(OTHER_PROTOCOLS_RULE_PREF),
      "iif",
      opts.outside,
      "to",
      `${opts.publicAddress}/32`,
      "ipproto",
      String(number),
      "lookup",
      String(opts.table),
    ]),
  );
}
