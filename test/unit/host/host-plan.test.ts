// The host plan is pure data: check it against design.md's "Routing recipe" for both modes,
// the undo commands, option validation and the ephemeral-port overlap check.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import {
  applyHostSetup,
  cleanLeftovers,
  isAlreadyGone,
  readState,
  undoHostSetup,
} from "../../../src/host/apply.ts";
import {
  ephemeralOverlapMessage,
  interfaceIndexes,
  parsePortRange,
  sysfsIsOurs,
} from "../../../src/host/checks.ts";
import {
  cpuMask,
  expandPrefix,
  fillPrior,
  type HostSetupOptions,
  type HostStep,
  PRIOR,
  parsePrefix,
  planHostSetup,
  type RpFilterState,
  sysctlKey,
} from "../../../src/host/plan.ts";
import { assertProperty } from "../../helpers/property.ts";

/** Waits (bounded: 5 s) until /proc shows `pid` running `argv0` (after its exec). */
async function waitForCommandLine(pid: number, argv0: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] === argv0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`pid ${pid} never ran ${argv0}`);
}

const applies = (steps: HostStep[]) => steps.map((s) => s.apply.join(" "));
const undos = (steps: HostStep[]) => steps.map((s) => s.undo.join(" "));

const pool: HostSetupOptions = {
  mode: "pool",
  tun: "tun0",
  tunOutside: "tun0-out",
  inside: ["lan0"],
  outside: "wan0",
  insideNetworks: ["192.168.0.0/24"],
  pool: ["198.51.100.100"],
};
const iface: HostSetupOptions = {
  mode: "interface",
  tun: "tun0",
  tunOutside: "tun0-out",
  inside: ["lan0"],
  outside: "wan0",
  insideNetworks: ["192.168.0.0/24"],
};

const tunSetup = (tun: string) => [
  `ip link set dev ${tun} mtu 1500`,
  `ip link set dev ${tun} up`,
  `sysctl -q -w net.ipv4.conf.${tun}.accept_local=1`,
];
const common = [
  ...tunSetup("tun0"),
  ...tunSetup("tun0-out"),
  "sysctl -q -w net.ipv4.conf.tun0.rp_filter=0",
  "sysctl -q -w net.ipv4.conf.tun0-out.rp_filter=0",
  "sysctl -q -w net.ipv4.conf.all.rp_filter=0",
  "sysctl -q -w net.ipv4.ip_forward=1",
];
const fallbacks = [
  "ip route add unreachable default metric 4242424242 table 100",
  "ip route add blackhole default metric 4242424242 table 102",
];
const localMove = ["ip rule add pref 200 lookup local", "ip rule del pref 0 lookup local"];
const guards = [
  "ip rule add pref 90 iif wan0 from 192.168.0.0/24 lookup 102",
  "ip rule add pref 90 iif wan0 to 192.168.0.0/24 lookup 102",
];

