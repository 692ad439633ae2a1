// masq's setup as found on the host, for when its record is lost or corrupt: rules at masq's
// preferences that look up masq's tables, the 'local' rule moved to masq's pref, every route in
// masq's tables, its fallback routes in the main table (by their metric), routes through its
// TUNs, its TUN devices, the proxy ARP entries of the configured pool, and the IPv6 firewall's
// ip -6 rules and the routes of its tables (host/ipv6-rules.ts). The plan of removals
// is pure (unit-tested on snapshots); reading the host and running the removals is below it.
//
// Sysctls cannot be recognised (a value says nothing about who set it), so they stay as found:
// ip_forward as it is, and rp_filter's carried values keep every interface's effective setting.
import { type ExecOptions, exec, isAlreadyGone, run } from "./exec.ts";
import {
  DEFAULT_PREFS,
  DEFAULT_TABLES,
  FALLBACK_METRIC,
  masqRulePrefs,
  type RoutingTables,
  type RulePrefs,
} from "./footprint.ts";
import { IPV6_PREFS, IPV6_TABLES } from "./ipv6-rules.ts";
import { plannedIpproto } from "./other-protocol-rules.ts";
import type { HostStep } from "./steps.ts";

/** What identifies masq's objects on this host. */
export interface Footprint {
  /** masq's TUN names (inside and outside). */
  tuns: string[];
  tables?: RoutingTables;
  prefs?: RulePrefs;
  /** Pool mode: the outside interface and the pool addresses, whose proxy ARP entries are masq's. */
  outside?: string;
  pool?: string[];
}

/** The fields of `ip -j rule show` used here. */
export interface IpRule {
  priority: number;
  table: string;
  src?: string;
  srclen?: number;
  dst?: string;
  dstlen?: number;
  iif?: string;
  ipproto?: string;
  sport?: number;
  sport_start?: number;
  sport_end?: number;
  dport?: number;
  dport_start?: number;
  dport_end?: number;
}

/** The fields of `ip -j route show table all` used here (no table: main). */
export interface IpRoute {
  type?: string;
  dst: string;
  dev?: string;
  table?: string;
  metric?: number;
}

/** The fields of `ip -j -d link show` used here. */
export interface IpLinkDetail {
  ifname: string;
  linkinfo?: { info_kind?: string; info_data?: { persist?: boolean } };
}

export interface IpNeigh {
  dst: string;
  dev: string;
}

export interface HostSnapshot {
  rules: IpRule[];
  routes: IpRoute[];
  links: IpLinkDetail[];
  proxies: IpNeigh[];
  /** `ip -j -6 rule show` and `ip -j -6 route show table all` (absent: none). */
  rules6?: IpRule[];
  routes6?: IpRoute[];
}

/** The IPv6 kernel's metric for a route given none: the plan never names it, so neither does a removal. */
const IPV6_DEFAULT_METRIC = 1024;

/**
 * masq's TUNs (by name, or as the devices of the routes in masq's tables) that a running
 * process holds open. A TUN masq creates is not persistent, so it exists only while its owner
 * runs: then the setup found is that owner's, not a leftover.
 */
export function tunsInUse(snap: HostSnapshot, fp: Footprint): string[] {
  const tables = fp.tables ?? DEFAULT_TABLES;
  const ours = new Set([tables.inside, tables.outside, tables.guard].map(String));
  const names = new Set(fp.tuns);
  for (const r of snap.routes) if (r.dev !== undefined && ours.has(r.table ?? "main")) names.add(r.dev);
  return snap.links
    .filter((l) => names.has(l.ifname) && l.linkinfo?.info_kind === "tun")
    .filter((l) => l.linkinfo?.info_data?.persist !== true)
    .map((l) => l.ifname);
}

/**
 * Pure: the steps (apply = the removal; no undo) that remove what in `snap` is masq's, in the
 * order an undo would: rules first (nothing steered into tables that are being emptied), 'local'
 * back at 0 before masq's copy goes, then routes, devices and proxy entries. Each removal argv is
 * written as the plan's undo writes it, so a recorded undo and a found leftover compare equal.
 */
