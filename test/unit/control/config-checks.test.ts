// Configuration checks across keys, and those that need the host's facts (issue 16, item 11):
// inside networks, pool addresses, low ports in interface mode, upper bounds on timeouts and
// limits, forward targets. Each refusal names the key.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  forwardTargetProblem,
  type HostFacts,
  startProblem,
  toPrefix,
} from "../../../src/control/address-rules.ts";
import { type RunConfig, resolveRunConfig } from "../../../src/control/config.ts";
import { ForwardError, ForwardRegistry, parseForward } from "../../../src/portmap/forwards.ts";
import { errorOf as refusal } from "../../helpers/config-error.ts";
import { ip } from "../../helpers/packets.ts";
import { makeEngine, P } from "../nat/engine-helpers.ts";

const base = { inside: ["lan0"], outside: "wan0" };

function withFile(text: string, flags: object = base): RunConfig {
  return resolveRunConfig({ ...flags, config: "masq.toml" }, () => text);
}

describe("config: inside networks and pool addresses", () => {
  it("refuses inside networks that are the Internet or not unicast", () => {
    const cases: Array<[string, RegExp]> = [
      ["0.0.0.0/0", /masq\.toml: inside_networks: 0\.0\.0\.0\/0 is the whole Internet/],
      ["10.0.0.0/7", /inside_networks: 10\.0\.0\.0\/7 covers a large part of the Internet/],
      ["127.0.0.0/8", /inside_networks: 127\.0\.0\.0\/8 overlaps loopback/],
      ["224.0.0.0/24", /inside_networks: 224\.0\.0\.0\/24 overlaps multicast/],
      ["0.0.0.0/8", /inside_networks: .*"this network"/],
    ];
    for (const [net, re] of cases)
      assert.match(
        refusal(() => withFile(`inside_networks = ["${net}"]`)),
        re,
        net,
      );
    assert.deepEqual(withFile('inside_networks = ["10.0.0.0/8", "100.64.0.0/10"]').insideNetworks, [
      "10.0.0.0/8",
      "100.64.0.0/10",
    ]);
  });

  it("refuses pool addresses that no Internet host can answer, or that are on the LAN", () => {
    const cases: Array<[string, RegExp]> = [
      ["0.0.0.0", /addresses: 0\.0\.0\.0\/32 is or overlaps "this network"/],
      ["255.255.255.255", /addresses: .*limited broadcast address/],
      ["224.0.0.1", /addresses: .*multicast/],
      ["239.255.255.0/24", /addresses: .*multicast/],
      ["127.0.0.1", /addresses: .*loopback/],
    ];
    for (const [a, re] of cases)
      assert.match(
        refusal(() => withFile(`addresses = ["${a}"]`)),
        re,
        a,
      );
    assert.match(
      refusal(() => withFile('addresses = ["192.168.0.100"]\ninside_networks = ["192.168.0.0/24"]')),
      /masq\.toml: addresses: 192\.168\.0\.100 is on the inside network 192\.168\.0\.0\/24/,
    );
    assert.match(
      refusal(() => resolveRunConfig({ ...base, address: ["224.1.1.1"] })),
      /^--address: .*multicast/,
    );
  });
});

describe("config: ports below 1024 in interface mode", () => {
  it("are refused unless allow_low_ports = true; pool mode owns its addresses and may use them", () => {
    assert.match(
      refusal(() => withFile('ports = "22-2000"')),
      /masq\.toml: ports: 22-2000 reaches below 1024: .*ssh.*allow_low_ports = true/,
    );
    assert.match(
      refusal(() => resolveRunConfig({ ...base, ports: "1000-1100" })),
      /^--ports: 1000-1100 reaches below 1024/,
    );
    assert.deepEqual(withFile('ports = "22-2000"\nallow_low_ports = true').ports, { first: 22, last: 2000 });
    assert.deepEqual(withFile('ports = "100-2000"\naddresses = ["198.51.100.100"]').ports, {
      first: 100,
      last: 2000,
    });
    assert.deepEqual(withFile('ports = "1024-2000"').ports, { first: 1024, last: 2000 });
  });
});

