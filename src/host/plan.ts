// The OS setup around masq's two TUN devices, as data: an ordered list of steps, each with the
// argv that applies it and the argv that undoes it. Pure (no I/O), so it is unit-tested and
// printed by `masq run --dry-run` (control/host-plan.ts). The recipe is the one in docs/design.md, "Routing recipe", with one TUN per arrival
// side: the kernel hands masq what arrived on the inside interfaces through the inside TUN and
// what arrived on the outside interface through the outside TUN, and the side, not the source
// address, tells the engine inside from outside.
//
// Order matters twice: steps are applied in order and undone in reverse, so the links are up
// before routes use them, the fallback routes are in place before the TUN routes they back, the
// routes exist before rules point at their tables, and traffic is only steered into the TUNs
// (rules) once everything it needs is in place. On the way out the rules go first, so no packet
// is sent to a TUN that is about to vanish, and the fallbacks go last.
//
// Fail closed: the kernel removes a TUN's routes with the TUN, so when masq dies (kill -9) its
// rules stay and point at tables holding only the fallbacks: inside traffic meets `unreachable`
// (hosts fail fast) instead of falling through to the main table and leaving untranslated, and
// forgeries from the outside meet `blackhole`.

import {
  DEFAULT_PORT_RANGE,
  DEFAULT_PREFS,
  DEFAULT_TABLES,
  FALLBACK_METRIC,
  HAIRPIN_RULE_PREF,
  MAX_RULE_PORT,
  type PortRange,
  type RoutingTables,
  type RulePrefs,
} from "./footprint.ts";
import { publicAddressRule } from "./forward-rules.ts";
import { gatewayIcmpRuleSteps } from "./gateway-icmp-rules.ts";
import { expandPrefix, parsePrefix } from "./ipv4.ts";
import { ipv6SteeringSteps } from "./ipv6-rules.ts";
import { otherProtocolRuleSteps } from "./other-protocol-rules.ts";
import { type RpFilterState, rpFilterSteps } from "./rp-filter.ts";
import { cmdStep, type HostStep, PRIOR, routeStep, ruleStep, sysctlKey, sysctlStep } from "./steps.ts";

export * from "./footprint.ts";
export { forwardRuleSteps } from "./forward-rules.ts";
export * from "./ipv4.ts";
export * from "./rp-filter.ts";
export * from "./steps.ts";

export interface HostSetupOptions {
  mode: "pool" | "interface";
  /** The inside TUN: what arrives on the inside interfaces is steered into it. */
  tun: string;
  /** The outside TUN: what masq takes of the traffic arriving on the outside interface. */
  tunOutside: string;
  /** Inside (LAN) interfaces: their traffic is steered into the inside TUN. */
  inside: string[];
  /** The outside (WAN) interface: proxy ARP (pool mode) and steering of replies and forgeries. */
  outside: string;
  /**
   * The inside networks. What arrives on the outside interface from or to one of them is a
   * forgery: it is steered into the outside TUN, where the engine drops and counts it.
   */
  insideNetworks: string[];
  /** TUN MTU (default 1500). */
  mtu?: number;
  /** TUN transmit queue length (packets waiting for masq); unchanged when absent. */
  txQueueLen?: number;
  /**
   * Receive Packet Steering on the TUNs' receive queues: the CPUs (a sysfs hex mask, see
   * cpuMask) among which the kernel spreads the work on the packets masq writes. Unchanged when
   * absent.
   */
  rpsCpus?: string;
  /** Turn IPv6 off on the TUNs (when the kernel has IPv6). Default false. */
  disableTunIpv6?: boolean;
  /** IPv6 simple security: steer forwarded IPv6 for these inside prefixes through the TUNs. */
  ipv6InsideNetworks?: string[];
  /** Create the TUNs with `ip tuntap` (tests; normally the native addon creates them). Default false. */
  createTun?: boolean;
  /** The rp_filter settings before masq (readRpFilterState), kept in effect on the other interfaces. */
  rpFilter?: RpFilterState;
  /** Pool mode: the public addresses ("198.51.100.100") or prefixes ("198.51.100.96/29"). */
  pool?: string[];
  /** Pool mode: answer ARP for the pool addresses on the outside interface (default true). */
  proxyArp?: boolean;
  /** Interface mode: TCP ports masq owns (default 61000-65534). */
  ports?: PortRange;
  /**
   * Interface mode: the outside interface's address. When given, what inside hosts send to it on
   * masq's ports goes to masq too (before 'local'): the replies of hairpinned connections; and so
   * do the ICMP errors the gateway's own stack sends to it about packets masq translated.
   */
  publicAddress?: string;
  /** Routing tables (defaults: inside 100, outside 101, guard 102). Pool mode has no outside table. */
  tables?: Partial<RoutingTables>;
  /** Rule priorities (defaults as in docs/design.md). */
  prefs?: Partial<RulePrefs>;
}

