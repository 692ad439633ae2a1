import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ShardClient } from "../../../src/datapath/shard-channel.ts";
import { ShardedEngine } from "../../../src/datapath/sharded-engine.ts";
import { hostWorker } from "../../../src/datapath/steering-model.ts";
import { DEFAULT_INTERFACE_PORTS } from "../../../src/nat/config.ts";
import { portOwner } from "../../../src/nat/port-slices.ts";
import { FORWARD } from "../../../src/nat/verdicts.ts";
import { FlowFields } from "../../../src/nat/view.ts";
import { ip } from "../../helpers/packets.ts";
import { makeEngine } from "../nat/engine-helpers.ts";
import { startShardWorkers } from "./fixtures/shard-workers.ts";

const COUNT = 2;

/** Inside hosts 192.168.0.x, the first `n` of them owned by worker `w`. */
function hostsOf(w: number, n: number): string[] {
  const out: string[] = [];
  for (let x = 2; out.length < n && x < 255; x++) {
    const a = `192.168.0.${x}`;
    if (hostWorker(ip(a), COUNT) === w) out.push(a);
  }
  return out;
}

describe("sharded engine facade over worker threads", () => {
  let client: ShardClient;
  let stop: () => Promise<void>;
  let engine: ShardedEngine;

  before(() => {
    ({ client, stop } = startShardWorkers(COUNT));
    // The first calls wait while the workers start (each loads the engine).
    for (let w = 0; w < COUNT; w++) assert.equal(client.callSync(w, "index", undefined, 60_000), w);
    // The shards' configuration (fixtures/shard-worker.ts): interface mode, its default range.
    engine = new ShardedEngine(client, makeEngine({ mode: "interface" }).config);
  });

  after(() => stop());

  it("a pin goes to the host's worker, with a port of its slice; ids are unique and find their shard", () => {
    const made: number[] = [];
    for (let w = 0; w < COUNT; w++) {
      for (const host of hostsOf(w, 2)) {
        const r = engine.pinMapping({ proto: "udp", inAddr: ip(host), inPort: 7000, origin: "test" });
        assert.ok(!("error" in r), JSON.stringify(r));
        assert.equal(
          portOwner(DEFAULT_INTERFACE_PORTS, false, r.outPort, COUNT),
          w,
          `${host} → ${r.outPort}`,
        );
        assert.equal(r.id % COUNT, w);
        made.push(r.id);
      }
    }
    const again = engine.pinMapping({
      proto: "udp",
      inAddr: ip(hostsOf(1, 1)[0]),
      inPort: 7000,
      outPort: 61001,
      origin: "test",
    });
    assert.ok("error" in again && again.code === "MASQ_ERR_ALREADY_MAPPED");
    const listed = engine.pinList().map((p) => p.id);
    assert.deepEqual(
      [...listed].sort((a, b) => a - b),
      [...made].sort((a, b) => a - b),
    );
    assert.equal(engine.renewPin(made[0], 1_000_000), true);
    for (const id of made) assert.equal(engine.unpin(id), true);
    assert.equal(engine.unpin(made[0]), false);
    assert.deepEqual(engine.pinList(), []);
  });

  it("a pin of a port in another worker's slice: kept from that worker's hosts until it goes", () => {
    const ports = DEFAULT_INTERFACE_PORTS;
    // A port of worker 0's slice, pinned for a host of worker 1.
    let port = ports.first + 10;
    while (portOwner(ports, true, port, COUNT) !== 0) port++;
    const [host1] = hostsOf(1, 1);
    const [host0] = hostsOf(0, 1);
    const r = engine.pinMapping({
      proto: "tcp",
      inAddr: ip(host1),
      inPort: 22,
      outPort: port,
      origin: "test",
    });
    assert.ok(!("error" in r), JSON.stringify(r));
    assert.equal(r.id % COUNT, 1, "the pin lives on its host's worker");
    const reserve = () => client.callSync<boolean>(0, "reserveForeignPort", { proto: "tcp", port });
    assert.equal(reserve(), false, "worker 0 keeps the port from its own hosts");
    const clash = engine.pinMapping({
      proto: "tcp",
      inAddr: ip(host0),
      inPort: 22,
      outPort: port,
      origin: "test",
    });
    assert.ok("error" in clash && clash.code === "MASQ_ERR_PORT_IN_USE", JSON.stringify(clash));
    assert.equal(engine.pins.get(r.id)?.note, "");
    assert.equal(engine.unpin(r.id), true);
    assert.equal(engine.pins.get(r.id), undefined);
    assert.equal(reserve(), true, "back to worker 0 once the pin went");
    client.callSync(0, "releaseForeignPort", { proto: "tcp", port });
    const own = engine.pinMapping({
      proto: "tcp",
      inAddr: ip(host0),
      inPort: 22,
      outPort: port,
      origin: "test",
    });
    assert.ok(!("error" in own), JSON.stringify(own));
    assert.equal(engine.unpin(own.id), true);
  });

  it("stats and the flow listing merge every worker; each worker counts only its own packets", () => {
    const before0 = engine.workerStats().map((s) => s.counters.translated_out ?? 0);
    const sent = [0, 0];
    for (let w = 0; w < COUNT; w++) {
      for (const host of hostsOf(w, 3)) {
        assert.equal(client.callSync(w, "send", { src: host, sport: 4000 }), FORWARD);
        sent[w]++;
      }
    }
    const per = engine.workerStats().map((s, w) => (s.counters.translated_out ?? 0) - before0[w]);
    assert.deepEqual(per, sent);
    const merged = engine.stats();
    assert.equal(merged.flows, 6);
    assert.equal(merged.hosts, 6);
    const flows = engine.flows();
    assert.equal(flows.length, 6);
    assert.equal(engine.flows(4).length, 4);
  });

  it("the connection listing (masq conns) merges the shards' rows, cut to the limit, with the firewall's hits", () => {
    const listing = engine.listFlows({}, Number.POSITIVE_INFINITY);
    const rows: FlowFields[] = [];
    while (!listing.done) listing.step(2, (f) => rows.push(engine.readFlow(f, new FlowFields())));
    assert.equal(rows.length, 6);
    assert.equal(listing.matched, 6);
    assert.equal(engine.flowTable.count, 6);
    const owners = new Set(rows.map((r) => hostWorker(r.inAddr, COUNT)));
    assert.deepEqual([...owners].sort(), [0, 1], "rows from both shards");
    const cut = engine.listFlows({}, 4);
    let n = 0;
    while (!cut.done) cut.step(100, () => n++);
    assert.equal(n, 4);
    assert.equal(cut.matched, 6, "matched counts every shard's matches, not the cut");
    assert.deepEqual(engine.firewallList(), [], "no rules: none listed");
  });

  it("the dashboard's pass runs on every worker: the first flows of them all and each host's sums", async () => {
    const scan = await engine.scanFlows(4);
    assert.equal(scan.flows.length, 4);
    assert.equal(scan.hosts.size, 6, "each of the six hosts once");
    for (const [addr, h] of scan.hosts) {
      assert.equal(h.flows, 1, `host ${addr}`);
      assert.ok(h.bytesOut > 0, `host ${addr} sent`);
    }
    assert.ok(scan.busyMs >= 0);
  });
});
