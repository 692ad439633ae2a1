// `masq run` configuration: file + flags, with errors that name the key or flag.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { resolveCleanupConfig } from "../../../src/cli/cleanup.ts";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { parsePorts } from "../../../src/control/config-addresses.ts";
import type { ConfigError } from "../../../src/control/config-error.ts";
import { engineConfigFor } from "../../../src/control/engine-config.ts";
import { errorOf } from "../../helpers/config-error.ts";

const base = { inside: ["lan0"], outside: "wan0" };

function withFile(text: string, flags: object = base) {
  return resolveRunConfig({ ...flags, config: "masq.toml" }, () => text);
}

describe("run configuration", () => {
  it("defaults: interface mode, ports 61000-65534, address-dependent filtering, RFC timeouts", () => {
    const c = resolveRunConfig(base);
    assert.deepEqual(c.inside, ["lan0"]);
    assert.deepEqual(c.addresses, []);
    assert.deepEqual(c.ports, { first: 61000, last: 65534 });
    assert.equal(c.filtering, "address-dependent");
    assert.equal(c.timeouts.tcpEstablishedSec, 7440);
    assert.equal(c.timeouts.udpSec, 300);
    assert.equal(c.timeouts.icmpSec, 60);
    assert.equal(c.timeouts.genericSec, 600);
  });

  it("timeouts.generic: the other IP protocols' timeout, checked like the others", () => {
    assert.equal(withFile("[timeouts]\ngeneric = 90").timeouts.genericSec, 90);
    assert.match(
      errorOf(() => withFile("[timeouts]\ngeneric = 9999999")),
      /timeouts\.generic: must be at most/,
    );
    assert.match(
      errorOf(() => withFile('[timeouts]\ngeneric = "x"')),
      /timeouts\.generic/,
    );
  });

  it("pool mode owns its addresses: every port (1-1023 and 1024-65535, RFC 4787 REQ-3) unless ports is set", () => {
    assert.deepEqual(resolveRunConfig({ ...base, address: ["198.51.100.100"] }).ports, {
      first: 1,
      last: 65535,
    });
    assert.deepEqual(withFile('addresses = ["198.51.100.100"]').ports, { first: 1, last: 65535 });
    assert.deepEqual(
      withFile('addresses = ["198.51.100.100"]\nports = "20000-29999"').ports,
      { first: 20000, last: 29999 },
      "the file's ports win",
    );
    assert.deepEqual(
      resolveRunConfig({ ...base, address: ["198.51.100.100"], ports: "30000-39999" }).ports,
      { first: 30000, last: 39999 },
      "--ports wins",
    );
  });

  it("reads every key of the file; flags override the file", () => {
    const c = withFile(
      [
        'inside = ["eth1", "eth2"]',
        'outside = "eth0"',
        'addresses = ["198.51.100.100", "198.51.100.104/30"]',
        'inside_networks = ["192.168.0.0/24", "10.1.2.3"]',
        'ports = "40000-49999"',
        'filtering = "endpoint-independent"',
        'tun = "nat0"',
        'control_socket = "/run/x.sock"',
        "offload = false",
        "rps = true",
        "[timeouts]",
        "udp = 600",
        "tcp_established = 8000",
        "[limits]",
        "max_flows = 1000",
        "max_flows_per_host = 10",
        "[log]",
        'level = "debug"',
      ].join("\n"),
      { outside: "wan9" },
    );
    assert.deepEqual(c.inside, ["eth1", "eth2"]);
    assert.equal(c.outside, "wan9");
    assert.deepEqual(c.addresses, ["198.51.100.100", "198.51.100.104/30"]);
    assert.deepEqual(c.insideNetworks, ["192.168.0.0/24", "10.1.2.3/32"]);
    assert.deepEqual(c.ports, { first: 40000, last: 49999 });
    assert.equal(c.filtering, "endpoint-independent");
    assert.equal(c.tun, "nat0");
    assert.equal(c.controlSocket, "/run/x.sock");
    assert.equal(c.offload, false);
    assert.equal(c.rps, true);
    assert.equal(c.timeouts.udpSec, 600);
    assert.equal(c.timeouts.tcpEstablishedSec, 8000);
    assert.equal(c.limits.maxFlows, 1000);
    assert.equal(c.limits.maxFlowsPerHost, 10);
    assert.equal(c.log.level, "debug");
  });

  it("an unknown key is refused by name, also inside a table", () => {
    assert.match(
      errorOf(() => withFile("fitering = 1")),
      /masq\.toml: fitering: unknown key/,
    );
    assert.match(
      errorOf(() => withFile("[timeouts]\nudpp = 400")),
      /timeouts\.udpp: unknown key/,
    );
  });

  it("a wrong value names the key and the problem", () => {
    assert.match(
      errorOf(() => withFile('filtering = "full-cone"')),
      /filtering: must be one of/,
    );
    assert.match(
      errorOf(() => withFile('ports = "61000"')),
      /ports: .*at least 64 ports/,
    );
    assert.match(
      errorOf(() => withFile('addresses = ["300.1.1.1"]')),
      /addresses: "300\.1\.1\.1" is not an IPv4/,
    );
    assert.match(
      errorOf(() => withFile("[limits]\nmax_flows = 3")),
      /limits\.max_flows/,
    );
    assert.match(
      errorOf(() => withFile("inside = [")),
      /masq\.toml: not valid TOML/,
    );
  });

  it("timeouts below the RFC minimums need allow_short_timeouts (RFC 4787 REQ-5, RFC 5382 REQ-5)", () => {
    assert.match(
      errorOf(() => withFile("[timeouts]\nudp = 60")),
      /timeouts\.udp: 60 s is below the RFC minimum of 120 s/,
    );
    assert.match(
      errorOf(() => withFile("[timeouts]\ntcp_established = 3600")),
      /minimum of 7440/,
    );
    const c = withFile("[timeouts]\nallow_short_timeouts = true\nudp = 4");
    assert.equal(c.timeouts.udpSec, 4);
  });

  it("TCP tracking: the half-open timeout (at least 30 s) and the half-open cap", () => {
    const d = resolveRunConfig(base);
    assert.equal(d.timeouts.tcpHalfOpenSec, 60);
    assert.equal(d.limits.maxHalfOpen, undefined, "a quarter of max_flows, decided by the engine");
    const c = withFile(
      ["[timeouts]", "tcp_half_open = 45", "[limits]", "max_flows = 4096", "max_half_open = 1000"].join("\n"),
    );
    assert.equal(c.timeouts.tcpHalfOpenSec, 45);
    assert.equal(c.limits.maxHalfOpen, 1000);
    assert.match(
      errorOf(() => withFile("[timeouts]\ntcp_half_open = 5")),
      /timeouts\.tcp_half_open: 5 s is below the minimum of 30 s/,
    );
    assert.equal(
      withFile("[timeouts]\nallow_short_timeouts = true\ntcp_half_open = 5").timeouts.tcpHalfOpenSec,
      5,
    );
    assert.match(
      errorOf(() => withFile("[limits]\nmax_flows = 1024\nmax_half_open = 2048")),
      /limits\.max_half_open: 2048 is above limits\.max_flows \(1024\)/,
    );
    assert.match(
      errorOf(() => withFile("[limits]\nmax_half_open = 0")),
      /limits\.max_half_open/,
    );
  });

  it("a connection closed by a reset is kept 4 minutes; unsolicited SYNs are answered only when asked", () => {
    const d = resolveRunConfig(base);
    assert.equal(d.timeouts.tcpClosedSec, 240, "RFC 7857 §2.2");
    assert.equal(d.unsolicitedSyn, "drop");
    assert.equal(withFile('unsolicited_syn = "port-unreachable"').unsolicitedSyn, "port-unreachable");
    assert.match(
      errorOf(() => withFile('unsolicited_syn = "rst"')),
      /unsolicited_syn: must be one of drop, port-unreachable/,
    );
  });

  it("flags are checked too, naming the flag", () => {
    assert.match(
      errorOf(() => resolveRunConfig({ outside: "wan0" })),
      /^--inside: missing/,
    );
    assert.match(
      errorOf(() => resolveRunConfig({ inside: ["lan0"] })),
      /^--outside: missing/,
    );
    assert.match(
      errorOf(() => resolveRunConfig({ ...base, filtering: "cone" })),
      /^--filtering: must be one of/,
    );
    assert.match(
      errorOf(() => resolveRunConfig({ ...base, ports: "70000-70100" })),
      /^--ports:/,
    );
    assert.match(
      errorOf(() => resolveRunConfig({ inside: ["wan0"], outside: "wan0" })),
      /both an inside and the outside/,
    );
    assert.match(
      errorOf(() => resolveRunConfig({ ...base, address: ["198.51.100.1/8"] })),
      /^--address:/,
    );
    assert.deepEqual(resolveRunConfig({ ...base, inside: ["lan0,lan1"] }).inside, ["lan0", "lan1"]);
  });

  it("the outside TUN: <tun>-out by default, tun_outside or --tun-outside to name it, a clear error when too long", () => {
    assert.equal(resolveRunConfig(base).tunOutside, "masq0-out");
    assert.equal(resolveRunConfig({ ...base, tun: "nat7" }).tunOutside, "nat7-out");
    assert.equal(withFile('tun = "gw0"\ntun_outside = "gw0-wan"').tunOutside, "gw0-wan");
    assert.equal(
      withFile('tun_outside = "a"', { ...base, tunOutside: "b" }).tunOutside,
      "b",
      "flag over file",
    );
    assert.equal(resolveRunConfig({ ...base, tun: "masq-lan-00" }).tunOutside, "masq-lan-00-out");
    const long = errorOf(() => resolveRunConfig({ ...base, tun: "masq-inside0" }));
    assert.match(long, /^tun: "masq-inside0" is too long to name the outside TUN after it/);
    assert.match(long, /masq-inside0-out has 16 characters, at most 15/);
    assert.match(long, /set tun_outside \(--tun-outside\)/);
    assert.equal(
      resolveRunConfig({ ...base, tun: "masq-inside0", tunOutside: "masq-out0" }).tunOutside,
      "masq-out0",
    );
    assert.match(
      errorOf(() => withFile('tun_outside = "masq0"')),
      /tun_outside: must differ from the inside TUN masq0/,
    );
    assert.match(
      errorOf(() => resolveRunConfig({ ...base, tunOutside: "wan0" })),
      /--tun-outside: wan0 is already used/,
    );
    assert.match(
      errorOf(() => resolveRunConfig({ ...base, tunOutside: "bad name" })),
      /--tun-outside: "bad name" is not/,
    );
  });

  it("masq cleanup reads the same file and flags, with no interface required", () => {
    assert.deepEqual(resolveCleanupConfig({}), {
      tun: "masq0",
      tunOutside: "masq0-out",
      stateDir: "/run/masq",
      addresses: [],
    });
    const text = 'outside = "wan0"\naddresses = ["198.51.100.96/30"]\ntun = "gw0"\nstate_dir = "/run/gw"';
    assert.deepEqual(
      resolveCleanupConfig({ config: "masq.toml" }, () => text),
      {
        tun: "gw0",
        tunOutside: "gw0-out",
        stateDir: "/run/gw",
        outside: "wan0",
        addresses: ["198.51.100.96/30"],
      },
    );
    assert.match(
      errorOf(() => resolveCleanupConfig({ tun: "masq-inside0" })),
      /too long/,
    );
  });

  it("port ranges", () => {
    assert.deepEqual(parsePorts("61000-65534", "x"), { first: 61000, last: 65534 });
    assert.throws(() => parsePorts("65534-61000", "x"), /first not above the last/);
    assert.throws(() => parsePorts("abc", "x"), /not a port range/);
  });
});