export const DEFAULT_MTU = 1500;
/** Pool prefixes larger than this are not expanded into proxy ARP entries. */
export const MAX_PROXY_ENTRIES = 256;

/** Plan the setup for `opts`; throws on invalid options (before anything is touched). */
export function planHostSetup(opts: HostSetupOptions): HostStep[] {
  validate(opts);
  const tables = { ...DEFAULT_TABLES, ...opts.tables };
  const prefs = { ...DEFAULT_PREFS, ...opts.prefs };
  const steps: HostStep[] = [];
  for (const tun of [opts.tun, opts.tunOutside]) steps.push(...tunSteps(tun, opts));
  steps.push(...rpFilterSteps([opts.tun, opts.tunOutside], opts.rpFilter));
  steps.push(sysctlStep(sysctlKey("net", "ipv4", "ip_forward"), "1"));

  const pool = opts.mode === "pool" ? (opts.pool ?? []).map(parsePrefix) : [];
  steps.push(
    fallbackStep(
      "unreachable",
      "default",
      tables.inside,
      "inside traffic fails fast when masq is gone, never leaves untranslated",
    ),
  );
  steps.push(fallbackStep("blackhole", "default", tables.guard, "forgeries are dropped when masq is gone"));
  for (const p of pool)
    steps.push(
      fallbackStep("blackhole", `${p.addr}/${p.len}`, undefined, "no loop to the ISP when masq is gone"),
    );

  // Replies to the pool addresses: no interface holds them, so the main table sends them to masq.
  for (const p of pool) {
    const dst = `${p.addr}/${p.len}`;
    steps.push(routeStep(`route ${dst} to ${opts.tunOutside}`, [dst, "dev", opts.tunOutside]));
  }
  steps.push(defaultRouteStep(opts.tun, tables.inside));
  if (opts.mode === "interface") steps.push(defaultRouteStep(opts.tunOutside, tables.outside));
  steps.push(defaultRouteStep(opts.tunOutside, tables.guard));

  steps.push(...moveLocalSteps(prefs.local));
  steps.push(...guardSteps(opts, tables.guard, prefs.guard));
  if (opts.mode === "interface") steps.push(...interfaceSteps(opts, tables, prefs));
  // Rules last: only now may inside traffic be steered into the TUN.
  for (const lan of opts.inside)
    steps.push(
      ruleStep(`steer traffic from ${lan} into ${opts.tun}`, [
        "pref",
        String(prefs.inside),
        "iif",
        lan,
        "lookup",
        String(tables.inside),
      ]),
    );
  if (opts.ipv6InsideNetworks !== undefined && opts.ipv6InsideNetworks.length > 0)
    steps.push(...ipv6SteeringSteps({ ...opts, insideNetworks: opts.ipv6InsideNetworks }));
  if (opts.mode === "pool" && (opts.proxyArp ?? true)) {
    for (const p of pool) {
      for (const addr of expandPrefix(p)) {
        steps.push(
          cmdStep(
            `answer ARP for ${addr} on ${opts.outside}`,
            ["ip", "neigh", "add", "proxy", addr, "dev", opts.outside],
            ["ip", "neigh", "del", "proxy", addr, "dev", opts.outside],
          ),
        );
      }
    }
  }
  return steps;
}

