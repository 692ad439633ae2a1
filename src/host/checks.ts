// Pre-flight checks for `masq run`: fail early with a message that names the problem, before
// any route or rule has been touched.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MasqError } from "../errors/masq-error.ts";
import { formatIpv4, parseIpv4, prefixMask } from "../packet/addr.ts";
import { type ExecOptions, exec, run } from "./exec.ts";
import type { PortRange } from "./plan.ts";

/** Where a check looks: the current network namespace, or a named one (tests, `masq lab`). */
export interface WhereOptions {
  netns?: string;
  /**
   * The interfaces as interfaceSnapshot read them: the checks answer from it instead of running
   * `ip` once each (a start's checks took ~35 ms of a restart's gap that way).
   */
  snapshot?: InterfaceSnapshot;
}

/** Every interface of a namespace with its addresses, by name, as read at one moment. */
export type InterfaceSnapshot = ReadonlyMap<string, IpLink>;

const CAP_NET_ADMIN = 12;

/**
 * masq needs CAP_NET_ADMIN for the TUN, routes, rules and sysctls. Root has it; a non-root
 * process granted the capability (setcap, systemd AmbientCapabilities) is accepted too.
 */
export function assertRoot(): void {
  if (process.getuid?.() === 0) return;
  if (hasCapability(CAP_NET_ADMIN)) return;
  throw new MasqError(
    "MASQ_ERR_NOT_ROOT",
    "masq must run as root (or with CAP_NET_ADMIN) to create its TUN device and install routes, rules and sysctls",
  );
}

/** Whether the effective capability set of this process holds capability number `cap`. */
function hasCapability(cap: number): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
    return m !== null && ((BigInt(`0x${m[1]}`) >> BigInt(cap)) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** One entry of `ip -j link show` / `ip -j addr show`, the fields we use. */
export interface IpLink {
  ifindex: number;
  ifname: string;
  mtu: number;
  flags?: string[];
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}

/** `ip -j addr show` of every interface at once (the links' fields are in it too). */
export async function interfaceSnapshot(where: WhereOptions = {}): Promise<InterfaceSnapshot> {
  const r = await exec(["ip", "-j", "addr", "show"], execOpts(where));
  if (r.code !== 0)
    throw new Error(`could not list interfaces: ${r.stderr.trim() || `ip exited with ${r.code}`}`);
  const links = JSON.parse(r.stdout || "[]") as Array<IpLink & { altnames?: string[] }>;
  // `ip … dev NAME` takes an alternative name too (`ip link property add altname`).
  return new Map(links.flatMap((l) => [l.ifname, ...(l.altnames ?? [])].map((n) => [n, l] as const)));
}

async function showLink(
  name: string,
  where: WhereOptions,
  what: "link" | "addr",
): Promise<IpLink | undefined> {
  if (where.snapshot) return where.snapshot.get(name);
  const r = await exec(["ip", "-j", what, "show", "dev", name], execOpts(where));
  if (r.code !== 0) {
    // iproute2 says `Device "X" does not exist.`; anything else is a real failure.
    if (/does not exist|Cannot find device/i.test(r.stderr)) return undefined;
    throw new Error(`could not inspect interface ${name}: ${r.stderr.trim() || `ip exited with ${r.code}`}`);
  }
  const parsed = JSON.parse(r.stdout || "[]") as IpLink[];
  return parsed[0];
}

function execOpts(where: WhereOptions): ExecOptions {
  return where.netns ? { netns: where.netns } : {};
}

export async function interfaceExists(name: string, where: WhereOptions = {}): Promise<boolean> {
  return (await showLink(name, where, "link")) !== undefined;
}

/**
 * Throw unless the interface exists; `role` makes the message say which one is missing
 * (e.g. "inside interface lan9 does not exist").
 */
export async function assertInterface(name: string, role: string, where: WhereOptions = {}): Promise<void> {
  if (!(await interfaceExists(name, where))) {
    throw new MasqError(
      "MASQ_ERR_INTERFACE_MISSING",
      `${role} interface ${name} does not exist${where.netns ? ` in namespace ${where.netns}` : ""}`,
    );
  }
}

/** The first IPv4 address of an interface, or undefined if it has none. Throws if it is missing. */
export async function interfaceAddress(name: string, where: WhereOptions = {}): Promise<string | undefined> {
  const link = await showLink(name, where, "addr");
  if (!link) throw new MasqError("MASQ_ERR_INTERFACE_MISSING", `interface ${name} does not exist`);
  return link.addr_info?.find((a) => a.family === "inet")?.local;
}

/** The kernel's interface index, or undefined if the interface does not exist. */
export async function interfaceIndex(name: string, where: WhereOptions = {}): Promise<number | undefined> {
  return (await showLink(name, where, "link"))?.ifindex;
}

/** Every interface of the current or a named namespace: name → index. */
export async function interfaceIndexes(where: WhereOptions = {}): Promise<Map<string, number>> {
  const r = await exec(["ip", "-j", "link", "show"], execOpts(where));
  if (r.code !== 0)
    throw new Error(`could not list interfaces: ${r.stderr.trim() || `ip exited with ${r.code}`}`);
  return new Map((JSON.parse(r.stdout || "[]") as IpLink[]).map((l) => [l.ifname, l.ifindex]));
}

/**
 * Whether /sys/class/net shows this network namespace's devices. sysfs shows those of the
 * namespace that mounted it: a process entered into a namespace without remounting /sys (nsenter
 * rather than `ip netns exec`) sees another namespace's devices there.
 */
export async function sysfsIsOurs(sysClassNet = "/sys/class/net"): Promise<boolean> {
  const ours = await interfaceIndexes();
  const names = readdirSync(sysClassNet);
  if (names.length !== ours.size) return false;
  return names.every((n) => {
    try {
      return Number(readFileSync(join(sysClassNet, n, "ifindex"), "utf8")) === ours.get(n);
    } catch {
      return false;
    }
  });
}

/** The interface MTU, or undefined if the interface does not exist. */
export async function interfaceMtu(name: string, where: WhereOptions = {}): Promise<number | undefined> {
  return (await showLink(name, where, "link"))?.mtu;
}

/** Parse the text of /proc/sys/net/ipv4/ip_local_port_range ("32768\t60999\n"). */
export function parsePortRange(text: string): PortRange {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  if (!m) throw new Error(`cannot parse port range ${JSON.stringify(text)}`);
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first > last || last > 65535) throw new Error(`invalid port range ${first} ${last}`);
  return { first, last };
}