describe("the README's configuration reference", () => {
  it("is a valid configuration (the documented keys are the real ones)", () => {
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
    const start = readme.indexOf("```toml\n");
    assert.ok(start >= 0, "README has a TOML sample");
    const toml = readme.slice(start + 8, readme.indexOf("```", start + 8));
    const cfg = resolveRunConfig({ config: "README.md" }, () => toml);
    assert.equal(cfg.outside, "eth0");
    assert.deepEqual(cfg.inside, ["eth1"]);
  });
});

describe("mss_clamp", () => {
  it('defaults to "pmtu"; takes "off", a number of bytes, and --mss-clamp over the file', () => {
    assert.equal(resolveRunConfig(base).mssClamp, "pmtu");
    assert.equal(withFile('mss_clamp = "off"').mssClamp, "off");
    assert.equal(withFile("mss_clamp = 1400").mssClamp, 1400);
    assert.equal(withFile('mss_clamp = "1400"').mssClamp, 1400);
    assert.equal(withFile("mss_clamp = 1400", { ...base, mssClamp: "pmtu" }).mssClamp, "pmtu");
    assert.equal(resolveRunConfig({ ...base, mssClamp: "1360" }).mssClamp, 1360);
  });

  it("a bad value is refused with the key named (MASQ_ERR_CONFIG_INVALID)", () => {
    for (const bad of [
      "mss_clamp = 535",
      "mss_clamp = 65496",
      "mss_clamp = 1400.5",
      'mss_clamp = "auto"',
      "mss_clamp = true",
    ])
      assert.match(
        errorOf(() => withFile(bad)),
        /^masq\.toml: mss_clamp: .*must be "pmtu", "off" or an MSS of 536-65495 bytes/,
        bad,
      );
    for (const bad of ["on", "-1", "1e3", "100000"])
      assert.match(
        errorOf(() => resolveRunConfig({ ...base, mssClamp: bad })),
        /^--mss-clamp: .*536-65495/,
        bad,
      );
    try {
      withFile("mss_clamp = 10");
    } catch (err) {
      assert.equal((err as ConfigError).code, "MASQ_ERR_CONFIG_INVALID");
    }
  });
});