/** One TUN's own setup: MTU, queue, RPS, IPv6 off, up, accept_local. */
function tunSteps(tun: string, opts: HostSetupOptions): HostStep[] {
  const steps: HostStep[] = [];
  if (opts.createTun)
    steps.push(
      cmdStep(
        `create TUN ${tun}`,
        ["ip", "tuntap", "add", "dev", tun, "mode", "tun"],
        ["ip", "tuntap", "del", "dev", tun, "mode", "tun"],
      ),
    );
  const mtu = opts.mtu ?? DEFAULT_MTU;
  steps.push({
    what: `set ${tun} MTU ${mtu}`,
    apply: ["ip", "link", "set", "dev", tun, "mtu", String(mtu)],
    undo: ["ip", "link", "set", "dev", tun, "mtu", PRIOR],
    prior: { kind: "mtu", dev: tun },
  });
  if (opts.txQueueLen !== undefined)
    steps.push({
      // The queue where the kernel holds packets until masq reads them: a burst longer than it
      // is dropped (tun's default is 500). The device is masq's own, so there is nothing to undo.
      what: `set ${tun} txqueuelen ${opts.txQueueLen}`,
      apply: ["ip", "link", "set", "dev", tun, "txqueuelen", String(opts.txQueueLen)],
      undo: [],
    });
  if (opts.rpsCpus !== undefined) {
    // A TUN write carries out, in the writer's context, most of the kernel's work on a forwarded
    // packet: routing, the outside device's transmit and, on a local veth, the receiver's protocol
    // processing. masq writes from one thread, so without RPS that work is capped at one CPU; with
    // it the kernel hands each flow (by hash) to a CPU of the mask. Also masq's own device: gone
    // with it, nothing to undo.
    const file = `/sys/class/net/${tun}/queues/rx-0/rps_cpus`;
    steps.push({
      what: `steer ${tun}'s received packets to CPUs ${opts.rpsCpus} (RPS)`,
      apply: ["sh", "-c", `echo ${opts.rpsCpus} > ${file}`],
      undo: [],
    });
  }
  if (opts.disableTunIpv6 && !(opts.ipv6InsideNetworks && opts.ipv6InsideNetworks.length > 0))
    // masq translates IPv4: without this the kernel's own IPv6 chatter (router and multicast
    // listener solicitations) reaches masq, to be dropped as packets of the wrong version.
    steps.push(sysctlStep(sysctlKey("net", "ipv6", "conf", tun, "disable_ipv6"), "1"));
  steps.push({
    what: `bring ${tun} up`,
    apply: ["ip", "link", "set", "dev", tun, "up"],
    undo: ["ip", "link", "set", "dev", tun, PRIOR],
    prior: { kind: "link-state", dev: tun },
  });
  // Without accept_local the kernel drops packets from the TUN whose source is one of its own
  // addresses (ICMP errors the gateway itself sends come back that way: traceroute shows '*').
  steps.push(sysctlStep(sysctlKey("net", "ipv4", "conf", tun, "accept_local"), "1"));
  return steps;
}

/**
 * Move 'local' from 0 to `pref` so masq's rules can come before it (forgeries must not be
 * delivered to the gateway's own stack; in interface mode, replies to masq's ports carry the
 * gateway's own address). Add the new rule first and, on undo, restore pref 0 before deleting
 * it: at no moment is there no 'local' rule, which would break every local delivery.
 */
function moveLocalSteps(pref: number): HostStep[] {
  return [
    cmdStep(
      `add 'local' rule at pref ${pref}`,
      ["ip", "rule", "add", "pref", String(pref), "lookup", "local"],
      ["ip", "rule", "del", "pref", String(pref), "lookup", "local"],
    ),
    cmdStep(
      "remove 'local' rule at pref 0",
      ["ip", "rule", "del", "pref", "0", "lookup", "local"],
      ["ip", "rule", "add", "pref", "0", "lookup", "local"],
    ),
  ];
}

/**
 * What arrives on the outside interface from an inside source or for an inside destination goes
 * to masq, which drops and counts it (the engine knows it arrived outside): a forged inside
 * source must open no mapping and reach no local service, and nothing from the Internet may be
 * routed straight to an inside host. Not left to rp_filter, which the host may have off.
 */
function guardSteps(opts: HostSetupOptions, table: number, pref: number): HostStep[] {
  const steps: HostStep[] = [];
  for (const net of opts.insideNetworks.map(parsePrefix)) {
    const prefix = `${net.addr}/${net.len}`;
    for (const dir of ["from", "to"] as const)
      steps.push(
        ruleStep(
          `steer ${opts.outside}'s packets ${dir} the inside network ${prefix} into ${opts.tunOutside} (forgeries)`,
          ["pref", String(pref), "iif", opts.outside, dir, prefix, "lookup", String(table)],
        ),
      );
  }
  return steps;
}