describe("planHostSetup: pool mode", () => {
  it("follows the recipe: one TUN per side, fallbacks behind the TUN routes, forgeries to the outside TUN", () => {
    assert.deepEqual(applies(planHostSetup(pool)), [
      ...common,
      ...fallbacks,
      "ip route add blackhole 198.51.100.100/32 metric 4242424242",
      "ip route add 198.51.100.100/32 dev tun0-out",
      "ip route add default dev tun0 table 100",
      "ip route add default dev tun0-out table 102",
      ...localMove,
      ...guards,
      "ip rule add pref 300 iif lan0 lookup 100",
      "ip neigh add proxy 198.51.100.100 dev wan0",
    ]);
  });

  it("undoes each step with its inverse", () => {
    assert.deepEqual(undos(planHostSetup(pool)), [
      `ip link set dev tun0 mtu ${PRIOR}`,
      `ip link set dev tun0 ${PRIOR}`,
      `sysctl -q -w net.ipv4.conf.tun0.accept_local=${PRIOR}`,
      `ip link set dev tun0-out mtu ${PRIOR}`,
      `ip link set dev tun0-out ${PRIOR}`,
      `sysctl -q -w net.ipv4.conf.tun0-out.accept_local=${PRIOR}`,
      `sysctl -q -w net.ipv4.conf.tun0.rp_filter=${PRIOR}`,
      `sysctl -q -w net.ipv4.conf.tun0-out.rp_filter=${PRIOR}`,
      `sysctl -q -w net.ipv4.conf.all.rp_filter=${PRIOR}`,
      `sysctl -q -w net.ipv4.ip_forward=${PRIOR}`,
      "ip route del unreachable default metric 4242424242 table 100",
      "ip route del blackhole default metric 4242424242 table 102",
      "ip route del blackhole 198.51.100.100/32 metric 4242424242",
      "ip route del 198.51.100.100/32 dev tun0-out",
      "ip route del default dev tun0 table 100",
      "ip route del default dev tun0-out table 102",
      "ip rule del pref 200 lookup local",
      "ip rule add pref 0 lookup local",
      "ip rule del pref 90 iif wan0 from 192.168.0.0/24 lookup 102",
      "ip rule del pref 90 iif wan0 to 192.168.0.0/24 lookup 102",
      "ip rule del pref 300 iif lan0 lookup 100",
      "ip neigh del proxy 198.51.100.100 dev wan0",
    ]);
  });

  it("records which prior values to read (sysctls, MTU)", () => {
    const steps = planHostSetup(pool);
    assert.deepEqual(
      steps.filter((s) => s.prior).map((s) => s.prior),
      [
        { kind: "mtu", dev: "tun0" },
        { kind: "link-state", dev: "tun0" },
        { kind: "sysctl", key: "net.ipv4.conf.tun0.accept_local" },
        { kind: "mtu", dev: "tun0-out" },
        { kind: "link-state", dev: "tun0-out" },
        { kind: "sysctl", key: "net.ipv4.conf.tun0-out.accept_local" },
        { kind: "sysctl", key: "net.ipv4.conf.tun0.rp_filter" },
        { kind: "sysctl", key: "net.ipv4.conf.tun0-out.rp_filter" },
        { kind: "sysctl", key: "net.ipv4.conf.all.rp_filter" },
        { kind: "sysctl", key: "net.ipv4.ip_forward" },
      ],
    );
    // Only steps with a prior have the placeholder.
    for (const s of steps) assert.equal(s.undo.join(" ").includes(PRIOR), s.prior !== undefined, s.what);
    assert.deepEqual(fillPrior(steps[2].undo, "0"), [
      "sysctl",
      "-q",
      "-w",
      "net.ipv4.conf.tun0.accept_local=0",
    ]);
  });

  it("handles prefixes, several inside interfaces and networks, custom tables/prefs, no proxy ARP, MTU, TUN creation", () => {
    const steps = planHostSetup({
      ...pool,
      inside: ["lan0", "lan1"],
      insideNetworks: ["192.168.0.0/24", "10.1.0.0/16"],
      pool: ["198.51.100.96/30", "203.0.113.7"],
      tables: { inside: 42, guard: 43 },
      prefs: { guard: 50, inside: 250 },
      mtu: 65535,
      createTun: true,
      proxyArp: false,
    });
    assert.deepEqual(applies(steps), [
      "ip tuntap add dev tun0 mode tun",
      "ip link set dev tun0 mtu 65535",
      ...tunSetup("tun0").slice(1),
      "ip tuntap add dev tun0-out mode tun",
      "ip link set dev tun0-out mtu 65535",
      ...tunSetup("tun0-out").slice(1),
      ...common.slice(6),
      "ip route add unreachable default metric 4242424242 table 42",
      "ip route add blackhole default metric 4242424242 table 43",
      "ip route add blackhole 198.51.100.96/30 metric 4242424242",
      "ip route add blackhole 203.0.113.7/32 metric 4242424242",
      "ip route add 198.51.100.96/30 dev tun0-out",
      "ip route add 203.0.113.7/32 dev tun0-out",
      "ip route add default dev tun0 table 42",
      "ip route add default dev tun0-out table 43",
      ...localMove,
      "ip rule add pref 50 iif wan0 from 192.168.0.0/24 lookup 43",
      "ip rule add pref 50 iif wan0 to 192.168.0.0/24 lookup 43",
      "ip rule add pref 50 iif wan0 from 10.1.0.0/16 lookup 43",
      "ip rule add pref 50 iif wan0 to 10.1.0.0/16 lookup 43",
      "ip rule add pref 250 iif lan0 lookup 42",
      "ip rule add pref 250 iif lan1 lookup 42",
    ]);
    assert.deepEqual(steps[0].undo, ["ip", "tuntap", "del", "dev", "tun0", "mode", "tun"]);
  });

  it("expands a small prefix into proxy ARP entries and refuses a large one", () => {
    const steps = planHostSetup({ ...pool, pool: ["198.51.100.100/30"] });
    assert.deepEqual(
      applies(steps).filter((a) => a.includes("proxy")),
      [100, 101, 102, 103].map((n) => `ip neigh add proxy 198.51.100.${n} dev wan0`),
    );
    assert.throws(() => planHostSetup({ ...pool, pool: ["10.0.0.0/16"] }), /too large for proxy ARP/);
    assert.doesNotThrow(() => planHostSetup({ ...pool, pool: ["10.0.0.0/16"], proxyArp: false }));
  });

  it("rejects bad options before planning anything", () => {
    assert.throws(() => planHostSetup({ ...pool, pool: [] }), /at least one pool address/);
    assert.throws(
      () => planHostSetup({ ...pool, pool: ["198.51.100.101/30"] }),
      /host bits set.*198\.51\.100\.100\/30/,
    );
    assert.throws(() => planHostSetup({ ...pool, pool: ["300.1.1.1"] }), /invalid IPv4/);
    assert.throws(() => planHostSetup({ ...pool, inside: [] }), /at least one inside interface/);
    assert.throws(() => planHostSetup({ ...pool, inside: ["wan0"] }), /both inside and outside/);
    assert.throws(() => planHostSetup({ ...pool, inside: ["tun0-out"] }), /both inside and a TUN/);
    assert.throws(() => planHostSetup({ ...pool, tun: "a very long name" }), /invalid TUN interface name/);
    assert.throws(
      () => planHostSetup({ ...pool, tunOutside: "masq0-outside-x" + "y" }),
      /invalid outside TUN interface name/,
    );
    assert.throws(() => planHostSetup({ ...pool, tunOutside: "tun0" }), /TUNs must differ/);
    assert.throws(() => planHostSetup({ ...pool, insideNetworks: [] }), /at least one inside network/);
    assert.throws(() => planHostSetup({ ...pool, insideNetworks: ["0.0.0.0/0"] }), /covers every address/);
    assert.throws(() => planHostSetup({ ...pool, insideNetworks: ["192.168.0.1/24"] }), /host bits set/);
    assert.throws(() => planHostSetup({ ...pool, tables: { inside: 254 } }), /routing table 254/);
    assert.throws(() => planHostSetup({ ...pool, tables: { guard: 100 } }), /must differ/);
    assert.throws(() => planHostSetup({ ...pool, prefs: { guard: 250 } }), /guard pref must come before/);
    assert.throws(() => planHostSetup({ ...pool, prefs: { inside: 150 } }), /after the 'local' pref/);
    assert.throws(() => planHostSetup({ ...pool, mtu: 100 }), /invalid MTU/);
  });
});

