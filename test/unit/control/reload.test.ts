// Live reload: which settings change live and which need a restart (reload-plan.ts), and the
// reloader applying a new file all or nothing to a real engine, ALG registry and forwards.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { pino } from "pino";
import { ALGS } from "../../../src/alg/algs.ts";
import { AlgRegistry } from "../../../src/alg/registry.ts";
import { defaultRunConfig, type RunConfig, resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import { connsBody } from "../../../src/control/conns-listing.ts";
import { enginePolicyFor } from "../../../src/control/engine-config.ts";
import { createMetrics } from "../../../src/control/metrics.ts";
import { engineLive, Reloader, ReloadRefusedError } from "../../../src/control/reload.ts";
import { planReload, RELOAD_KEYS, restartMessage } from "../../../src/control/reload-plan.ts";
import { ControlServer } from "../../../src/control/server.ts";
import { namedCounters } from "../../../src/nat/counters.ts";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { IPPROTO_TCP } from "../../../src/packet/ipv4.ts";
import { ForwardRegistry } from "../../../src/portmap/forwards.ts";
import { cli } from "../../helpers/cli.ts";
import { ip, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "../nat/engine-helpers.ts";

const BASE = `
inside = "lan0"
outside = "wan0"
inside_networks = ["192.168.0.0/24"]
addresses = ["${P}"]
`;

/** A resolved config from the base plus `extra` TOML, as `masq run --config m.toml` reads it. */
function config(extra = ""): RunConfig {
  return resolveRunConfig({ config: "m.toml" }, () => `${BASE}\n${extra}`);
}

/** Every leaf path of a RunConfig (arrays and ALG entries are one value each). */
function leafPaths(o: Record<string, unknown>, prefix = ""): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    v !== null && typeof v === "object" && !Array.isArray(v) && prefix !== "alg."
      ? leafPaths(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}`],
  );
}

describe("reload plan: what changes live and what needs a restart", () => {
  it("names every setting of the configuration (a new key must be classed)", () => {
    const c = config() as RunConfig & Record<string, unknown>;
    // The optional settings, so their paths are there to be found.
    c.portSeed = 1;
    c.limits.maxHalfOpen = 10;
    c.metrics.listen = "127.0.0.1:9753";
    const covered = (p: string) => RELOAD_KEYS.some((k) => p === k.path || p.startsWith(`${k.path}.`));
    const missing = leafPaths(c).filter((p) => !covered(p));
    assert.deepEqual(missing, [], "settings no reload key covers");
  });

  it("firewall rules, limits, timeouts, ALG ports, forwards and the log level are live", () => {
    const next = config(`
filtering = "endpoint-independent"
[timeouts]
udp = 600
[limits]
max_flows_per_host = 100
new_flows_per_sec = 50
[[firewall.rule]]
direction = "outbound"
action = "reject"
protocol = "tcp"
destination_ports = 25
[[forward]]
outside = "8080/tcp"
inside = "192.168.0.2:80"
[alg.ftp]
ports = [21, 2121]
[portmap]
max_per_host = 8
[log]
level = "debug"
`);
    const plan = planReload(config(), next);
    assert.deepEqual(plan.restart, []);
    assert.deepEqual(
      plan.live.map((c) => c.key),
      [
        "filtering",
        "timeouts.udp",
        "limits.max_flows_per_host",
        "limits.new_flows_per_sec",
        "forward",
        "firewall.rule",
        "portmap.max_per_host",
        "alg.ftp",
        "log.level",
      ],
    );
  });

  it("the TUN, the interfaces, the pool's addresses and the table sizes need a restart", () => {
    const next = resolveRunConfig(
      { config: "m.toml" },
      () => `
inside = "lan1"
outside = "wan0"
inside_networks = ["192.168.0.0/24"]
addresses = ["198.51.100.3"]
tun = "masq1"
[limits]
max_flows = 1000
`,
    );
    const plan = planReload(config(), next);
    assert.deepEqual(
      plan.restart.map((c) => c.key),
      ["inside", "addresses", "tun", "tun_outside", "limits.max_flows"],
    );
    const message = restartMessage(plan.restart);
    assert.match(message, /tun: needs a restart \("masq0" → "masq1"/);
    assert.match(message, /limits\.max_flows: needs a restart \(262144 → 1000/);
  });

  it("a flag given at start still wins: a file's change under it is no change", () => {
    const flags = { config: "m.toml", tun: "masq7" };
    const before = resolveRunConfig(flags, () => BASE);
    const after = resolveRunConfig(flags, () => `${BASE}\ntun = "masq1"\n`);
    assert.deepEqual(planReload(before, after), { live: [], restart: [] });
  });
});

/** A reloader over a real engine, ALG registry and forward registry, reading `file.text`. */
function rig(initial = "") {
  const file = { text: `${BASE}\n${initial}` };
  const running = resolveRunConfig({ config: "m.toml" }, () => file.text);
  const engine = makeEngine({ ...enginePolicyFor(running), ports: { tcp: ports, udp: ports, icmp: ports } });
  const algs = new AlgRegistry(engine, running.alg);
  engine.attachAlg(algs);
  const forwards = new ForwardRegistry({ engine, publicAddresses: [ip(P)] });
  const log = quietLog();
  const reloader = new Reloader({
    running,
    resolve: () => resolveRunConfig({ config: "m.toml" }, () => file.text),
    live: engineLive(engine, algs),
    forwards,
    log,
    setBusyPoll: () => undefined,
  });
  return { file, running, engine, algs, forwards, log, reloader };
}
const ports = { first: 1, last: 65535 };

/** A logger whose records go nowhere (a reload sets its level, so `enabled: false` would not hold). */
function quietLog() {
  return pino({}, { write: () => undefined });
}

const BLOCK_DNS = `
[[firewall.rule]]
name = "no dns"
direction = "outbound"
action = "drop"
protocol = "udp"
destination_ports = 53
`;

const dns = (sport: number) => udp({ src: "192.168.0.2", dst: REMOTE, sport, dport: 53 });

describe("reloader: applies a new file all or nothing", () => {
  it("a new firewall rule refuses new flows only; a flow already admitted goes on", async () => {
    const r = rig();
    assert.equal(run(r.engine, dns(5000)).verdict, FORWARD);
    r.file.text += BLOCK_DNS;
    const report = await r.reloader.reload();
    assert.equal(report.result, "applied");
    assert.deepEqual(report.changed, ["firewall.rule"]);
    assert.equal(run(r.engine, dns(5000)).verdict, FORWARD, "the existing flow");
    assert.equal(run(r.engine, dns(5001)).verdict, DROP, "a new flow");
    assert.equal(namedCounters(r.engine.counters).drop_firewall_drop, 1);
    assert.equal(r.engine.firewall?.list()[0].name, "no dns");
    assert.deepEqual(r.running.firewall, r.engine.config.firewall);
    assert.equal(r.reloader.stats.ok, 1);
  });

  it("timeouts, limits, the log level and the ALG ports take effect", async () => {
    const r = rig();
    assert.equal(r.algs.classify(IPPROTO_TCP, 2121), 0);
    r.file.text += `
[timeouts]
udp = 900
[limits]
max_flows_per_host = 3
[alg.ftp]
ports = [2121]
[log]
level = "warn"
`;
    await r.reloader.reload();
    assert.equal(r.engine.config.timeouts.udpSec, 900);
    assert.equal(r.engine.config.maxFlowsPerHost, 3);
    assert.equal(r.log.level, "warn");
    assert.notEqual(r.algs.classify(IPPROTO_TCP, 2121), 0, "FTP watches 2121");
    assert.equal(r.algs.classify(IPPROTO_TCP, 21), 0, "and no longer 21");
    for (let i = 0; i < 3; i++) assert.equal(run(r.engine, dns(6000 + i)).verdict, FORWARD);
    assert.equal(run(r.engine, dns(6003)).verdict, DROP, "the host's fourth flow");
    assert.equal(namedCounters(r.engine.counters).drop_host_flow_limit, 1);
  });

  it("forwards of the file are added and removed; one added at runtime stays", async () => {
    const r = rig(`
[[forward]]
outside = "8080/tcp"
inside = "192.168.0.2:80"
`);
    for (const spec of r.running.forwards) await r.forwards.add(spec, "config");
    await r.forwards.add(
      { proto: "udp", first: 5000, last: 5000, inAddr: ip("192.168.0.3"), inPort: 5000 },
      "runtime",
    );
    r.file.text = `${BASE}
[[forward]]
outside = "8081/tcp"
inside = "192.168.0.2:80"
`;
    const report = await r.reloader.reload();
    assert.deepEqual(report.forwards, {
      added: ["8081/tcp 192.168.0.2:80"],
      removed: ["8080/tcp 192.168.0.2:80"],
    });
    assert.deepEqual(
      r.forwards.views().map((v) => `${v.text} ${v.source}`),
      ["5000/udp 192.168.0.3:5000 runtime", "8081/tcp 192.168.0.2:80 config"],
    );
  });

  it("a forward that cannot be added undoes the reload: the old forwards and settings stay", async () => {
    const r = rig(`
[[forward]]
outside = "8080/tcp"
inside = "192.168.0.2:80"
`);
    for (const spec of r.running.forwards) await r.forwards.add(spec, "config");
    // A runtime forward holds 9000/tcp: the file's new forward of it cannot be had.
    await r.forwards.add(
      { proto: "tcp", first: 9000, last: 9000, inAddr: ip("192.168.0.3"), inPort: 22 },
      "runtime",
    );
    r.file.text = `${BASE}${BLOCK_DNS}
[[forward]]
outside = "9000/tcp"
inside = "192.168.0.2:9000"
`;
    await assert.rejects(r.reloader.reload(), /9000/);
    assert.deepEqual(
      r.forwards.views().map((v) => v.text),
      ["9000/tcp 192.168.0.3:22", "8080/tcp 192.168.0.2:80"],
      "8080 is back",
    );
    assert.equal(r.engine.firewall, null, "the firewall rule was not applied");
    assert.deepEqual(r.running.firewall, []);
    assert.deepEqual(r.reloader.stats, { ...r.reloader.stats, ok: 0, failed: 1 });
  });

  it("a change that needs a restart is refused naming the key, and nothing changes", async () => {
    const r = rig();
    r.file.text = `${BASE}\ntun = "masq1"\n${BLOCK_DNS}\n[timeouts]\nudp = 900\n`;
    await assert.rejects(r.reloader.reload(), (err: unknown) => {
      assert.ok(err instanceof ReloadRefusedError);
      assert.equal(err.code, "MASQ_ERR_RELOAD_NEEDS_RESTART");
      assert.match(err.message, /tun: needs a restart/);
      assert.deepEqual(
        err.keys.map((k) => k.key),
        ["tun", "tun_outside"],
      );
      return true;
    });
    assert.equal(r.engine.firewall, null);
    assert.equal(r.engine.config.timeouts.udpSec, 300);
    assert.equal(r.running.tun, "masq0");
    assert.equal(r.reloader.stats.refused, 1);
    assert.equal(r.reloader.stats.last?.result, "refused");
  });

  it("a file that does not validate changes nothing and names the problem", async () => {
    const r = rig();
    r.file.text = `${BASE}${BLOCK_DNS}\n[timeouts]\nudp = 10\n`;
    await assert.rejects(r.reloader.reload(), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /m\.toml: timeouts\.udp: 10 s is below the RFC minimum/);
      return true;
    });
    assert.equal(r.engine.firewall, null);
    assert.equal(r.reloader.stats.failed, 1);
  });

  it("--check reports what would change and applies nothing, uncounted", async () => {
    const r = rig();
    r.file.text += BLOCK_DNS;
    const report = await r.reloader.reload(true);
    assert.deepEqual(report, {
      result: "checked",
      changed: ["firewall.rule"],
      forwards: { added: [], removed: [] },
    });
    assert.equal(r.engine.firewall, null);
    r.file.text = `tun = "masq1"\n${r.file.text}`;
    await assert.rejects(r.reloader.reload(true), /a reload would be refused: tun: needs a restart/);
    assert.deepEqual(r.reloader.stats, { ok: 0, refused: 0, failed: 0 });
  });

  it("the same file again is a reload with no change", async () => {
    const r = rig(BLOCK_DNS);
    const before = r.engine.firewall;
    assert.deepEqual(await r.reloader.reload(), {
      result: "unchanged",
      changed: [],
      forwards: { added: [], removed: [] },
    });
    assert.equal(r.engine.firewall, before, "the rules' hit counters are kept");
  });

  it("counts reloads by result in Prometheus", async () => {
    const r = rig();
    await r.reloader.reload();
    r.file.text = "not = [toml";
    await r.reloader.reload().catch(() => undefined);
    const metrics = createMetrics({
      engine: () => r.engine.stats(),
      datapath: () => ({}),
      reloads: () => r.reloader.stats,
    });
    const text = await metrics.metrics();
    assert.match(text, /masq_reloads_total\{result="ok"\} 1/);
    assert.match(text, /masq_reloads_total\{result="failed"\} 1/);
    assert.match(text, /masq_reloads_total\{result="refused"\} 0/);
  });

  it("a masq started without --config has nothing to reload", async () => {
    const running = { ...defaultRunConfig(), inside: ["lan0"], outside: "wan0" };
    const engine = makeEngine();
    const reloader = new Reloader({
      running,
      resolve: () => running,
      live: engineLive(engine, new AlgRegistry(engine, running.alg, undefined, ALGS)),
      forwards: new ForwardRegistry({ engine, publicAddresses: [ip(P)] }),
      log: quietLog(),
      setBusyPoll: () => undefined,
    });
    await assert.rejects(reloader.reload(), /started without --config/);
  });
});

describe("masq reload over the control socket", () => {
  it("prints what changed, and refuses a restart-only change with exit code 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "masqrl-ctl-"));
    const socket = join(dir, "masq.sock");
    const r = rig();
    const server = await ControlServer.start(socket, {
      health: () => ({ ok: true }),
      conns: (q) => connsBody(r.engine, q),
      stats: () => ({}),
      metrics: async () => ({ contentType: "text/plain", body: "" }),
      reload: (check) => r.reloader.reload(check),
    });
    try {
      r.file.text += BLOCK_DNS;
      const checked = await cli(["reload", "--check", "--socket", socket]);
      assert.equal(checked.code, 0, checked.err);
      assert.equal(checked.out, "the config is valid; a reload would change: firewall.rule\n");
      assert.equal(r.engine.firewall, null);
      const done = await cli(["reload", "--socket", socket]);
      assert.equal(done.code, 0, done.err);
      assert.equal(done.out, "reloaded: firewall.rule\n");
      r.file.text = `tun = "masq1"\n${r.file.text}`;
      const refused = await cli(["reload", "--socket", socket]);
      assert.equal(refused.code, 2);
      assert.match(refused.err, /reload refused, nothing changed: tun: needs a restart/);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("reloader: masq stopping", () => {
  it("waits for a reload in progress and refuses later ones", async () => {
    const r = rig();
    r.file.text += BLOCK_DNS;
    const inFlight = r.reloader.reload();
    await r.reloader.close();
    assert.equal((await inFlight).result, "applied");
    await assert.rejects(r.reloader.reload(), /masq is stopping/);
  });
});
