// Interface mode: the policy rules a port forward needs, added and removed at runtime with the
// forward (recorded with the host setup, so exit and crash cleanup remove them too).
import { DEFAULT_TABLES, FORWARD_RULE_PREF, MAX_RULE_PORT, type PortRange } from "./footprint.ts";
import { type HostStep, ruleStep } from "./steps.ts";

/**
 * Interface mode: the rules a forwarded port range needs, added and removed at runtime with the
 * forward. TCP from the outside interface (when masq's own range does not cover it), and, for
 * hairpinning, what the inside hosts send to the public address on those ports.
 */
export function forwardRuleSteps(opts: {
  proto: "tcp" | "udp";
  first: number;
  last: number;
  outside: string;
  inside: string[];
  /** The public address; none (interface mode before its address came): no hairpin rules yet. */
  publicAddress: string | undefined;
  /** masq's own port range (already steered). */
  ports: PortRange;
  tables?: { inside?: number; outside?: number };
  pref?: number;
  /** What the ports are, in the steps' descriptions: "forwarded" (default) or "mapped" (NAT-PMP/PCP). */
  label?: string;
}): HostStep[] {
  const { first, last, proto } = opts;
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || first > last || last > 65535)
    throw new Error(`invalid port range ${first}-${last}`);
  if (last > MAX_RULE_PORT)
    throw new Error(`port ${MAX_RULE_PORT + 1} cannot be matched by an ip rule (iproute2 rejects it)`);
  const ports = first === last ? String(first) : `${first}-${last}`;
  const pref = String(opts.pref ?? FORWARD_RULE_PREF);
  const tin = String(opts.tables?.inside ?? DEFAULT_TABLES.inside);
  const tout = String(opts.tables?.outside ?? DEFAULT_TABLES.outside);
  const label = opts.label ?? "forwarded";
  const steps: HostStep[] = [];
  const own = first >= opts.ports.first && last <= Math.min(opts.ports.last, MAX_RULE_PORT);
  if (proto === "tcp" && !own)
    steps.push(
      ruleStep(`steer ${label} TCP ${ports} from ${opts.outside} into masq`, [
        "pref",
        pref,
        "iif",
        opts.outside,
        "ipproto",
        "tcp",
        "dport",
        ports,
        "lookup",
        tout,
      ]),
    );
  const publicAddress = opts.publicAddress;
  if (publicAddress !== undefined)
    for (const lan of opts.inside)
      steps.push(
        publicAddressRule(
          `steer ${label} ${proto.toUpperCase()} ${ports} from ${lan} to ${publicAddress} into masq`,
          { pref, lan, publicAddress, proto, ports, table: tin },
        ),
      );
  return steps;
}

/**
 * What an inside interface sends to the public address on some ports goes to masq (hairpinning:
 * 'local' would otherwise take it, the public address being the gateway's own).
 */
export function publicAddressRule(
  what: string,
  r: { pref: string; lan: string; publicAddress: string; proto: string; ports: string; table: string },
): HostStep {
  return ruleStep(what, [
    "pref",
    r.pref,
    "iif",
    r.lan,
    "to",
    `${r.publicAddress}/32`,
    "ipproto",
    r.proto,
    "dport",
    r.ports,
    "lookup",
    r.table,
  ]);
}