const natLogHost = {
  mode: "interface" as const,
  publicAddresses: ["198.51.100.2"],
  insideNetworks: ["192.168.0.0/24"],
  mtu: 1500,
};

describe("[nat_log] configuration", () => {
  it("is off by default: the engine records no events", () => {
    const c = resolveRunConfig(base);
    assert.equal(c.natLog.syslog, undefined);
    assert.equal(engineConfigFor(c, natLogHost).natEvents, undefined);
  });

  it("a target turns the engine's ring on, sized by buffer_events, sessions as asked", () => {
    const c = withFile('[nat_log]\nsyslog = "tcp://192.0.2.10:514"\nbuffer_events = 1024\nsessions = true');
    assert.deepEqual(c.natLog.syslog?.target, { kind: "tcp", host: "192.0.2.10", port: 514 });
    assert.deepEqual(engineConfigFor(c, natLogHost).natEvents, { capacity: 1024, sessions: true });
  });

  it("refuses a bad target, an unknown key and a tiny buffer, naming the key", () => {
    assert.match(
      errorOf(() => withFile('[nat_log]\nsyslog = "514"')),
      /masq\.toml: nat_log\.syslog: "514" must be/,
    );
    assert.match(
      errorOf(() => withFile('[nat_log]\nipfix = "unix:/x"')),
      /nat_log\.ipfix: .*udp:\/\/HOST:PORT/,
    );
    assert.match(
      errorOf(() => withFile("[nat_log]\nsyslogs = 1")),
      /nat_log\.syslogs: unknown key/,
    );
    assert.match(
      errorOf(() => withFile("[nat_log]\nbuffer_events = 2")),
      /nat_log\.buffer_events: must be at least 16/,
    );
  });
});