export function planLeftoverRemoval(snap: HostSnapshot, fp: Footprint): HostStep[] {
  const tables = fp.tables ?? DEFAULT_TABLES;
  const prefs = fp.prefs ?? DEFAULT_PREFS;
  const ours = new Set([tables.inside, tables.outside, tables.guard].map(String));
  const ourPrefs = new Set(masqRulePrefs(prefs));
  const steps: HostStep[] = [];
  const removal = (what: string, apply: string[]) => steps.push({ what, apply, undo: [] });

  for (const r of snap.rules)
    if (ourPrefs.has(r.priority) && ours.has(r.table)) {
      const argv = ["ip", "rule", "del", ...ruleSelector(r)];
      removal(`remove leftover rule: ${argv.slice(3).join(" ")}`, argv);
    }
  const ours6 = new Set(Object.values(IPV6_TABLES).map(String));
  const ourPrefs6 = new Set<number>(Object.values(IPV6_PREFS));
  for (const r of snap.rules6 ?? [])
    if (ourPrefs6.has(r.priority) && ours6.has(r.table)) {
      const argv = ["ip", "-6", "rule", "del", ...ruleSelector(r, 128)];
      removal(`remove leftover IPv6 rule: ${argv.slice(4).join(" ")}`, argv);
    }
  const localAt = (pref: number) => snap.rules.some((r) => r.priority === pref && r.table === "local");
  if (localAt(prefs.local)) {
    if (!localAt(0))
      removal("put the 'local' rule back at pref 0", ["ip", "rule", "add", "pref", "0", "lookup", "local"]);
    removal(`remove masq's 'local' rule at pref ${prefs.local}`, [
      "ip",
      "rule",
      "del",
      "pref",
      String(prefs.local),
      "lookup",
      "local",
    ]);
  }

  for (const r of snap.routes) {
    const table = r.table ?? "main";
    const inOurTable = ours.has(table);
    const fallback = table === "main" && r.type === "blackhole" && r.metric === FALLBACK_METRIC;
    const viaOurTun = r.dev !== undefined && fp.tuns.includes(r.dev) && (table === "main" || inOurTable);
    if (!inOurTable && !fallback && !viaOurTun) continue;
    const argv = ["ip", "route", "del", ...routeSpec(r)];
    removal(`remove leftover route: ${argv.slice(3).join(" ")}`, argv);
  }
  for (const r of snap.routes6 ?? []) {
    if (!ours6.has(r.table ?? "main")) continue;
    // ip -6 shows a reject route on lo and a route given no metric at 1024; the plan names neither.
    const shown: IpRoute = {
      ...r,
      dev: r.dev === "lo" && r.type !== undefined && r.type !== "unicast" ? undefined : r.dev,
      metric: r.metric === IPV6_DEFAULT_METRIC ? undefined : r.metric,
    };
    const argv = ["ip", "-6", "route", "del", ...routeSpec(shown, 128)];
    removal(`remove leftover IPv6 route: ${argv.slice(4).join(" ")}`, argv);
  }

  for (const l of snap.links)
    if (fp.tuns.includes(l.ifname) && l.linkinfo?.info_kind === "tun")
      removal(`remove leftover TUN ${l.ifname}`, ["ip", "tuntap", "del", "dev", l.ifname, "mode", "tun"]);

  const pool = new Set(fp.pool ?? []);
  for (const n of snap.proxies)
    if (n.dev === fp.outside && pool.has(n.dst))
      removal(`remove leftover proxy ARP entry ${n.dst} on ${n.dev}`, [
        "ip",
        "neigh",
        "del",
        "proxy",
        n.dst,
        "dev",
        n.dev,
      ]);
  return steps;
}

