// The NAT event log over engine shards in worker threads (shard-natlog.ts): the main thread
// drains every shard's event ring in shared memory, the end of each table at the stop included.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ShardClient } from "../../../src/datapath/shard-channel.ts";
import { endShardTables, shardRings } from "../../../src/datapath/shard-natlog.ts";
import { hostWorker } from "../../../src/datapath/steering-model.ts";
import { EV_MAPPING_CREATED, EV_MAPPING_DELETED, type NatEvent } from "../../../src/nat/nat-events.ts";
import { FORWARD } from "../../../src/nat/verdicts.ts";
import { ip } from "../../helpers/packets.ts";
import { startShardWorkers } from "./fixtures/shard-workers.ts";

const COUNT = 2;

/** The first inside host 192.168.0.x owned by worker `w`. */
function hostOf(w: number): string {
  for (let x = 2; x < 255; x++) if (hostWorker(ip(`192.168.0.${x}`), COUNT) === w) return `192.168.0.${x}`;
  throw new Error(`no host for worker ${w}`);
}

describe("NAT event log over engine shards", () => {
  let client: ShardClient;
  let stop: () => Promise<void>;

  before(() => {
    ({ client, stop } = startShardWorkers(COUNT));
    for (let w = 0; w < COUNT; w++) assert.equal(client.callSync(w, "index", undefined, 60_000), w);
  });
  after(() => stop());

  it("the main thread drains every shard's ring, and each shard ends its table in it at the stop", async () => {
    const rings = shardRings(client);
    assert.equal(rings.length, COUNT);
    const seen: Array<{ kind: number; inAddr: number; inPort: number }> = [];
    const drain = () => {
      for (const r of rings)
        r.drain((e: NatEvent) => seen.push({ kind: e.kind, inAddr: e.inAddr, inPort: e.inPort }));
    };
    // More mappings on worker 0 than half its ring (64): its end of the table must wait for room.
    const flows = [40, 3];
    for (let w = 0; w < COUNT; w++)
      for (let i = 0; i < flows[w]; i++) {
        assert.equal(client.callSync(w, "send", { src: hostOf(w), sport: 6000 + i }), FORWARD);
        if (i % 16 === 15) drain();
      }
    drain();
    const of = (kind: number, w: number) =>
      seen.filter((e) => e.kind === kind && e.inAddr === ip(hostOf(w))).length;
    for (let w = 0; w < COUNT; w++) assert.equal(of(EV_MAPPING_CREATED, w), flows[w], `worker ${w} created`);
    const ended = await endShardTables(client, drain);
    assert.deepEqual(ended, { flows: 43, pins: 0, blocks: 0 });
    for (let w = 0; w < COUNT; w++) assert.equal(of(EV_MAPPING_DELETED, w), flows[w], `worker ${w} deleted`);
    assert.equal(
      rings.reduce((n, r) => n + r.lost, 0),
      0,
      "no event lost to a full ring",
    );
  });
});
