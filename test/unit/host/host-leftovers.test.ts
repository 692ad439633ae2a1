// The leftover scan on snapshots of a host (the JSON `ip -j` printed for masq's setup on this
// kernel): what is masq's is found and removed with exactly the commands the recorded undo would
// run, and nothing else is touched.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { forwardRuleSteps } from "../../../src/host/forward-rules.ts";
import {
  type Footprint,
  type HostSnapshot,
  type IpRoute,
  type IpRule,
  planLeftoverRemoval,
  tunsInUse,
} from "../../../src/host/leftovers.ts";
import { type HostSetupOptions, planHostSetup } from "../../../src/host/plan.ts";

const M = 4242424242;

/** What the host's own setup looks like (not masq's): must survive every scan. */
const hostRules: IpRule[] = [
  { priority: 0, table: "local", src: "all" },
  { priority: 100, table: "50", src: "10.9.0.0", srclen: 16 }, // the host's own policy routing
  { priority: 32766, table: "main", src: "all" },
  { priority: 32767, table: "default", src: "all" },
];
const hostRoutes: IpRoute[] = [
  { dst: "default", dev: "wan0" },
  { dst: "192.168.0.0/24", dev: "lan0" },
  { type: "blackhole", dst: "10.66.0.0/16" }, // the host's own blackhole, another metric
  { dst: "default", dev: "wan0", table: "50" },
  { type: "local", dst: "192.168.0.1", dev: "lan0", table: "local" },
];

const links = (persist: boolean) => [
  { ifname: "lo" },
  { ifname: "lan0", linkinfo: { info_kind: "bridge" } },
  { ifname: "wan0", linkinfo: { info_kind: "veth" } },
  { ifname: "tun0", linkinfo: { info_kind: "tun", info_data: { persist } } },
  { ifname: "tun0-out", linkinfo: { info_kind: "tun", info_data: { persist } } },
];

/** Interface mode with a forward of 8080/tcp, as `ip -j` shows it. */
const ifaceSnapshot: HostSnapshot = {
  rules: [
    { priority: 90, src: "192.168.0.0", srclen: 24, iif: "wan0", table: "102" },
    { priority: 90, src: "all", dst: "192.168.0.0", dstlen: 24, iif: "wan0", table: "102" },
    {
      priority: 110,
      src: "all",
      iif: "wan0",
      ipproto: "tcp",
      dport_start: 61000,
      dport_end: 65534,
      table: "101",
    },
    { priority: 111, src: "all", iif: "wan0", ipproto: "udp", table: "101" },
    { priority: 112, src: "all", iif: "wan0", ipproto: "icmp", table: "101" },
    { priority: 113, src: "all", iif: "wan0", ipproto: "tcp", dport: 8080, table: "101" },
    {
      priority: 113,
      src: "all",
      dst: "198.51.100.2",
      iif: "lan0",
      ipproto: "tcp",
      dport: 8080,
      table: "100",
    },
    {
      priority: 114,
      src: "all",
      dst: "198.51.100.2",
      iif: "lan0",
      ipproto: "tcp",
      dport_start: 61000,
      dport_end: 65534,
      table: "100",
    },
    {
      priority: 114,
      src: "all",
      dst: "198.51.100.2",
      iif: "lan0",
      ipproto: "udp",
      dport_start: 61000,
      dport_end: 65534,
      table: "100",
    },
    // The gateway's own ICMP errors to the public address (types 3, and 11-12, by dport).
    ...[
      [768, 1023],
      [2816, 3327],
    ].map(([dport_start, dport_end]) => ({
      priority: 115,
      src: "all",
      dst: "198.51.100.2",
      iif: "lo",
      ipproto: "icmp",
      dport_start,
      dport_end,
      table: "101",
    })),
    // The other IP protocols to the public address (ip -j names the ones it knows).
    ...["ipencap", "dccp", "ipv6", "gre", "esp", "l2tp", "sctp", "udplite"].map((ipproto) => ({
      priority: 116,
      src: "all",
      dst: "198.51.100.2",
      iif: "wan0",
      ipproto,
      table: "101",
    })),
    { priority: 200, src: "all", table: "local" },
    { priority: 300, src: "all", iif: "lan0", table: "100" },
    ...hostRules.filter((r) => r.priority !== 0),
  ],
  routes: [
    { dst: "default", dev: "tun0", table: "100" },
    { type: "unreachable", dst: "default", table: "100", metric: M },
    { dst: "default", dev: "tun0-out", table: "101" },
    { dst: "default", dev: "tun0-out", table: "102" },
    { type: "blackhole", dst: "default", table: "102", metric: M },
    ...hostRoutes,
  ],
  links: links(true),
  proxies: [],
};

const poolSnapshot: HostSnapshot = {
  rules: [
    { priority: 90, src: "192.168.0.0", srclen: 24, iif: "wan0", table: "102" },
    { priority: 90, src: "all", dst: "192.168.0.0", dstlen: 24, iif: "wan0", table: "102" },
    { priority: 200, src: "all", table: "local" },
    { priority: 300, src: "all", iif: "lan0", table: "100" },
    ...hostRules.filter((r) => r.priority !== 0),
  ],
  routes: [
    { dst: "default", dev: "tun0", table: "100" },
    { type: "unreachable", dst: "default", table: "100", metric: M },
    { dst: "default", dev: "tun0-out", table: "102" },
    { type: "blackhole", dst: "default", table: "102", metric: M },
    { dst: "198.51.100.100", dev: "tun0-out" },
    { type: "blackhole", dst: "198.51.100.100", metric: M },
    ...hostRoutes,
  ],
  links: links(true),
  proxies: [
    { dst: "198.51.100.100", dev: "wan0" },
    { dst: "198.51.100.7", dev: "wan0" }, // the host's own proxy entry
  ],
};

