// What addresses a configuration may use where: inside networks, pool (public) addresses,
// forward targets. Pure checks on prefixes, shared by the config file's validation (what the
// file alone tells) and the start-up one (what only the host tells: the outside interface's
// subnet, the interfaces' own addresses). Each returns the problem as text, or undefined.
import { formatIpv4, parseIpv4 } from "../packet/addr.ts";
import type { RunConfig } from "./config.ts";

/** A refusal: the key (or flag) it concerns and the problem. */
export interface KeyProblem {
  key: string;
  problem: string;
}

export interface Prefix {
  /** Network address (host bits clear), 32-bit unsigned. */
  addr: number;
  len: number;
}

export function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** "a.b.c.d/len" or "a.b.c.d" (a /32), host bits cleared; undefined when it is neither. */
export function toPrefix(text: string): Prefix | undefined {
  const [a, l] = text.trim().split("/");
  const addr = parseIpv4(a);
  const len = l === undefined ? 32 : Number(l);
  if (addr === undefined || !Number.isInteger(len) || len < 0 || len > 32) return undefined;
  return { addr: (addr & maskOf(len)) >>> 0, len };
}

export function prefixText(p: Prefix): string {
  return `${formatIpv4(p.addr)}/${p.len}`;
}

export function contains(p: Prefix, addr: number): boolean {
  return (addr & maskOf(p.len)) >>> 0 === p.addr;
}

export function overlaps(a: Prefix, b: Prefix): boolean {
  const len = Math.min(a.len, b.len);
  return (a.addr & maskOf(len)) >>> 0 === (b.addr & maskOf(len)) >>> 0;
}

/** Ranges that are never a host's unicast address (RFC 1122 3.2.1.3, RFC 5771, RFC 919). */
const NOT_UNICAST: ReadonlyArray<{ net: Prefix; what: string }> = [
  { net: { addr: 0, len: 8 }, what: '"this network" (0.0.0.0/8)' },
  { net: { addr: 0x7f000000, len: 8 }, what: "loopback (127.0.0.0/8)" },
  { net: { addr: 0xe0000000, len: 4 }, what: "multicast (224.0.0.0/4)" },
  { net: { addr: 0xffffffff, len: 32 }, what: "the limited broadcast address 255.255.255.255" },
];

/** The special range a prefix falls into (even partly), described, or undefined. */
export function notUnicast(p: Prefix): string | undefined {
  return NOT_UNICAST.find((r) => overlaps(r.net, p))?.what;
}

/**
 * An inside network no NAT should have: the whole or a large part of the Internet (shorter
 * than /8: then every remote host would count as inside), or a range that is not unicast.
 */
export function insideNetworkProblem(p: Prefix): string | undefined {
  if (p.len === 0) return "0.0.0.0/0 is the whole Internet, not an inside network";
  if (p.len < 8)
    return `${prefixText(p)} covers a large part of the Internet (inside networks are /8 or longer)`;
  const special = notUnicast(p);
  if (special) return `${prefixText(p)} overlaps ${special}`;
  return undefined;
}

/** A pool (public) address or prefix that can never be a source address on the Internet. */
export function poolAddressProblem(p: Prefix): string | undefined {
  const special = notUnicast(p);
  return special
    ? `${prefixText(p)} is or overlaps ${special}, not an address to masquerade behind`
    : undefined;
}

/**
 * Where a forward may send its connections: a host on an inside network, neither the network
 * nor the broadcast address of its prefix (RFC 919/922; a /31 or /32 has neither, RFC 3021), and
 * not the gateway itself (a forward to masq's own address would loop).
 */
export function forwardTargetProblem(
  addr: number,
  insideNetworks: readonly Prefix[],
  gatewayAddresses: readonly number[],
): string | undefined {
  const a = formatIpv4(addr);
  if (gatewayAddresses.includes(addr)) return `${a} is the gateway itself, not an inside host`;
  const nets = insideNetworks.filter((n) => contains(n, addr));
  if (nets.length === 0)
    return `${a} is not on an inside network (${insideNetworks.map(prefixText).join(", ")})`;
  for (const n of nets) {
    if (n.len > 30) continue;
    const broadcast = (n.addr | ~maskOf(n.len)) >>> 0;
    if (addr === n.addr) return `${a} is the network address of ${prefixText(n)}, not a host`;
    if (addr === broadcast) return `${a} is the broadcast address of ${prefixText(n)}, not a host`;
  }
  return undefined;
}