/** A rule as the plan writes it: pref, iif, from, to, ipproto, ports, lookup (`host`: 32 or 128). */
function ruleSelector(r: IpRule, host = 32): string[] {
  const sel = ["pref", String(r.priority)];
  if (r.iif !== undefined) sel.push("iif", r.iif);
  if (r.src !== undefined && r.src !== "all") sel.push("from", `${r.src}/${r.srclen ?? host}`);
  if (r.dst !== undefined) sel.push("to", `${r.dst}/${r.dstlen ?? host}`);
  if (r.ipproto !== undefined) sel.push("ipproto", plannedIpproto(r.ipproto));
  const range = (one?: number, first?: number, last?: number) =>
    one !== undefined ? String(one) : first !== undefined ? `${first}-${last ?? first}` : undefined;
  const sport = range(r.sport, r.sport_start, r.sport_end);
  if (sport !== undefined) sel.push("sport", sport);
  const dport = range(r.dport, r.dport_start, r.dport_end);
  if (dport !== undefined) sel.push("dport", dport);
  sel.push("lookup", r.table);
  return sel;
}

/** A route as the plan writes it: [type] dst [dev] [metric] [table] (`host`: 32 or 128). */
function routeSpec(r: IpRoute, host = 32): string[] {
  const spec: string[] = [];
  if (r.type !== undefined && r.type !== "unicast") spec.push(r.type);
  spec.push(r.dst === "default" || r.dst.includes("/") ? r.dst : `${r.dst}/${host}`);
  if (r.dev !== undefined) spec.push("dev", r.dev);
  if (r.metric !== undefined && r.metric !== 0) spec.push("metric", String(r.metric));
  if (r.table !== undefined && r.table !== "main") spec.push("table", r.table);
  return spec;
}

/**
 * Reads the rules, routes (IPv4 and IPv6), links and proxy ARP entries of the current or a named
 * namespace. A kernel without IPv6 has no IPv6 leftovers: its ip -6 errors read as none.
 */
export async function readHostSnapshot(where: { netns?: string } = {}): Promise<HostSnapshot> {
  const opts: ExecOptions = where.netns ? { netns: where.netns } : {};
  const json = async <T>(argv: string[]): Promise<T[]> =>
    JSON.parse((await run(["ip", "-j", ...argv], opts)) || "[]") as T[];
  const json6 = <T>(argv: string[]): Promise<T[]> => json<T>(["-6", ...argv]).catch(() => []);
  const [rules, routes, links, proxies, rules6, routes6] = await Promise.all([
    json<IpRule>(["-4", "rule", "show"]),
    json<IpRoute>(["-4", "route", "show", "table", "all"]),
    json<IpLinkDetail>(["-d", "link", "show"]),
    json<IpNeigh>(["-4", "neigh", "show", "proxy"]),
    json6<IpRule>(["rule", "show"]),
    json6<IpRoute>(["route", "show", "table", "all"]),
  ]);
  return { rules, routes, links, proxies, rules6, routes6 };
}

export interface LeftoverReport {
  removed: string[];
  gone: string[];
  failed: Array<{ what: string; error: string }>;
}

/**
 * Finds masq's leftovers on the host and removes them (or, with `dryRun`, only returns the
 * plan). Throws, touching nothing, when a running process holds one of masq's TUNs.
 */
export async function removeLeftovers(
  fp: Footprint,
  opts: { netns?: string; dryRun?: boolean } = {},
): Promise<{ steps: HostStep[]; report: LeftoverReport }> {
  const snap = await readHostSnapshot(opts);
  const busy = tunsInUse(snap, fp);
  if (busy.length > 0)
    throw new Error(
      `${busy.join(" and ")} ${busy.length > 1 ? "are" : "is"} held open by a running process ` +
        "(a masq that is still running?): stop it first",
    );
  const steps = planLeftoverRemoval(snap, fp);
  const report: LeftoverReport = { removed: [], gone: [], failed: [] };
  if (opts.dryRun) return { steps, report };
  for (const s of steps) {
    const r = await exec(s.apply, opts.netns ? { netns: opts.netns } : {});
    if (r.code === 0) report.removed.push(s.what);
    else if (isAlreadyGone(r.stderr)) report.gone.push(s.what);
    else report.failed.push({ what: s.what, error: r.stderr.trim() || `exit ${r.code}` });
  }
  return { steps, report };
}