/** The kernel's ephemeral (local) port range of the current or a named namespace. */
export async function ephemeralPortRange(where: WhereOptions = {}): Promise<PortRange> {
  const path = "/proc/sys/net/ipv4/ip_local_port_range";
  // /proc/sys/net shows the namespace of the reading process, so a named namespace needs a
  // helper process inside it.
  const text = where.netns ? await run(["cat", path], execOpts(where)) : readFileSync(path, "utf8");
  return parsePortRange(text);
}

/**
 * Pure: the error message when masq's port range shares ports with the kernel's ephemeral
 * range, or undefined when they are disjoint. In interface mode masq and the kernel share one
 * address, so a shared port would send replies for the kernel's own connections into masq.
 */
export function ephemeralOverlapMessage(range: PortRange, ephemeral: PortRange): string | undefined {
  if (range.last < ephemeral.first || range.first > ephemeral.last) return undefined;
  const advice =
    ephemeral.last < 65535 ? `choose ports above ${ephemeral.last}` : `choose ports below ${ephemeral.first}`;
  return (
    `port range ${range.first}-${range.last} overlaps the kernel's ephemeral range ` +
    `net.ipv4.ip_local_port_range = ${ephemeral.first} ${ephemeral.last}; ${advice} or change the sysctl`
  );
}

/** Throw if `range` overlaps the kernel's ephemeral range (read now unless given). */
export async function assertNoEphemeralOverlap(
  range: PortRange,
  where: WhereOptions & { ephemeral?: PortRange } = {},
): Promise<void> {
  const msg = ephemeralOverlapMessage(range, where.ephemeral ?? (await ephemeralPortRange(where)));
  if (msg) throw new MasqError("MASQ_ERR_PORT_RANGE_OVERLAP", msg);
}

/** Every IPv4 address an interface holds (none: an empty list). Throws if it is missing. */
export async function interfaceIpv4Addresses(name: string, where: WhereOptions = {}): Promise<string[]> {
  const link = await showLink(name, where, "addr");
  if (!link) throw new MasqError("MASQ_ERR_INTERFACE_MISSING", `interface ${name} does not exist`);
  return (link.addr_info ?? []).filter((a) => a.family === "inet").map((a) => a.local);
}

/** The IPv4 networks of an interface as "a.b.c.d/len" with host bits cleared (its connected prefixes). */
export async function interfacePrefixes(name: string, where: WhereOptions = {}): Promise<string[]> {
  const link = await showLink(name, where, "addr");
  if (!link) throw new MasqError("MASQ_ERR_INTERFACE_MISSING", `interface ${name} does not exist`);
  return (link.addr_info ?? [])
    .filter((a) => a.family === "inet")
    .map((a) => {
      const n = ((parseIpv4(a.local) ?? 0) & prefixMask(a.prefixlen)) >>> 0;
      return `${formatIpv4(n)}/${a.prefixlen}`;
    });
}
