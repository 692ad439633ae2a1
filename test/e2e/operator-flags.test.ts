// End to end: what a newcomer reaches for first. Prometheus scrapes masq over HTTP
// (`--metrics`), and the text passes Prometheus' own parser (`promtool check metrics`);
// `--portmap` turns NAT-PMP on without a config file; runtime forwards belong to the network
// namespace whose masq added them, not to every masq with the same TUN name.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ForwardsReply, StatsReply } from "../../src/control/format.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const GW = "192.168.0.1";

describe("operator flags: --metrics, --portmap, forwards per namespace", { skip }, () => {
  let net: MasqNetwork;
  let other: MasqNetwork;
  let masq: MasqProcess | undefined;
  let tmp: string;
  const services: LabProcess[] = [];

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqops-"));
    net = await buildMasqNetwork({ prefix: "masqops", mode: "interface" });
    other = await buildMasqNetwork({ prefix: "masqops2", mode: "interface" });
    const svc = net.lab.spawn(net.inside[0].ns, [
      ...labScript("inet-service"),
      "--http",
      "8080",
      "--udp",
      "7007",
    ]);
    services.push(svc);
    await svc.waitFor(/"proto":"udp"/, 10_000);
  });

  after(async () => {
    try {
      for (const s of services) if (s.running) await s.kill("SIGTERM", 5000);
      if (masq?.proc.running) await masq.stop();
    } finally {
      await net?.destroy();
      await other?.destroy();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  });

  const state = () => join(tmp, "state");

  it("--metrics serves the metrics over HTTP on loopback, and promtool accepts the text", async () => {
    masq = await startMasq(net, {
      config: writeState(tmp, state()),
      // --busy-poll rides along: the ping replies below are read while it spins.
      flags: ["--metrics", "127.0.0.1:9753", "--portmap", "--busy-poll", "5000"],
    });
    await masq.proc.waitFor(/Prometheus metrics served/, 5000);
    // Some traffic, so the counters are not all zero.
    const ping = await net.lab.exec(net.inside[1].ns, [
      "ping",
      "-c",
      "5",
      "-i",
      "0.2",
      "-W",
      "2",
      net.inet.addr,
    ]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    const { device } = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
    // An echo reply comes back well within the 2 ms one wake-up spins at most: read by the spin.
    assert.ok((device.rxBusyPolled ?? 0) > 0, `rxBusyPolled ${device.rxBusyPolled}`);
    const r = await net.lab.exec(net.gate.ns, [
      "curl",
      "-sS",
      "--max-time",
      "5",
      "http://127.0.0.1:9753/metrics",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^masq_events_total\{event="translated_out"\} [1-9]/m);
    assert.match(r.stdout, /^masq_drops_total\{reason="no_mapping"\} \d/m);
    // The process metrics prom-client collects by default: CPU, memory, event-loop lag, GC.
    for (const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
      "nodejs_gc_duration_seconds",
    ])
      assert.match(r.stdout, new RegExp(`^# TYPE ${name} `, "m"), name);
    const check = await net.lab.exec(net.gate.ns, ["promtool", "check", "metrics"], { input: r.stdout });
    // promtool exits 1 when the text does not parse, 3 when it parses but has lint remarks. The
    // only remarks allowed are about prom-client's own gauges named *_total (its default process
    // metrics, which masq does not name); every masq_* family is lint-clean.
    assert.ok(
      check.code === 0 || check.code === 3,
      `promtool exit ${check.code}: ${check.stdout}${check.stderr}`,
    );
    const remarks = `${check.stdout}${check.stderr}`
      .split("\n")
      .filter((l) => l.trim() !== "" && !/^nodejs_active_\w+_total non-counter metrics/.test(l));
    assert.deepEqual(remarks, []);
    // The control socket serves the same families.
    const viaSocket = await masq.cli(["stats", "--prometheus"]);
    assert.match(viaSocket, /^# TYPE process_cpu_seconds_total counter/m);
    // Only /metrics is served.
    const other404 = await net.lab.exec(net.gate.ns, [
      "curl",
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "http://127.0.0.1:9753/",
    ]);
    assert.equal(other404.stdout, "404");
    // Not reachable from an inside host: it listens on the gateway's loopback only.
    const fromInside = await net.lab.exec(net.inside[0].ns, [
      "curl",
      "-sS",
      "--max-time",
      "3",
      `http://${GW}:9753/metrics`,
    ]);
    assert.notEqual(fromInside.code, 0);
  });

  it("--portmap: natpmpc maps a port with no config file section for it", async () => {
    assert.ok(masq);
    const r = await net.lab.exec(
      net.inside[0].ns,
      ["natpmpc", "-g", GW, "-a", "8080", "8080", "tcp", "120"],
      {
        timeoutMs: 15_000,
      },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const port = /Mapped public port (\d+) protocol TCP/.exec(r.stdout)?.[1];
    assert.ok(port, r.stdout);
    const page = await net.lab.exec(net.inet.ns, [
      "curl",
      "-sS",
      "--max-time",
      "5",
      `http://${net.publicAddr}:${port}/`,
    ]);
    assert.equal(page.code, 0, page.stderr);
  });

  it("a runtime forward is kept under this namespace's name, and forward list says where", async () => {
    assert.ok(masq);
    await masq.cli(["forward", "add", "8088/tcp", "192.168.0.3:8080", "--note", "web"]);
    const reply = JSON.parse(await masq.cli(["forward", "list", "--json"])) as ForwardsReply;
    assert.ok(reply.stateFile?.includes(net.gate.ns), reply.stateFile);
    assert.match(
      await masq.cli(["forward", "list"]),
      /runtime forwards are kept in .*forwards-masq0\.masqops-/,
    );
    const files = readdirSync(state()).filter((f) => f.startsWith("forwards-"));
    assert.deepEqual(files, [reply.stateFile?.split("/").at(-1)]);
    await masq.stop();
    masq = undefined;
  });

  it("a masq in another namespace, same TUN name and state dir, does not load that forward", async () => {
    const m = await startMasq(other, { config: writeState(tmp, state()) });
    try {
      const reply = JSON.parse(await m.cli(["forward", "list", "--json"])) as ForwardsReply;
      assert.deepEqual(reply.forwards, []);
      assert.ok(reply.stateFile?.includes(other.gate.ns), reply.stateFile);
    } finally {
      await m.stop();
    }
    // Both namespaces' forwards files are there, apart.
    assert.equal(readdirSync(state()).filter((f) => f.startsWith("forwards-")).length, 1);
  });

  it("the first gateway, restarted, has its forward back", async () => {
    masq = await startMasq(net, { config: writeState(tmp, state()) });
    const reply = JSON.parse(await masq.cli(["forward", "list", "--json"])) as ForwardsReply;
    assert.deepEqual(
      reply.forwards.map((f) => [f.protocol, f.outside.endsWith(":8088"), f.inside, f.source]),
      [["tcp", true, "192.168.0.3:8080", "runtime"]],
    );
  });
});

/** A config that only moves the state dir (shared by the test's gateways) out of /run/masq. */
function writeState(tmp: string, dir: string): string {
  const file = join(tmp, "state.toml");
  writeFileSync(file, `state_dir = "${dir}"\n`);
  return file;
}