function interfaceSteps(opts: HostSetupOptions, tables: RoutingTables, prefs: RulePrefs): HostStep[] {
  const { tunOutside, outside: wan } = opts;
  const tout = String(tables.outside);
  const range = opts.ports ?? DEFAULT_PORT_RANGE;
  const last = Math.min(range.last, MAX_RULE_PORT);
  const steps: HostStep[] = [];
  const clamped =
    last < range.last ? ` (${last + 1}-${range.last} stay with the kernel: iproute2 rejects 65535)` : "";
  steps.push(
    ruleStep(`steer TCP to ports ${range.first}-${last} from ${wan} into ${tunOutside}${clamped}`, [
      "pref",
      String(prefs.tcp),
      "iif",
      wan,
      "ipproto",
      "tcp",
      "dport",
      `${range.first}-${last}`,
      "lookup",
      tout,
    ]),
  );
  // No port match for UDP: non-first fragments carry no port. masq writes back what it does not own.
  for (const [proto, pref] of [
    ["udp", prefs.udp],
    ["icmp", prefs.icmp],
  ] as const)
    steps.push(
      ruleStep(`steer ${proto.toUpperCase()} from ${wan} into ${tunOutside}`, [
        "pref",
        String(pref),
        "iif",
        wan,
        "ipproto",
        proto,
        "lookup",
        tout,
      ]),
    );
  if (opts.publicAddress !== undefined)
    steps.push(...publicAddressSteps({ ...opts, publicAddress: opts.publicAddress }, tables));
  return steps;
}

/**
 * Interface mode: the rules that name the public address (the outside interface's own): what
 * inside hosts send to it on masq's ports (hairpinning), and the ICMP errors the gateway's own
 * stack sends to it, and the other IP protocols (GRE, ESP …) sent to it from outside. When the
 * address changes, exactly these are planned again and replaced (src/control/address-change.ts).
 */
export function publicAddressSteps(
  opts: Pick<HostSetupOptions, "inside" | "outside" | "tun" | "tunOutside" | "ports"> & {
    publicAddress: string;
  },
  tables: RoutingTables = DEFAULT_TABLES,
): HostStep[] {
  const range = opts.ports ?? DEFAULT_PORT_RANGE;
  const last = Math.min(range.last, MAX_RULE_PORT);
  const tin = String(tables.inside);
  const steps: HostStep[] = [];
  // Hairpinning: an inside host answering another's connection through the public address
  // sends to masq's ports on the gateway's own address, which 'local' would otherwise take.
  for (const lan of opts.inside)
    for (const proto of ["tcp", "udp"])
      steps.push(
        publicAddressRule(
          `steer ${proto.toUpperCase()} from ${lan} to ${opts.publicAddress} ports ${range.first}-${last} into ${opts.tun}`,
          {
            pref: String(HAIRPIN_RULE_PREF),
            lan,
            publicAddress: opts.publicAddress,
            proto,
            ports: `${range.first}-${last}`,
            table: tin,
          },
        ),
      );
  steps.push(
    ...gatewayIcmpRuleSteps({
      publicAddress: opts.publicAddress,
      tunOutside: opts.tunOutside,
      table: tables.outside,
    }),
  );
  steps.push(
    ...otherProtocolRuleSteps({
      outside: opts.outside,
      publicAddress: opts.publicAddress,
      tunOutside: opts.tunOutside,
      table: tables.outside,
    }),
  );
  return steps;
}

function defaultRouteStep(tun: string, table: number): HostStep {
  return routeStep(`default route via ${tun} in table ${table}`, [
    "default",
    "dev",
    tun,
    "table",
    String(table),
  ]);
}

/** A route that takes over when the TUN's routes vanish with it; `table` undefined: main. */
function fallbackStep(
  type: "unreachable" | "blackhole",
  dst: string,
  table: number | undefined,
  why: string,
): HostStep {
  const where = table === undefined ? [] : ["table", String(table)];
  return routeStep(`${type} ${dst}${table === undefined ? "" : ` in table ${table}`} behind masq (${why})`, [
    type,
    dst,
    "metric",
    String(FALLBACK_METRIC),
    ...where,
  ]);
}

/** The sysfs CPU mask ("3", "ff,ffffffff") of CPUs 0 to count-1: hex, a comma every 32 bits. */
export function cpuMask(count: number): string {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`cpuMask: bad CPU count ${count}`);
  return cpuSetMask(Array.from({ length: count }, (_, i) => i));
}

/** The sysfs CPU mask of the CPUs listed ([0, 2] is "5"): hex, a comma every 32 bits. */
export function cpuSetMask(cpus: readonly number[]): string {
  if (cpus.length === 0 || cpus.some((c) => !Number.isInteger(c) || c < 0 || c > 8191))
    throw new RangeError(`cpuSetMask: bad CPU list ${JSON.stringify(cpus)}`);
  let bits = 0n;
  for (const c of cpus) bits |= 1n << BigInt(c);
  const hex = bits.toString(16);
  const groups: string[] = [];
  for (let end = hex.length; end > 0; end -= 8) groups.unshift(hex.slice(Math.max(0, end - 8), end));
  return groups.join(",");
}

