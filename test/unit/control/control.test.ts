// The control API over a Unix socket and the client commands' output.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { main } from "../../../src/cli/main.ts";
import { ControlClientError, controlGet } from "../../../src/control/client.ts";
import { connsBody } from "../../../src/control/conns-listing.ts";
import { formatStats } from "../../../src/control/format.ts";
import { createMetrics } from "../../../src/control/metrics.ts";
import { ControlServer } from "../../../src/control/server.ts";
import { FORWARD } from "../../../src/nat/engine.ts";
import { udp } from "../../helpers/packets.ts";
import { makeEngine } from "../nat/engine-helpers.ts";

describe("control API", () => {
  let dir: string;
  let socket: string;
  let server: ControlServer;
  const engine = makeEngine();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "masq-ctl-"));
    socket = join(dir, "masq.sock");
    const p = udp({ src: "192.168.0.2", dst: "203.0.113.10", sport: 40000, dport: 53, payload: 4 });
    assert.equal(engine.process(p, 0, p.length, 1000), FORWARD);
    const metrics = createMetrics({
      engine: () => engine.stats(),
      datapath: () => ({ packets: 1 }),
      devices: () => ({
        masq0: { rxPackets: 5, kernelQueueDrops: 2 },
        "masq0-out": { rxPackets: 7, kernelQueueDrops: 0 },
      }),
      portmap: () => ({ natpmp_map_success: 3, mappings_active: 1 }),
    });
    server = await ControlServer.start(socket, {
      health: () => ({ ok: true }),
      conns: (q) => connsBody(engine, q),
      stats: () => ({
        uptimeSec: 1,
        mode: "pool",
        publicAddresses: ["198.51.100.100"],
        engine: engine.stats(),
        datapath: { packets: 1 },
        device: { rxPackets: 12, kernelQueueDrops: 2 },
        devices: {
          masq0: { rxPackets: 5, kernelQueueDrops: 2 },
          "masq0-out": { rxPackets: 7, kernelQueueDrops: 0 },
        },
      }),
      metrics: async () => ({ contentType: metrics.contentType, body: await metrics.metrics() }),
    });
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists connections and counters as JSON", async () => {
    const conns = (await controlGet(socket, "/v1/conns")) as {
      total: number;
      flows: Array<{ remote: object }>;
    };
    assert.equal(conns.total, 1);
    assert.deepEqual(conns.flows[0].remote, { addr: "203.0.113.10", port: 53 });
    const stats = (await controlGet(socket, "/v1/stats")) as { engine: { counters: Record<string, number> } };
    assert.ok("drop_no_mapping" in stats.engine.counters);
  });

  it("serves Prometheus metrics read from the engine's counters", async () => {
    const text = String(await controlGet(socket, "/metrics"));
    assert.match(text, /^masq_flows 1$/m);
    assert.match(text, /masq_drops_total\{reason="no_mapping"\} 0/);
    assert.match(text, /masq_portmap_total\{counter="natpmp_map_success"\} 3/);
    assert.match(text, /^masq_portmap_mappings 1$/m);
    assert.match(text, /^masq_tun_total\{device="masq0",counter="rxPackets"\} 5$/m);
    assert.match(text, /^masq_tun_total\{device="masq0",counter="kernelQueueDrops"\} 2$/m);
    assert.match(text, /^masq_tun_total\{device="masq0-out",counter="rxPackets"\} 7$/m);
  });

  it("refuses bad requests with a clear error", async () => {
    await assert.rejects(controlGet(socket, "/v1/conns?limit=-1"), /limit must be an integer/);
    await assert.rejects(controlGet(socket, "/nope"), /no such endpoint/);
  });

  it("a second server on the same socket is refused; a stale socket file is replaced", async () => {
    await assert.rejects(ControlServer.start(socket, {} as never), /control socket .* is in use/);
    const stale = join(dir, "stale.sock");
    writeFileSync(stale, "");
    const s2 = await ControlServer.start(stale, {
      health: () => ({ ok: true }),
      conns: (q) => connsBody(engine, q),
      stats: () => ({}),
      metrics: async () => ({ contentType: "text/plain", body: "" }),
    });
    assert.deepEqual(await controlGet(stale, "/v1/health"), { ok: true });
    await s2.close();
  });

  it("the client says clearly when masq is not running", async () => {
    await assert.rejects(controlGet(join(dir, "none.sock"), "/v1/stats"), (err: Error) => {
      assert.ok(err instanceof ControlClientError);
      assert.match(err.message, /masq is not running \(no control socket at/);
      return true;
    });
  });

  it("formats the table and the counters for people", async () => {
    const text = String(await controlGet(socket, "/v1/conns?format=text"));
    assert.match(text, /^PROTO\s+INSIDE\s+OUTSIDE\s+REMOTE/);
    assert.match(text, /udp\s+192\.168\.0\.2:40000\s+\S+:\d+\s+203\.0\.113\.10:53/);
    const stats = formatStats((await controlGet(socket, "/v1/stats")) as Parameters<typeof formatStats>[0]);
    assert.match(stats, /drops:\n(.*\n)*\s+no_mapping\s+0/);
    // Each TUN on its own: the inside one and the outside one.
    assert.match(stats, /device masq0:\n\s+rxPackets\s+5\n\s+kernelQueueDrops\s+2\n/);
    assert.match(stats, /device masq0-out:\n\s+rxPackets\s+7\n/);
  });

  it("masq conns/stats exit non-zero with one clear line when masq is not running", async () => {
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => errors.push(String(s)) > 0) as typeof process.stderr.write;
    try {
      assert.equal(await main(["stats", "--socket", join(dir, "none.sock")]), 3, "MASQ_ERR_NOT_RUNNING");
    } finally {
      process.stderr.write = write;
    }
    assert.match(errors.join(""), /^masq: masq is not running/);
  });
});