const pool = { ...base, address: ["198.51.100.100"] };

describe("[cgnat]", () => {
  it("is off by default; port_block and max_blocks_per_host are read", () => {
    assert.deepEqual(withFile("", pool).cgnat, { portBlock: 0, maxBlocksPerHost: 4 });
    assert.deepEqual(withFile("[cgnat]\nport_block = 512\nmax_blocks_per_host = 8", pool).cgnat, {
      portBlock: 512,
      maxBlocksPerHost: 8,
    });
  });

  it("refuses a block larger than the range, naming the key", () => {
    assert.match(
      errorOf(() => withFile('ports = "61000-61100"\n[cgnat]\nport_block = 512', pool)),
      /masq\.toml: cgnat\.port_block.*512 ports do not fit/,
    );
    assert.match(
      errorOf(() => withFile("[cgnat]\nmax_blocks_per_host = 2", pool)),
      /cgnat\.max_blocks_per_host.*needs cgnat\.port_block/,
    );
  });

  it("deterministic mode: reads the inside prefix, and refuses a plan with too few ports per address", () => {
    const c = withFile('[cgnat]\nmode = "deterministic"\ninside = "100.64.0.0/22"', {
      ...pool,
      address: ["198.51.100.100", "198.51.100.101"],
    });
    assert.equal(c.cgnat.deterministicInside, "100.64.0.0/22");
    assert.match(
      errorOf(() => withFile('[cgnat]\nmode = "deterministic"\ninside = "100.64.0.0/22"', pool)),
      /masq\.toml: cgnat\.inside.*1024 inside addresses on 1 outside addresses leave 63 ports/,
    );
    assert.match(
      errorOf(() => withFile('[cgnat]\nmode = "deterministic"', pool)),
      /cgnat\.inside.*needs its inside prefix/,
    );
    assert.match(
      errorOf(() =>
        withFile('[cgnat]\nmode = "deterministic"\ninside = "100.64.0.0/24"', {
          inside: ["lan0"],
          outside: "wan0",
        }),
      ),
      /cgnat\.inside.*needs pool mode/,
    );
    assert.match(
      errorOf(() => withFile('[cgnat]\nmode = "nope"', pool)),
      /cgnat\.mode/,
    );
    assert.match(
      errorOf(() => withFile('[cgnat]\ninside = "100.64.0.0/24"', pool)),
      /cgnat\.inside/,
    );
  });
});