describe("config: upper bounds on timeouts and limits", () => {
  it("refuses absurd values with the key and the bound", () => {
    const cases: Array<[string, RegExp]> = [
      ["[timeouts]\nudp = 1e12", /timeouts\.udp: must be at most 604800 seconds/],
      ["[timeouts]\ntcp_established = 1e300", /timeouts\.tcp_established: must be at most 604800/],
      ["[timeouts]\nallow_short_timeouts = true\nicmp = 604801", /timeouts\.icmp: must be at most/],
      ["[timeouts]\nfragment = 300", /timeouts\.fragment: must be at most 255 seconds \(RFC 791\)/],
      ["[limits]\nmax_flows_per_host = 1e300", /limits\.max_flows_per_host: must be at most 16777216/],
      ["[limits]\nmax_flows = 1e12", /limits\.max_flows: must be at most 16777216/],
      [
        "[limits]\nnew_flows_per_sec = 1e300",
        /limits\.new_flows_per_sec: must be at most 10000000 per second/,
      ],
      ["[limits]\nnew_flows_per_sec_per_host = 2e7", /limits\.new_flows_per_sec_per_host: must be at most/],
    ];
    for (const [text, re] of cases)
      assert.match(
        refusal(() => withFile(text)),
        re,
        text,
      );
    const c = withFile(
      "[timeouts]\ntcp_established = 604800\nfragment = 255\n[limits]\nnew_flows_per_sec = 10000000",
    );
    assert.equal(c.timeouts.tcpEstablishedSec, 604800);
    assert.equal(c.timeouts.fragmentSec, 255);
    assert.equal(c.limits.newFlowsPerSec, 10_000_000);
  });
});

describe("config: forward targets", () => {
  const withForward = (inside: string, extra = 'inside_networks = ["192.168.0.0/24"]') =>
    withFile(`${extra}\n[[forward]]\noutside = "8080/tcp"\ninside = "${inside}"\n`);

  it("refuses the network or broadcast address of an inside network, a pool address, or no inside host", () => {
    const cases: Array<[string, RegExp]> = [
      ["192.168.0.0:80", /forward\.0\.inside: 192\.168\.0\.0 is the network address of 192\.168\.0\.0\/24/],
      [
        "192.168.0.255:80",
        /forward\.0\.inside: 192\.168\.0\.255 is the broadcast address of 192\.168\.0\.0\/24/,
      ],
      ["10.9.9.9:80", /forward\.0\.inside: 10\.9\.9\.9 is not on an inside network \(192\.168\.0\.0\/24\)/],
    ];
    for (const [inside, re] of cases)
      assert.match(
        refusal(() => withForward(inside)),
        re,
        inside,
      );
    assert.match(
      refusal(() =>
        withForward(
          "198.51.100.100:80",
          'inside_networks = ["192.168.0.0/24"]\naddresses = ["198.51.100.100"]',
        ),
      ),
      /forward\.0\.inside: 198\.51\.100\.100 is the gateway itself/,
    );
    // A host of one inside network may be the network address of a smaller one inside it.
    assert.match(
      refusal(() => withForward("192.168.0.8:80", 'inside_networks = ["192.168.0.0/24", "192.168.0.8/30"]')),
      /forward\.0\.inside: 192\.168\.0\.8 is the network address of 192\.168\.0\.8\/30/,
    );
    assert.equal(withForward("192.168.0.2:80").forwards.length, 1);
    // A /31 has no network or broadcast address (RFC 3021): both ends are hosts.
    assert.equal(withForward("10.0.0.0:80", 'inside_networks = ["10.0.0.0/31"]').forwards.length, 1);
  });

  it("without inside_networks the targets wait for the start-up check", () => {
    assert.equal(withForward("192.168.0.255:80", "").forwards.length, 1);
  });
});