const base = {
  tun: "tun0",
  tunOutside: "tun0-out",
  inside: ["lan0"],
  outside: "wan0",
  insideNetworks: ["192.168.0.0/24"],
  createTun: true,
};
const footprint: Footprint = { tuns: ["tun0", "tun0-out"], outside: "wan0", pool: ["198.51.100.100"] };

/** The undo commands of a plan that remove objects (sysctls and MTU/link state are not found). */
function removals(opts: HostSetupOptions, extra: ReturnType<typeof forwardRuleSteps> = []): string[] {
  return [...planHostSetup(opts), ...extra]
    .filter((s) => s.prior === undefined && s.undo.length > 0)
    .map((s) => s.undo.join(" "))
    .sort();
}

const applies = (snap: HostSnapshot) =>
  planLeftoverRemoval(snap, footprint)
    .map((s) => s.apply.join(" "))
    .sort();

describe("the leftover scan", () => {
  it("interface mode: finds exactly masq's rules, routes and TUNs, with the recorded undo's commands", () => {
    const forward = forwardRuleSteps({
      proto: "tcp",
      first: 8080,
      last: 8080,
      outside: "wan0",
      inside: ["lan0"],
      publicAddress: "198.51.100.2",
      ports: { first: 61000, last: 65534 },
    });
    const plan = removals({ ...base, mode: "interface", publicAddress: "198.51.100.2" }, forward);
    assert.deepEqual(applies(ifaceSnapshot), plan);
  });

  it("pool mode: the pool's routes, fallbacks and proxy entry too, and not the host's own entry", () => {
    assert.deepEqual(applies(poolSnapshot), removals({ ...base, mode: "pool", pool: ["198.51.100.100"] }));
    assert.ok(!applies(poolSnapshot).some((a) => a.includes("198.51.100.7")));
  });

  it("restores 'local' at pref 0 before removing masq's copy, and only removes the copy when 0 is there", () => {
    const order = planLeftoverRemoval(ifaceSnapshot, footprint).map((s) => s.apply.join(" "));
    const add0 = order.indexOf("ip rule add pref 0 lookup local");
    assert.ok(add0 >= 0 && add0 < order.indexOf("ip rule del pref 200 lookup local"));
    // Rules go before the routes of their tables.
    assert.ok(
      order.findLastIndex((a) => a.startsWith("ip rule")) < order.findIndex((a) => a.startsWith("ip route")),
    );
    const both = { ...ifaceSnapshot, rules: [hostRules[0], ...ifaceSnapshot.rules] };
    const again = planLeftoverRemoval(both, footprint).map((s) => s.apply.join(" "));
    assert.ok(!again.includes("ip rule add pref 0 lookup local"));
    assert.ok(again.includes("ip rule del pref 200 lookup local"));
  });

  it("the IPv6 firewall's rules and its tables' routes, as ip -6 shows them, with the recorded undo's commands", () => {
    // ip -6 prints a reject route on lo and a route given no metric at 1024.
    const rules6: IpRule[] = [
      { priority: 0, src: "all", table: "local" },
      { priority: 310, src: "all", dst: "2000::", dstlen: 3, iif: "lan0", table: "106" },
      { priority: 311, src: "all", dst: "2001:db8:1::", dstlen: 64, iif: "wan0", table: "107" },
      { priority: 32766, src: "all", table: "main" },
    ];
    const routes6: IpRoute[] = [
      { dst: "default", dev: "tun0", table: "106", metric: 1024 },
      { type: "unreachable", dst: "default", dev: "lo", table: "106", metric: M },
      { dst: "default", dev: "tun0-out", table: "107", metric: 1024 },
      { type: "blackhole", dst: "default", dev: "lo", table: "107", metric: M },
      { dst: "2001:db8:1::/64", dev: "lan0", metric: 256 }, // the host's own
      { dst: "fe80::/64", dev: "lan0", metric: 256 },
    ];
    const v6 = {
      ...base,
      mode: "pool" as const,
      pool: ["198.51.100.100"],
      ipv6InsideNetworks: ["2001:db8:1::/64"],
    };
    assert.deepEqual(applies({ ...poolSnapshot, rules6, routes6 }), removals(v6));
    const order = planLeftoverRemoval({ ...poolSnapshot, rules6, routes6 }, footprint).map((s) =>
      s.apply.join(" "),
    );
    assert.ok(
      order.findLastIndex((a) => a.startsWith("ip -6 rule")) <
        order.findIndex((a) => a.startsWith("ip -6 route")),
    );
  });

  it("a clean host has no leftovers", () => {
    const clean: HostSnapshot = {
      rules: hostRules,
      routes: hostRoutes,
      links: links(true).slice(0, 3),
      proxies: [],
    };
    assert.deepEqual(planLeftoverRemoval(clean, footprint), []);
    assert.deepEqual(tunsInUse(clean, footprint), []);
  });

  it("TUNs held open by a running process (not persistent) mean a live owner", () => {
    assert.deepEqual(tunsInUse(ifaceSnapshot, footprint), []);
    assert.deepEqual(tunsInUse({ ...ifaceSnapshot, links: links(false) }, footprint), ["tun0", "tun0-out"]);
    // Another TUN name, but the device of masq's tables' routes: the same.
    const other: HostSnapshot = {
      ...ifaceSnapshot,
      routes: [{ dst: "default", dev: "gw7", table: "100" }],
      links: [{ ifname: "gw7", linkinfo: { info_kind: "tun", info_data: { persist: false } } }],
    };
    assert.deepEqual(tunsInUse(other, footprint), ["gw7"]);
  });
});
