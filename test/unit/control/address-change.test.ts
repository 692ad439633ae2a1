// The host rules replaced when interface mode's public address changes
// (src/control/address-change.ts): exactly those that name the address, the plan's and the
// forwards', and none of the others.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { addressNamingSteps } from "../../../src/control/address-change.ts";
import { resolveRunConfig } from "../../../src/control/config.ts";
import type { Resolved } from "../../../src/control/engine-config.ts";
import { forwardSteps, planRunHost } from "../../../src/control/host-plan.ts";

const cfg = resolveRunConfig({ inside: ["lan0"], outside: "wan0" });
const seen = { disableTunIpv6: false, rpFilter: { all: 0, default: 0, devices: {} }, rpsCpus: undefined };
const at = (address: string): Resolved => ({
  mode: "interface",
  publicAddresses: [address],
  insideNetworks: ["192.168.0.0/24"],
  mtu: 1500,
});
const names = (a: string) => (s: { apply: string[] }) => s.apply.includes(`${a}/32`);

describe("the rules that name the public address", () => {
  it("are the plan's steps that name it, no more and no fewer", () => {
    const plan = planRunHost(cfg, at("198.51.100.2"), seen);
    assert.deepEqual(addressNamingSteps(cfg, "198.51.100.2", []), plan.filter(names("198.51.100.2")));
    assert.ok(plan.filter(names("198.51.100.2")).length >= 4, "hairpinning and the gateway's ICMP errors");
  });

  it("with a forward: its hairpin rule, not its rule from the outside interface (which names no address)", () => {
    const forward = { proto: "tcp" as const, first: 8080, last: 8080 };
    const all = forwardSteps(cfg, at("198.51.100.2"), "tcp", 8080, 8080);
    const steps = addressNamingSteps(cfg, "198.51.100.2", [forward]);
    for (const s of all)
      assert.equal(
        steps.some((x) => x.what === s.what),
        names("198.51.100.2")(s),
        s.what,
      );
    assert.ok(
      all.some((s) => !names("198.51.100.2")(s)),
      "the forward has a rule that stays",
    );
  });

  it("with a NAT-PMP/PCP mapping's port beyond the range: its hairpin rule, labelled as mapped", () => {
    const all = forwardSteps(cfg, at("198.51.100.2"), "udp", 3074, 3074, "mapped");
    const steps = addressNamingSteps(cfg, "198.51.100.2", [], ["udp/3074", "bogus", "tcp/0"]);
    const mine = steps.filter((s) => s.what.includes("3074"));
    assert.deepEqual(mine, all.filter(names("198.51.100.2")));
    assert.ok(mine.length > 0 && mine.every((s) => s.what.includes("mapped")));
  });

  it("for another address: the same rules, naming that one", () => {
    const a = addressNamingSteps(cfg, "198.51.100.2", [{ proto: "udp", first: 5000, last: 5010 }]);
    const b = addressNamingSteps(cfg, "203.0.113.77", [{ proto: "udp", first: 5000, last: 5010 }]);
    assert.equal(a.length, b.length);
    assert.deepEqual(
      b.map((s) => s.apply.join(" ")),
      a.map((s) => s.apply.join(" ").replaceAll("198.51.100.2/32", "203.0.113.77/32")),
    );
    assert.ok(b.every(names("203.0.113.77")));
  });

  it("interface mode without an address plans none of them, and a forward only its outside rule", () => {
    const none: Resolved = { ...at("198.51.100.2"), publicAddresses: [] };
    assert.equal(
      planRunHost(cfg, none, seen).filter((s) => s.apply.some((a) => a.endsWith("/32"))).length,
      0,
    );
    const f = forwardSteps(cfg, none, "tcp", 8080, 8080);
    assert.equal(f.length, 1);
    assert.ok(f[0].apply.includes("wan0"));
  });
});