describe("planHostSetup: interface mode", () => {
  it("follows the recipe: masq's ports, UDP and ICMP to the outside TUN, forgeries too", () => {
    assert.deepEqual(applies(planHostSetup(iface)), [
      ...common,
      ...fallbacks,
      "ip route add default dev tun0 table 100",
      "ip route add default dev tun0-out table 101",
      "ip route add default dev tun0-out table 102",
      ...localMove,
      ...guards,
      "ip rule add pref 110 iif wan0 ipproto tcp dport 61000-65534 lookup 101",
      "ip rule add pref 111 iif wan0 ipproto udp lookup 101",
      "ip rule add pref 112 iif wan0 ipproto icmp lookup 101",
      "ip rule add pref 300 iif lan0 lookup 100",
    ]);
  });

  it("with the public address: the gateway's own ICMP errors to it go to the outside TUN, its pings do not; undone exactly", () => {
    const steps = planHostSetup({ ...iface, publicAddress: "198.51.100.2" });
    const own = steps.filter((s) => s.apply.includes("lo"));
    // dport carries type << 8 | code in the kernel's lookup for an ICMP message it sends:
    // destination unreachable (3), then time exceeded (11) and parameter problem (12).
    const selectors = [
      "pref 115 iif lo to 198.51.100.2/32 ipproto icmp dport 768-1023 lookup 101",
      "pref 115 iif lo to 198.51.100.2/32 ipproto icmp dport 2816-3327 lookup 101",
    ];
    assert.deepEqual(
      applies(own),
      selectors.map((s) => `ip rule add ${s}`),
    );
    assert.deepEqual(
      undos(own),
      selectors.map((s) => `ip rule del ${s}`),
    );
    // Echo (types 0 and 8: 0-255, 2048-2303) is outside both ranges.
    for (const s of own) assert.ok(!s.apply.some((a) => /^(0|2048)-/.test(a)), s.what);
    // Before 'local' moves back on undo (rules go first), after the route they need on apply.
    const a = applies(steps);
    const route = a.indexOf("ip route add default dev tun0-out table 101");
    for (const s of selectors) assert.ok(a.indexOf(`ip rule add ${s}`) > route, s);
    const reversedUndo = undos(steps).reverse();
    for (const s of selectors)
      assert.ok(
        reversedUndo.indexOf(`ip rule del ${s}`) < reversedUndo.indexOf("ip rule add pref 0 lookup local"),
      );
    // Custom tables: the outside table's number; pool mode has none of these rules.
    assert.ok(
      applies(planHostSetup({ ...iface, publicAddress: "198.51.100.2", tables: { outside: 8 } }))
        .filter((x) => x.includes(" iif lo "))
        .every((x) => x.endsWith("lookup 8")),
    );
    assert.ok(!applies(planHostSetup(pool)).some((x) => x.includes(" iif lo ")));
  });

  it("with the public address: the other IP protocols to it go to the outside TUN, each by its own rule", () => {
    const a = applies(planHostSetup({ ...iface, publicAddress: "198.51.100.2" }));
    const other = a.filter((x) => x.includes("pref 116 "));
    assert.deepEqual(
      other,
      [4, 33, 41, 47, 50, 115, 132, 136].map(
        (p) => `ip rule add pref 116 iif wan0 to 198.51.100.2/32 ipproto ${p} lookup 101`,
      ),
    );
    // No rule from the WAN to the public address may go without a protocol: it would also match
    // the kernel's lookup for an ARP request for that address, and the gateway would stop
    // answering ARP for its own address.
    for (const x of a)
      if (x.includes(" iif wan0 ") && x.includes(" to 198.51.100.2/32 ")) assert.match(x, / ipproto /, x);
    assert.ok(!applies(planHostSetup(pool)).some((x) => x.includes("pref 116 ")));
  });

  it("moves the 'local' rule so that one always exists (undo in reverse re-adds pref 0 first)", () => {
    const steps = planHostSetup(iface);
    const reversedUndo = undos(steps).reverse();
    const readd = reversedUndo.indexOf("ip rule add pref 0 lookup local");
    const drop = reversedUndo.indexOf("ip rule del pref 200 lookup local");
    assert.ok(readd >= 0 && drop >= 0 && readd < drop, "pref 0 comes back before pref 200 goes");
    // And the steering rules are removed before 'local' moves back.
    assert.ok(reversedUndo.indexOf("ip rule del pref 112 iif wan0 ipproto icmp lookup 101") < readd);
    assert.ok(reversedUndo.indexOf("ip rule del pref 90 iif wan0 from 192.168.0.0/24 lookup 102") < readd);
  });

  it("fails closed: the fallbacks are in place before any TUN route and rule, and go after them", () => {
    for (const opts of [pool, iface]) {
      const a = applies(planHostSetup(opts));
      const firstTunRoute = a.findIndex((x) => x.startsWith("ip route add") && x.includes(" dev tun0"));
      const firstRule = a.findIndex((x) => x.startsWith("ip rule add"));
      for (const f of fallbacks) {
        assert.ok(a.indexOf(f) >= 0 && a.indexOf(f) < firstTunRoute, f);
        assert.ok(a.indexOf(f) < firstRule, f);
      }
      // The outside table of interface mode has no fallback: the gateway's own UDP and ICMP
      // (DNS, DHCP, ping) must still be delivered while masq is down.
      assert.ok(!a.some((x) => x.includes("table 101") && /unreachable|blackhole/.test(x)));
    }
  });

  it("clamps 65535 out of the TCP rule (iproute2 rejects it) and says so", () => {
    const steps = planHostSetup({ ...iface, ports: { first: 61000, last: 65535 } });
    const tcp = steps.find((s) => s.apply.includes("tcp"))!;
    assert.ok(tcp.apply.includes("61000-65534"));
    assert.match(tcp.what, /65535-65535 stay with the kernel/);
    assert.throws(() => planHostSetup({ ...iface, ports: { first: 65535, last: 65535 } }), /65535/);
    assert.throws(
      () => planHostSetup({ ...iface, ports: { first: 62000, last: 61000 } }),
      /invalid port range/,
    );
  });

  it("uses configured tables, prefs and several inside interfaces", () => {
    const steps = planHostSetup({
      ...iface,
      inside: ["lan0", "wlan0"],
      tables: { inside: 7, outside: 8, guard: 9 },
      prefs: { guard: 5, tcp: 10, udp: 11, icmp: 12, local: 20, inside: 30 },
    });
    assert.deepEqual(applies(steps).slice(common.length), [
      "ip route add unreachable default metric 4242424242 table 7",
      "ip route add blackhole default metric 4242424242 table 9",
      "ip route add default dev tun0 table 7",
      "ip route add default dev tun0-out table 8",
      "ip route add default dev tun0-out table 9",
      "ip rule add pref 20 lookup local",
      "ip rule del pref 0 lookup local",
      "ip rule add pref 5 iif wan0 from 192.168.0.0/24 lookup 9",
      "ip rule add pref 5 iif wan0 to 192.168.0.0/24 lookup 9",
      "ip rule add pref 10 iif wan0 ipproto tcp dport 61000-65534 lookup 8",
      "ip rule add pref 11 iif wan0 ipproto udp lookup 8",
      "ip rule add pref 12 iif wan0 ipproto icmp lookup 8",
      "ip rule add pref 30 iif lan0 lookup 7",
      "ip rule add pref 30 iif wlan0 lookup 7",
    ]);
  });

  it("rejects prefs that would break the recipe", () => {
    assert.throws(() => planHostSetup({ ...iface, prefs: { tcp: 250 } }), /before the 'local' pref/);
    assert.throws(() => planHostSetup({ ...iface, prefs: { inside: 150 } }), /after the 'local' pref/);
    assert.throws(() => planHostSetup({ ...iface, tables: { inside: 101 } }), /must differ/);
  });
});

