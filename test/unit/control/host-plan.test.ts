// `masq run --dry-run` prints the host plan a run would apply: every step, in order, with the
// command that applies it and the one that undoes it, and the same plan a run applies (one
// function builds the plan options for both).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import type { Resolved } from "../../../src/control/engine-config.ts";
import {
  formatHostPlan,
  planConfigForwards,
  planRunHost,
  TUN_TX_QUEUE_LEN,
} from "../../../src/control/host-plan.ts";
import { formatArgv } from "../../../src/host/exec.ts";
import { PRIOR } from "../../../src/host/index.ts";

const cfg = resolveRunConfig({ inside: ["lan0"], outside: "wan0" });
const host: Resolved = {
  mode: "interface",
  publicAddresses: ["198.51.100.2"],
  insideNetworks: ["192.168.0.0/24"],
  mtu: 1500,
};
const seen = {
  disableTunIpv6: true,
  rpFilter: { all: 2, default: 1, devices: { lan0: 0, wan0: 1 } },
  rpsCpus: "1",
};

describe("the host plan of masq run and its dry-run printing", () => {
  it("is the run's plan: its TUNs, queue length, RPS mask, rp_filter carry-over and interface-mode rules", () => {
    const steps = planRunHost(cfg, host, seen);
    const applied = steps.map((s) => formatArgv(s.apply));
    assert.ok(applied.includes(`ip link set dev masq0 txqueuelen ${TUN_TX_QUEUE_LEN}`), applied.join("\n"));
    assert.ok(applied.some((a) => a.includes("masq0-out")));
    assert.ok(
      applied.some((a) => a.includes("rps_cpus")),
      "the RPS mask is set",
    );
    assert.ok(
      applied.includes("sysctl -q -w net.ipv4.conf.lan0.rp_filter=2"),
      "lan0 keeps the loose filtering of all",
    );
    assert.ok(applied.some((a) => a.startsWith("ip rule add") && a.includes("dport 61000-65534")));
    const noRps = planRunHost(cfg, host, { ...seen, rpsCpus: undefined }).map((s) => formatArgv(s.apply));
    assert.ok(!noRps.some((a) => a.includes("rps_cpus")), "no RPS step without a mask");
  });

  it("prints every step numbered in order, with its apply and undo command; a value read at apply time is named", () => {
    const steps = planRunHost(cfg, host, seen);
    const lines = formatHostPlan(cfg, host, steps);
    assert.match(
      lines[0],
      /open the TUNs masq0 \(inside\) and masq0-out \(outside\), interface mode, public 198\.51\.100\.2/,
    );
    assert.match(lines[1], new RegExp(`apply these ${steps.length} steps in order`));
    for (const [i, s] of steps.entries()) {
      const at = 2 + 3 * i;
      assert.equal(lines[at], `${String(i + 1).padStart(3)}. ${s.what}`);
      assert.equal(lines[at + 1], `     apply: ${formatArgv(s.apply)}`);
      if (s.undo.length === 0) assert.equal(lines[at + 2], "     undo:  (nothing to undo)");
      else if (!s.undo.some((a) => a.includes(PRIOR)))
        assert.equal(lines[at + 2], `     undo:  ${formatArgv(s.undo)}`);
      else assert.match(lines[at + 2], /^ {5}undo: {2}\S.*<the value before>/);
    }
    assert.match(lines[2 + 3 * steps.length], /^Nothing was changed\./);
    assert.equal(lines.length, 3 + 3 * steps.length);
    const text = lines.join("\n");
    assert.ok(!text.includes(PRIOR), "no placeholder is printed");
    assert.match(text, /undo: {2}sysctl -q -w net\.ipv4\.ip_forward=<the value before>\n/);
    assert.match(text, /undo: {2}ip link set dev masq0 mtu <the value before>\n/);
  });

  it("interface mode: the config file's forwards add their rules (outside masq's own ports); pool mode needs none", () => {
    const withForward = resolveRunConfig(
      { inside: ["lan0"], outside: "wan0", config: "masq.toml" },
      () => '[[forward]]\noutside = "8080/tcp"\ninside = "192.168.0.2:80"\n',
    );
    const applied = planConfigForwards(withForward, host).map((s) => formatArgv(s.apply));
    assert.ok(
      applied.some((a) => a.startsWith("ip rule add") && a.includes("iif wan0") && a.includes("dport 8080")),
      applied.join("\n"),
    );
    assert.deepEqual(planConfigForwards(withForward, { ...host, mode: "pool" }), []);
    assert.deepEqual(planConfigForwards(cfg, host), [], "no forwards, no rules");
  });

  it("pool mode: the pool's proxy ARP entries and routes, no port rules", () => {
    const pool = resolveRunConfig({ inside: ["lan0"], outside: "wan0", address: ["198.51.100.100"] });
    const poolHost: Resolved = { ...host, mode: "pool", publicAddresses: ["198.51.100.100"] };
    const text = formatHostPlan(pool, poolHost, planRunHost(pool, poolHost, seen)).join("\n");
    assert.match(text, /pool mode, public 198\.51\.100\.100/);
    assert.match(text, /apply: ip neigh add proxy 198\.51\.100\.100 dev wan0/);
    assert.doesNotMatch(text, /dport 61000-65534/);
  });
});