describe("start-up checks: what only the host tells", () => {
  const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
    mode: "interface",
    insideNetworks: ["192.168.0.0/24"],
    publicAddresses: ["198.51.100.2"],
    outsideNetworks: ["198.51.100.0/30"],
    gatewayAddresses: ["192.168.0.1", "198.51.100.2"],
    ...over,
  });
  const cfg = (text = "") => withFile(text);

  it("refuses inside networks that overlap the outside subnet or hold the public address", () => {
    assert.equal(startProblem(cfg(), facts()), undefined);
    assert.deepEqual(
      startProblem(
        cfg('inside_networks = ["198.51.100.0/24"]'),
        facts({ insideNetworks: ["198.51.100.0/24"] }),
      ),
      {
        key: "masq.toml: inside_networks",
        problem: "198.51.100.0/24 overlaps the outside interface's network 198.51.100.0/30",
      },
    );
    // From the interfaces (no inside_networks): the flag that chose them is named.
    assert.match(
      startProblem(cfg(), facts({ insideNetworks: ["198.51.100.0/29"] }))?.key ?? "",
      /^--inside \(the inside interfaces' networks\)$/,
    );
    // A point-to-point outside link (/32): the public address itself.
    assert.match(
      startProblem(cfg(), facts({ outsideNetworks: ["203.0.113.5/32"], publicAddresses: ["192.168.0.7"] }))
        ?.problem ?? "",
      /192\.168\.0\.0\/24 holds the public address 192\.168\.0\.7/,
    );
    assert.match(
      startProblem(
        cfg('addresses = ["192.168.0.100"]'),
        facts({ mode: "pool", publicAddresses: ["192.168.0.100"] }),
      )?.problem ?? "",
      /192\.168\.0\.100 is on the inside network 192\.168\.0\.0\/24: a public address cannot be on the LAN/,
    );
  });

  it("refuses forwards to the gateway itself or to a network or broadcast address of the interfaces' networks", () => {
    const fw = (inside: string) => cfg(`[[forward]]\noutside = "8080/tcp"\ninside = "${inside}"\n`);
    const cases: Array<[string, RegExp]> = [
      ["192.168.0.1:80", /192\.168\.0\.1 is the gateway itself/],
      ["192.168.0.0:80", /network address of 192\.168\.0\.0\/24/],
      ["192.168.0.255:80", /broadcast address of 192\.168\.0\.0\/24/],
      ["10.1.1.1:80", /not on an inside network/],
    ];
    for (const [inside, re] of cases) {
      const p = startProblem(fw(inside), facts());
      assert.equal(p?.key, "masq.toml: forward.0.inside", inside);
      assert.match(p?.problem ?? "", re, inside);
    }
    assert.equal(startProblem(fw("192.168.0.2:80"), facts()), undefined);
  });

  it("a runtime forward add is refused the same way", async () => {
    const inside = [toPrefix("192.168.0.0/24")!];
    const reg = new ForwardRegistry({
      engine: makeEngine(),
      publicAddresses: [ip(P)],
      refuseTarget: (a) => forwardTargetProblem(a, inside, [ip("192.168.0.1"), ip(P)]),
    });
    for (const [target, re] of [
      ["192.168.0.1:22", /192\.168\.0\.1 is the gateway itself/],
      ["192.168.0.255:80", /broadcast address/],
    ] as const)
      await assert.rejects(
        reg.add(parseForward({ outside: "2222/tcp", inside: target }), "runtime"),
        (err: Error) => err instanceof ForwardError && re.test(err.message),
      );
    assert.equal(reg.list().length, 0);
    await reg.add(parseForward({ outside: "2222/tcp", inside: "192.168.0.2:22" }), "runtime");
    assert.equal(reg.list().length, 1);
  });
});