// ---- validation ----

const IFNAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;

function validate(opts: HostSetupOptions): void {
  const iface = (name: string, role: string) => {
    // Names reach argv (no shell), but '/' or spaces would still confuse sysctl keys and ip.
    if (!IFNAME.test(name) || name === "." || name === "..")
      throw new Error(`invalid ${role} interface name ${JSON.stringify(name)}`);
  };
  iface(opts.tun, "TUN");
  iface(opts.tunOutside, "outside TUN");
  iface(opts.outside, "outside");
  if (opts.tun === opts.tunOutside) throw new Error(`the inside and outside TUNs must differ (${opts.tun})`);
  if (opts.inside.length === 0) throw new Error("at least one inside interface is needed");
  for (const lan of opts.inside) {
    iface(lan, "inside");
    if (lan === opts.outside) throw new Error(`interface ${lan} cannot be both inside and outside`);
    if (lan === opts.tun || lan === opts.tunOutside)
      throw new Error(`interface ${lan} cannot be both inside and a TUN`);
  }
  if (opts.outside === opts.tun || opts.outside === opts.tunOutside)
    throw new Error(`interface ${opts.outside} cannot be both outside and a TUN`);
  if (opts.insideNetworks.length === 0) throw new Error("at least one inside network is needed");
  for (const net of opts.insideNetworks) {
    const p = parsePrefix(net);
    if (p.len === 0) throw new Error(`inside network ${net} covers every address`);
  }
  const mtu = opts.mtu ?? DEFAULT_MTU;
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new Error(`invalid MTU ${mtu} (576-65535)`);

  const tables = { ...DEFAULT_TABLES, ...opts.tables };
  for (const [name, t] of Object.entries(tables)) {
    // 0 is 'unspec'; 253-255 are default, main and local.
    if (!Number.isInteger(t) || t < 1 || t > 0xffffffff || (t >= 253 && t <= 255))
      throw new Error(`invalid ${name} routing table ${t} (1-252 or 256-4294967295)`);
  }
  if (new Set(Object.values(tables)).size !== 3)
    throw new Error("the inside, outside and guard routing tables must differ");
  const prefs = { ...DEFAULT_PREFS, ...opts.prefs };
  for (const [name, p] of Object.entries(prefs)) {
    if (!Number.isInteger(p) || p < 1 || p > 32765)
      throw new Error(`invalid ${name} rule pref ${p} (1-32765)`);
  }
  if (prefs.guard >= prefs.local)
    throw new Error(`the guard pref must come before the 'local' pref ${prefs.local}`);
  if (prefs.inside <= prefs.local)
    throw new Error(`the inside pref must come after the 'local' pref ${prefs.local}`);

  if (opts.mode === "pool") {
    if (!opts.pool || opts.pool.length === 0) throw new Error("pool mode needs at least one pool address");
    for (const p of opts.pool.map(parsePrefix)) {
      if ((opts.proxyArp ?? true) && 2 ** (32 - p.len) > MAX_PROXY_ENTRIES)
        throw new Error(
          `pool ${p.addr}/${p.len} is too large for proxy ARP entries (at most ${MAX_PROXY_ENTRIES} addresses); ` +
            "route it to this host upstream and set proxyArp to false",
        );
    }
  } else if (opts.mode === "interface") {
    const r = opts.ports ?? DEFAULT_PORT_RANGE;
    if (
      !Number.isInteger(r.first) ||
      !Number.isInteger(r.last) ||
      r.first < 1 ||
      r.first > r.last ||
      r.last > 65535
    )
      throw new Error(`invalid port range ${r.first}-${r.last}`);
    if (r.first > MAX_RULE_PORT)
      throw new Error(`port range ${r.first}-${r.last} cannot be matched by an ip rule (65535 is rejected)`);
    if (!(prefs.tcp < prefs.local && prefs.udp < prefs.local && prefs.icmp < prefs.local))
      throw new Error(`the TCP/UDP/ICMP steering prefs must come before the 'local' pref ${prefs.local}`);
  } else {
    throw new Error(`unknown mode ${JSON.stringify((opts as { mode: unknown }).mode)}`);
  }
}