describe("planHostSetup: rp_filter", () => {
  const rpSteps = (opts: HostSetupOptions) =>
    planHostSetup(opts).filter((s) => s.apply.some((a) => a.includes("rp_filter")));

  it("with all=0 on the host: only the TUNs and all are set, as before", () => {
    const state = { all: 0, default: 1, devices: { lo: 0, lan0: 1, wan0: 2 } };
    assert.deepEqual(applies(rpSteps({ ...iface, rpFilter: state })), [
      "sysctl -q -w net.ipv4.conf.tun0.rp_filter=0",
      "sysctl -q -w net.ipv4.conf.tun0-out.rp_filter=0",
      "sysctl -q -w net.ipv4.conf.all.rp_filter=0",
    ]);
  });

  it("with strict all=1: carried onto every other interface (and default) below it, before all=0", () => {
    const state = {
      all: 1,
      default: 0,
      devices: { lo: 0, lan0: 0, "eth0.100": 0, wan0: 2, tun0: 0, "tun0-out": 0 },
    };
    const steps = rpSteps({ ...iface, rpFilter: state });
    assert.deepEqual(applies(steps), [
      "sysctl -q -w net.ipv4.conf.tun0.rp_filter=0",
      "sysctl -q -w net.ipv4.conf.tun0-out.rp_filter=0",
      "sysctl -q -w net/ipv4/conf/eth0.100/rp_filter=1",
      "sysctl -q -w net.ipv4.conf.lan0.rp_filter=1",
      "sysctl -q -w net.ipv4.conf.lo.rp_filter=1",
      "sysctl -q -w net.ipv4.conf.default.rp_filter=1",
      "sysctl -q -w net.ipv4.conf.all.rp_filter=0",
    ]);
    // wan0 had loose (2), above all: max(all, dev) was already its own value.
    assert.ok(!applies(steps).some((a) => a.includes("wan0")));
    // Each carried value is restored exactly (the prior is read at apply time).
    for (const s of steps) assert.deepEqual(s.prior?.kind, "sysctl", s.what);
  });

  it("the effective value max(all, dev) of every interface but the TUNs is the same after the steps", () => {
    const rp = fc.integer({ min: 0, max: 2 });
    const devices = fc.dictionary(fc.constantFrom("lo", "lan0", "lan1", "wan0", "tun0"), rp);
    assertProperty(
      fc.property(fc.record({ all: rp, default: rp, devices }), (state: RpFilterState) => {
        const after: Record<string, number> = { ...state.devices, all: state.all, default: state.default };
        for (const s of rpSteps({ ...iface, rpFilter: state })) {
          const [k, v] = s.apply[3].split("=");
          after[k.replaceAll("/", ".").split(".")[3]] = Number(v);
        }
        assert.equal(after.all, 0);
        for (const dev of Object.keys(state.devices))
          if (dev !== "tun0") assert.equal(after[dev], Math.max(state.all, state.devices[dev]), dev);
        assert.equal(after.default, Math.max(state.all, state.default));
      }),
      200,
    );
  });
});