/**
 * What the keys say together about addresses and ports (the host's own facts are checked at
 * start, see startProblem): inside networks and pool addresses that cannot be, ports that
 * would capture the gateway's own services, forwards to no host.
 */
export function addressPlanProblem(
  c: RunConfig,
  keys: { portsKey: string; addressesKey: string; insideNetworksKey: string },
): KeyProblem | undefined {
  const inside: Prefix[] = [];
  for (const text of c.insideNetworks) {
    const p = toPrefix(text) as Prefix;
    const problem = insideNetworkProblem(p);
    if (problem) return { key: keys.insideNetworksKey, problem };
    inside.push(p);
  }
  const pool: Prefix[] = [];
  for (const text of c.addresses) {
    const p = toPrefix(text) as Prefix;
    const problem = poolAddressProblem(p);
    if (problem) return { key: keys.addressesKey, problem };
    const lan = inside.find((n) => overlaps(n, p));
    if (lan)
      return {
        key: keys.addressesKey,
        problem: `${text} is on the inside network ${prefixText(lan)} (inside_networks): a public address cannot be on the LAN`,
      };
    pool.push(p);
  }
  if (c.addresses.length === 0 && c.ports.first < 1024 && !c.allowLowPorts)
    return {
      key: keys.portsKey,
      problem: `${c.ports.first}-${c.ports.last} reaches below 1024: in interface mode masq takes these ports on the gateway's own address (ssh on 22 and the like would reach masq instead); choose ports from 1024 up, or set allow_low_ports = true`,
    };
  // With the inside networks given, a forward's target can be checked now; else at start.
  if (inside.length === 0) return undefined;
  return forwardsProblem(
    c,
    inside,
    pool.filter((p) => p.len === 32).map((p) => p.addr),
  );
}

function forwardsProblem(
  c: RunConfig,
  inside: readonly Prefix[],
  gateway: readonly number[],
): KeyProblem | undefined {
  for (const [i, fw] of c.forwards.entries()) {
    const problem = forwardTargetProblem(fw.inAddr, inside, gateway);
    if (problem) return { key: `${c.configFile ?? "config"}: forward.${i}.inside`, problem };
  }
  return undefined;
}

/** What only the running host tells: its interfaces' networks and addresses. */
export interface HostFacts {
  mode: "interface" | "pool";
  /** The inside networks in force (the config's, or the inside interfaces' prefixes). */
  insideNetworks: string[];
  /** The public addresses: the outside interface's (interface mode) or the pool's. */
  publicAddresses: string[];
  /** The outside interface's connected networks. */
  outsideNetworks: string[];
  /** Every address the gateway's inside and outside interfaces hold. */
  gatewayAddresses: string[];
}

/**
 * The start-up half of the address checks, once the host has said what it has: inside networks
 * overlapping the outside subnet or holding a public address, and forwards to the gateway, to
 * no inside host, or to a network or broadcast address.
 */
export function startProblem(c: RunConfig, h: HostFacts): KeyProblem | undefined {
  const src = c.configFile ? `${c.configFile}: ` : "";
  const insideKey =
    c.insideNetworks.length > 0 ? `${src}inside_networks` : `--inside (the inside interfaces' networks)`;
  const inside = h.insideNetworks.map((t) => toPrefix(t) as Prefix);
  for (const n of inside) {
    const problem = insideNetworkProblem(n);
    if (problem) return { key: insideKey, problem };
    const wan = h.outsideNetworks.map((t) => toPrefix(t) as Prefix).find((o) => overlaps(o, n));
    if (wan)
      return {
        key: insideKey,
        problem: `${prefixText(n)} overlaps the outside interface's network ${prefixText(wan)}`,
      };
    const pub = h.publicAddresses.find((a) => contains(n, parseIpv4(a)!));
    if (pub)
      return h.mode === "pool"
        ? {
            key: c.configFile ? `${src}addresses (or --address)` : "--address",
            problem: `${pub} is on the inside network ${prefixText(n)}: a public address cannot be on the LAN`,
          }
        : { key: insideKey, problem: `${prefixText(n)} holds the public address ${pub}` };
  }
  const gateway = [...h.gatewayAddresses, ...h.publicAddresses].map((a) => parseIpv4(a)!);
  return forwardsProblem(c, inside, gateway);
}
