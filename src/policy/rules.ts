// The firewall policy: ordered rules, first match wins, evaluated once per new flow (never per
// packet of an existing flow: a flow that was admitted stays admitted). Rules are compiled into
// typed arrays so evaluation is a scan of integers with no allocation.
//
// Addresses are the real endpoints, as the kernel's FORWARD chain sees them after DNAT: for an
// outbound flow the source is the inside host and the destination the remote; for an inbound
// flow (a forward, a port mapping, or a remote admitted by filtering) the source is the remote
// and the destination the inside host and its port (not the public address:port).

import { formatIpv4, prefixMask } from "../packet/addr.ts";

export type RuleDirection = "inbound" | "outbound" | "any";
export type RuleAction = "accept" | "drop" | "reject";
export type RuleProtocol = "tcp" | "udp" | "icmp" | "any";

/** A rule as configured: plain data (validated by control/config). */
export interface FirewallRule {
  /** Shown in `masq stats`; default: the rule in words. */
  name?: string;
  direction: RuleDirection;
  action: RuleAction;
  protocol?: RuleProtocol;
  /** Prefixes as [address, length], the address a 32-bit unsigned int; absent: any. */
  source?: { addr: number; len: number };
  destination?: { addr: number; len: number };
  /** TCP/UDP only. */
  sourcePorts?: { first: number; last: number };
  destinationPorts?: { first: number; last: number };
}

export const DIR_INBOUND = 1;
export const DIR_OUTBOUND = 2;
const DIR_ANY = DIR_INBOUND | DIR_OUTBOUND;

export const ACT_ACCEPT = 0;
export const ACT_DROP = 1;
export const ACT_REJECT = 2;
/** match() result when no rule matches: the default (accept; unsolicited inbound never gets here). */
export const NO_RULE = -1;

const PROTO_NUMBER: Record<RuleProtocol, number> = { tcp: 6, udp: 17, icmp: 1, any: 0 };
const ACTION_CODE: Record<RuleAction, number> = { accept: ACT_ACCEPT, drop: ACT_DROP, reject: ACT_REJECT };
const DIR_CODE: Record<RuleDirection, number> = {
  inbound: DIR_INBOUND,
  outbound: DIR_OUTBOUND,
  any: DIR_ANY,
};

/** The rule in words, for listings: "inbound tcp to 192.168.0.2/32 port 22 drop". */
export function describeRule(r: FirewallRule): string {
  const parts: string[] = [r.direction];
  if (r.protocol && r.protocol !== "any") parts.push(r.protocol);
  if (r.source) parts.push(`from ${formatIpv4(r.source.addr)}/${r.source.len}`);
  if (r.sourcePorts) parts.push(`sport ${portText(r.sourcePorts)}`);
  if (r.destination) parts.push(`to ${formatIpv4(r.destination.addr)}/${r.destination.len}`);
  if (r.destinationPorts) parts.push(`dport ${portText(r.destinationPorts)}`);
  parts.push(r.action);
  return parts.join(" ");
}

function portText(p: { first: number; last: number }): string {
  return p.first === p.last ? String(p.first) : `${p.first}-${p.last}`;
}

export interface RuleHits {
  index: number;
  name: string;
  rule: string;
  action: RuleAction;
  hits: number;
}

export class RuleSet {
  readonly size: number;
  private readonly dir: Uint8Array;
  private readonly proto: Uint8Array;
  readonly action: Uint8Array;
  private readonly srcAddr: Uint32Array;
  private readonly srcMask: Uint32Array;
  private readonly dstAddr: Uint32Array;
  private readonly dstMask: Uint32Array;
  /** [first, last] pairs. */
  private readonly sports: Uint16Array;
  private readonly dports: Uint16Array;
  /** Matches per rule (Float64: counts past 2^32 without wrapping). */
  readonly hits: Float64Array;
  private readonly rules: readonly FirewallRule[];

  constructor(rules: readonly FirewallRule[]) {
    const n = rules.length;
    this.size = n;
    this.rules = rules.map((r) => ({ ...r }));
    this.dir = new Uint8Array(n);
    this.proto = new Uint8Array(n);
    this.action = new Uint8Array(n);
    this.srcAddr = new Uint32Array(n);
    this.srcMask = new Uint32Array(n);
    this.dstAddr = new Uint32Array(n);
    this.dstMask = new Uint32Array(n);
    this.sports = new Uint16Array(2 * n);
    this.dports = new Uint16Array(2 * n);
    this.hits = new Float64Array(n);
    for (const [i, r] of rules.entries()) {
      this.dir[i] = DIR_CODE[r.direction];
      this.proto[i] = PROTO_NUMBER[r.protocol ?? "any"];
      this.action[i] = ACTION_CODE[r.action];
      if (r.source) {
        this.srcMask[i] = prefixMask(r.source.len);
        this.srcAddr[i] = (r.source.addr & this.srcMask[i]) >>> 0;
      }
      if (r.destination) {
        this.dstMask[i] = prefixMask(r.destination.len);
        this.dstAddr[i] = (r.destination.addr & this.dstMask[i]) >>> 0;
      }
      if ((r.sourcePorts || r.destinationPorts) && r.protocol !== "tcp" && r.protocol !== "udp")
        throw new Error(`firewall rule ${i + 1}: ports need protocol tcp or udp`);
      this.sports[2 * i] = r.sourcePorts?.first ?? 0;
      this.sports[2 * i + 1] = r.sourcePorts?.last ?? 65535;
      this.dports[2 * i] = r.destinationPorts?.first ?? 0;
      this.dports[2 * i + 1] = r.destinationPorts?.last ?? 65535;
    }
  }

  /**
   * The first rule matching a new flow (and counts its hit), or NO_RULE. `dir` is DIR_INBOUND or
   * DIR_OUTBOUND; ICMP flows pass 0 for both ports (rules with ports never name ICMP).
   */
  match(dir: number, proto: number, src: number, sport: number, dst: number, dport: number): number {
    const n = this.size;
    for (let i = 0; i < n; i++) {
      if ((this.dir[i] & dir) === 0) continue;
      const p = this.proto[i];
      if (p !== 0 && p !== proto) continue;
      if ((src & this.srcMask[i]) >>> 0 !== this.srcAddr[i]) continue;
      if ((dst & this.dstMask[i]) >>> 0 !== this.dstAddr[i]) continue;
      const s = 2 * i;
      if (sport < this.sports[s] || sport > this.sports[s + 1]) continue;
      if (dport < this.dports[s] || dport > this.dports[s + 1]) continue;
      this.hits[i]++;
      return i;
    }
    return NO_RULE;
  }

  /** Rules with their hit counters, in order (control plane). */
  list(): RuleHits[] {
    return this.rules.map((r, i) => {
      const rule = describeRule(r);
      return { index: i + 1, name: r.name ?? rule, rule, action: r.action, hits: this.hits[i] };
    });
  }
}