describe("plan helpers", () => {
  it("every step's undo is its own (apply and undo are paired, undo order is the reverse)", () => {
    for (const opts of [pool, iface]) {
      const steps = planHostSetup(opts);
      for (const s of steps) {
        assert.ok(s.apply.length > 0 && s.undo.length > 0, s.what);
        assert.equal(s.apply[0], s.undo[0], s.what);
      }
    }
  });

  it("sysctlKey uses slashes for interface names with dots", () => {
    assert.equal(sysctlKey("net", "ipv4", "conf", "tun0", "rp_filter"), "net.ipv4.conf.tun0.rp_filter");
    assert.equal(
      sysctlKey("net", "ipv4", "conf", "eth0.100", "rp_filter"),
      "net/ipv4/conf/eth0.100/rp_filter",
    );
  });

  it("parses and expands prefixes", () => {
    assert.deepEqual(parsePrefix("198.51.100.100"), { addr: "198.51.100.100", len: 32 });
    assert.deepEqual(expandPrefix(parsePrefix("10.0.0.254/31")), ["10.0.0.254", "10.0.0.255"]);
    assert.throws(() => parsePrefix("10.0.0.0/"), /invalid/);
    assert.throws(() => parsePrefix("10.0.0.0/33"), /invalid/);
  });

  it("recognises 'already gone' errors from ip and sysctl", () => {
    assert.ok(isAlreadyGone("RTNETLINK answers: No such process"));
    assert.ok(isAlreadyGone("RTNETLINK answers: No such file or directory"));
    assert.ok(isAlreadyGone('Cannot find device "tun0"'));
    assert.ok(
      isAlreadyGone("sysctl: cannot stat /proc/sys/net/ipv4/conf/tun0/rp_filter: No such file or directory"),
    );
    assert.ok(!isAlreadyGone("RTNETLINK answers: Operation not permitted"));
  });
});

