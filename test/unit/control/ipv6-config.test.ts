// `[ipv6]` (RFC 6092 simple security): parsing, errors naming the key, and the host plan steps it
// adds (ip -6 rules and routes, each undone; never link-local or multicast).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import { planHostSetup } from "../../../src/host/plan.ts";
import { formatIpv6, parseIpv6, parseIpv6Prefix } from "../../../src/ipv6fw/addr6.ts";

const base = { inside: ["lan0"], outside: "wan0" };
const withFile = (text: string) => resolveRunConfig({ ...base, config: "masq.toml" }, () => text);
const GOOD = '[ipv6]\nfirewall = true\ninside_networks = ["2001:db8:1::/64"]\n';

describe("[ipv6] config", () => {
  it("is off by default; a firewall with its prefixes and pinholes parses", () => {
    assert.equal(resolveRunConfig(base).ipv6.firewall, false);
    const c = withFile(
      `${GOOD}[[ipv6.pinhole]]\naddress = "2001:db8:1::10"\nprotocol = "tcp"\nport = 8080\n`,
    );
    assert.equal(c.ipv6.firewall, true);
    assert.deepEqual(c.ipv6.insideNetworks, ["2001:db8:1::/64"]);
    assert.deepEqual(c.ipv6.pinholes, [{ address: "2001:db8:1::10", proto: "tcp", port: 8080 }]);
  });

  it("bad values are errors naming the key", () => {
    for (const [text, want] of [
      ["[ipv6]\nfirewall = true\n", /ipv6\.inside_networks: is needed/],
      ['[ipv6]\ninside_networks = ["10.0.0.0/8"]\n', /ipv6\.inside_networks\.0: .*not an IPv6 prefix/],
      ['[ipv6]\ninside_networks = ["fe80::/64"]\n', /ipv6\.inside_networks\.0: .*global unicast/],
      [
        `${GOOD}[[ipv6.pinhole]]\naddress = "nope"\nprotocol = "tcp"\nport = 1\n`,
        /ipv6\.pinhole\.0\.address/,
      ],
      [
        `${GOOD}[[ipv6.pinhole]]\naddress = "2001:db8:9::1"\nprotocol = "udp"\nport = 1\n`,
        /ipv6\.pinhole\.0\.address: .*not in ipv6\.inside_networks/,
      ],
      [`${GOOD}[[ipv6.pinhole]]\naddress = "2001:db8:1::1"\nprotocol = "sctp"\nport = 1\n`, /ipv6\.pinhole/],
      ["[ipv6]\npcp = true\n", /ipv6\.pcp: needs ipv6\.firewall = true/],
      [`${GOOD}pcp = true\npcp_max_per_host = 0\n`, /ipv6\.pcp_max_per_host/],
      [`${GOOD}pcp = true\npcp_max_lifetime = 60\n`, /ipv6\.pcp_max_lifetime/],
      [`${GOOD}pcp_third_party = "yes"\n`, /ipv6\.pcp_third_party/],
      [`${GOOD}max_flows = 3\n`, /ipv6\.max_flows/],
    ] as const)
      assert.throws(
        () => withFile(text),
        (e: unknown) => e instanceof ConfigError && want.test(e.message),
        text,
      );
  });

  it("PCP MAP for pinholes (ipv6.pcp) parses with its limits; off by default", () => {
    assert.equal(withFile(GOOD).ipv6.pcp, false);
    const c = withFile(
      `${GOOD}pcp = true\npcp_max_per_host = 3\npcp_max_pinholes = 10\npcp_max_lifetime = 600\npcp_third_party = true\n`,
    ).ipv6;
    assert.deepEqual(
      [c.pcp, c.pcpMaxPerHost, c.pcpMaxPinholes, c.pcpMaxLifetime, c.pcpThirdParty],
      [true, 3, 10, 600, true],
    );
  });

  it("formats IPv6 addresses as RFC 5952 does", () => {
    for (const t of ["2001:db8::1", "::", "::1", "2001:db8:1:0:1::", "fe80::1:0:0:2", "1:2:3:4:5:6:7:8"])
      assert.equal(formatIpv6(parseIpv6(t) as Uint8Array), t);
    assert.equal(formatIpv6(parseIpv6("2001:0db8:0:0:1:0:0:1") as Uint8Array), "2001:db8::1:0:0:1");
  });

  it("parses IPv6 addresses and prefixes", () => {
    assert.deepEqual(
      [...(parseIpv6("2001:db8::1") as Uint8Array)],
      [0x20, 1, 0x0d, 0xb8, ...Array(11).fill(0), 1],
    );
    assert.deepEqual(
      [...(parseIpv6("::ffff:192.0.2.1") as Uint8Array)].slice(10),
      [0xff, 0xff, 192, 0, 2, 1],
    );
    assert.equal(parseIpv6("1.2.3.4"), undefined);
    assert.equal(typeof parseIpv6Prefix("2001:db8::/129"), "string");
  });
});

describe("host plan with [ipv6] firewall", () => {
  const opts = {
    mode: "interface" as const,
    tun: "masq0",
    tunOutside: "masq0-out",
    inside: ["lan0"],
    outside: "wan0",
    insideNetworks: ["192.168.0.0/24"],
    publicAddress: "198.51.100.2",
    disableTunIpv6: true,
  };

  it("adds ip -6 routes and rules, each with its undo, and keeps IPv6 on the TUNs", () => {
    const plain = planHostSetup(opts);
    assert.ok(plain.some((s) => s.apply.join(" ").includes("disable_ipv6=1")));
    assert.ok(!plain.some((s) => s.apply.includes("-6")));
    const steps = planHostSetup({ ...opts, ipv6InsideNetworks: ["2001:db8:1::/64"] });
    assert.ok(!steps.some((s) => s.apply.join(" ").includes("disable_ipv6=1")));
    const v6 = steps.filter((s) => s.apply[1] === "-6").map((s) => s.apply.join(" "));
    assert.deepEqual(v6, [
      "ip -6 route add unreachable default metric 4242424242 table 106",
      "ip -6 route add blackhole default metric 4242424242 table 107",
      "ip -6 route add default dev masq0 table 106",
      "ip -6 route add default dev masq0-out table 107",
      "ip -6 rule add pref 311 iif wan0 to 2001:db8:1::/64 lookup 107",
      "ip -6 rule add pref 310 iif lan0 to 2000::/3 lookup 106",
    ]);
    for (const s of steps.filter((x) => x.apply[1] === "-6"))
      assert.deepEqual(
        s.undo,
        s.apply.map((a) => (a === "add" ? "del" : a)),
      );
    assert.ok(steps.some((s) => s.apply.join(" ") === "sysctl -q -w net.ipv6.conf.all.forwarding=1"));
    // Rules come after the routes they point at (rules last), and nothing names link-local or
    // multicast destinations, so neighbour discovery is never steered.
    const firstRule = steps.findIndex((s) => s.apply.join(" ").startsWith("ip -6 rule"));
    const lastRoute = steps.findLastIndex((s) => s.apply.join(" ").startsWith("ip -6 route"));
    assert.ok(lastRoute < firstRule);
    assert.ok(!v6.some((t) => /fe80|ff0|::\/0/.test(t)));
  });
});