describe("ephemeral port range", () => {
  it("parses /proc/sys/net/ipv4/ip_local_port_range", () => {
    assert.deepEqual(parsePortRange("32768\t60999\n"), { first: 32768, last: 60999 });
    assert.throws(() => parsePortRange("garbage"), /cannot parse/);
    assert.throws(() => parsePortRange("5 4"), /invalid/);
  });

  it("reports an overlap with a clear message", () => {
    const eph = { first: 32768, last: 60999 };
    assert.equal(
      ephemeralOverlapMessage({ first: 32768, last: 61000 }, eph),
      "port range 32768-61000 overlaps the kernel's ephemeral range net.ipv4.ip_local_port_range = 32768 60999; " +
        "choose ports above 60999 or change the sysctl",
    );
    assert.ok(ephemeralOverlapMessage({ first: 60999, last: 60999 }, eph));
    assert.ok(ephemeralOverlapMessage({ first: 1000, last: 32768 }, eph));
    assert.equal(ephemeralOverlapMessage({ first: 61000, last: 65534 }, eph), undefined);
    assert.equal(ephemeralOverlapMessage({ first: 1024, last: 32767 }, eph), undefined);
    assert.match(
      ephemeralOverlapMessage({ first: 61000, last: 65535 }, { first: 40000, last: 65535 })!,
      /below 40000/,
    );
  });
});

// applyHostSetup/undoHostSetup with harmless commands (sh appending to a log): no root needed.
describe("apply and undo (with stand-in commands)", () => {
  const dir = mkdtempSync(join(tmpdir(), "masq-apply-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const fresh = () => {
    n += 1;
    return { log: join(dir, `log${n}`), state: join(dir, `state${n}.json`) };
  };
  const step = (log: string, name: string, undo = true): HostStep => ({
    what: name,
    apply: ["sh", "-c", `echo apply ${name} >> ${log}`],
    undo: undo ? ["sh", "-c", `echo undo ${name} >> ${log}`] : [],
  });
  const lines = (log: string) => readFileSync(log, "utf8").trim().split("\n");

  it("applies in order, records each step, undoes in reverse and removes the state file", async () => {
    const f = fresh();
    // The middle step copies the state file while it runs: it must already be recorded as pending.
    const snap = join(dir, "snap.json");
    const spy: HostStep = { what: "spy", apply: ["sh", "-c", `cp ${f.state} ${snap}`], undo: [] };
    await applyHostSetup([step(f.log, "a"), spy, step(f.log, "b")], f.state);
    const during = JSON.parse(readFileSync(snap, "utf8"));
    assert.deepEqual(
      during.steps.map((s: { what: string; status: string }) => `${s.what}:${s.status}`),
      ["a:applied", "spy:pending"],
    );
    assert.equal(during.pid, process.pid);
    assert.deepEqual(
      readState(f.state)?.steps.map((s) => s.status),
      ["applied", "applied", "applied"],
    );
    const report = await undoHostSetup(f.state);
    assert.deepEqual(report.undone, ["b", "a"]);
    assert.deepEqual(lines(f.log), ["apply a", "apply b", "undo b", "undo a"]);
    assert.equal(existsSync(f.state), false);
  });

  it("substitutes the prior value read at apply time into the undo", async () => {
    const f = fresh();
    const ostype = spawnSync("sysctl", ["-n", "kernel.ostype"], { encoding: "utf8" }).stdout.trim();
    await applyHostSetup(
      [
        {
          what: "prior",
          apply: ["true"],
          undo: ["sh", "-c", `echo restore ${PRIOR} >> ${f.log}`],
          prior: { kind: "sysctl", key: "kernel.ostype" },
        },
      ],
      f.state,
    );
    assert.equal(readState(f.state)?.steps[0].prior, ostype);
    await undoHostSetup(f.state);
    assert.deepEqual(lines(f.log), [`restore ${ostype}`]);
  });

  it("rolls back on a failing step and names it", async () => {
    const f = fresh();
    const bad: HostStep = { what: "bad step", apply: ["sh", "-c", "echo nope >&2; exit 2"], undo: ["false"] };
    await assert.rejects(
      applyHostSetup([step(f.log, "a"), step(f.log, "b"), bad, step(f.log, "c")], f.state),
      /host setup failed at step "bad step": command failed: sh -c .*exited with code 2.*nope/,
    );
    assert.deepEqual(lines(f.log), ["apply a", "apply b", "undo b", "undo a"]);
    assert.equal(existsSync(f.state), false);
  });

  it("tolerates already-gone objects and reports other undo failures", async () => {
    const f = fresh();
    const gone: HostStep = {
      what: "gone",
      apply: ["true"],
      undo: ["sh", "-c", "echo 'RTNETLINK answers: No such process' >&2; exit 2"],
    };
    const broken: HostStep = {
      what: "broken",
      apply: ["true"],
      undo: ["sh", "-c", "echo 'Operation not permitted' >&2; exit 2"],
    };
    await applyHostSetup([step(f.log, "a"), gone, broken], f.state);
    const report = await undoHostSetup(f.state);
    assert.deepEqual(report.undone, ["a"]);
    assert.deepEqual(report.gone, ["gone"]);
    assert.deepEqual(
      report.failed.map((x) => x.what),
      ["broken"],
    );
    assert.equal(existsSync(f.state), false);
  });

  it("refuses to overwrite an existing state file", async () => {
    const f = fresh();
    await applyHostSetup([step(f.log, "a")], f.state);
    await assert.rejects(applyHostSetup([step(f.log, "b")], f.state), /already exists/);
    await undoHostSetup(f.state);
  });

  it("cleanLeftovers undoes the record of a dead process (pending steps too) and refuses a live masq's", async () => {
    const f = fresh();
    assert.equal(await cleanLeftovers(f.state), undefined, "nothing to clean");
    const dead = spawnSync("true").pid!;
    const record = (pid: number) => ({
      version: 1,
      pid,
      pidStart: null,
      netns: null,
      createdAt: new Date().toISOString(),
      steps: [
        { what: "a", undo: step(f.log, "a").undo, status: "applied" },
        { what: "b", undo: step(f.log, "b").undo, status: "pending" },
      ],
    });
    // A live masq that is not this one (its command line says masq).
    const live = spawn("bash", ["-c", "exec -a masq sleep 30"], { stdio: "ignore" });
    try {
      await waitForCommandLine(live.pid!, "masq");
      writeFileSync(f.state, JSON.stringify(record(live.pid!)));
      await assert.rejects(
        cleanLeftovers(f.state),
        new RegExp(`another masq \\(pid ${live.pid}\\) is running`),
      );
    } finally {
      live.kill("SIGKILL");
    }
    writeFileSync(f.state, JSON.stringify(record(dead)));
    const warnings: string[] = [];
    const log = { info() {}, warn: (_o: object, msg?: string) => warnings.push(msg ?? "") };
    const report = await cleanLeftovers(f.state, { log });
    assert.deepEqual(report?.undone, ["b", "a"]);
    assert.deepEqual(lines(f.log), ["undo b", "undo a"]);
    assert.match(warnings[0], /did not exit cleanly/);
    assert.equal(existsSync(f.state), false);
  });
});

describe("planHostSetup: TUN queue, RPS and IPv6", () => {
  it("steers the TUN's received packets to the given CPUs, with nothing to undo (the TUN is masq's)", () => {
    const plan = planHostSetup({ ...pool, rpsCpus: "3" });
    const step = plan.find((s) => s.what.includes("RPS"));
    assert.deepEqual(step?.apply, ["sh", "-c", "echo 3 > /sys/class/net/tun0/queues/rx-0/rps_cpus"]);
    assert.deepEqual(step?.undo, []);
    assert.equal(
      planHostSetup(pool).some((s) => s.what.includes("RPS")),
      false,
    );
  });

  it("sysfsIsOurs: /sys/class/net must list exactly this namespace's devices, index for index", async () => {
    const dir = mkdtempSync(join(tmpdir(), "masq-sysfs-"));
    try {
      const ours = await interfaceIndexes();
      const fake = (entries: Array<[string, number]>) => {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir);
        for (const [name, index] of entries) {
          mkdirSync(join(dir, name), { recursive: true });
          writeFileSync(join(dir, name, "ifindex"), `${index}\n`);
        }
      };
      fake([...ours]);
      assert.equal(await sysfsIsOurs(dir), true);
      fake([...ours].map(([n, i]) => [n, i + 100]));
      assert.equal(await sysfsIsOurs(dir), false, "same names, other indexes");
      fake([...ours, ["masq-other0", 999]]);
      assert.equal(await sysfsIsOurs(dir), false, "a device this namespace does not have");
      fake([]);
      assert.equal(await sysfsIsOurs(dir), false, "empty");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("cpuMask: sysfs masks, a comma every 32 CPUs", () => {
    assert.equal(cpuMask(1), "1");
    assert.equal(cpuMask(2), "3");
    assert.equal(cpuMask(12), "fff");
    assert.equal(cpuMask(32), "ffffffff");
    assert.equal(cpuMask(40), "ff,ffffffff");
    assert.equal(cpuMask(64), "ffffffff,ffffffff");
    assert.throws(() => cpuMask(0), /bad CPU count 0/);
  });

  it("sets the TUN's queue length and turns IPv6 off on it before bringing it up, when asked", () => {
    const steps = applies(planHostSetup({ ...pool, txQueueLen: 4096, disableTunIpv6: true }));
    const up = steps.indexOf("ip link set dev tun0 up");
    assert.ok(steps.indexOf("ip link set dev tun0 txqueuelen 4096") < up);
    assert.ok(steps.indexOf("sysctl -q -w net.ipv6.conf.tun0.disable_ipv6=1") < up);
    assert.ok(steps.indexOf("sysctl -q -w net.ipv6.conf.tun0.disable_ipv6=1") >= 0);
  });
});
