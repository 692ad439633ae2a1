import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MessageChannel } from "node:worker_threads";
import { ShardClient, serveShard } from "../../../src/datapath/shard-channel.ts";
import { mergeEngineStats } from "../../../src/datapath/shard-stats.ts";
import { MasqError } from "../../../src/errors/masq-error.ts";
import { DEFAULT_INTERFACE_PORTS } from "../../../src/nat/config.ts";
import { portOwner } from "../../../src/nat/port-slices.ts";
import { ip, udp } from "../../helpers/packets.ts";
import { makeEngine, REMOTE, run } from "../nat/engine-helpers.ts";
import { startShardWorkers } from "./fixtures/shard-workers.ts";

/** `n` workers' ends served in this thread (a worker_thread's parentPort behaves the same). */
function shards(n: number, handlers: (w: number) => Record<string, (a: never) => unknown>) {
  const channels = Array.from({ length: n }, () => new MessageChannel());
  const stops = channels.map((c, w) => serveShard(c.port2, handlers(w)));
  const client = new ShardClient(channels.map((c) => c.port1));
  const close = () => {
    client.close();
    for (const s of stops) s();
    for (const c of channels) {
      c.port1.close();
      c.port2.close();
    }
  };
  return { client, close };
}

describe("shard control channel", () => {
  it("a call runs on the worker it names; a broadcast answers in worker order", async () => {
    const { client, close } = shards(3, (w) => ({ who: () => w, add: (a: { x: number }) => a.x + w }));
    try {
      assert.equal(await client.call(2, "who"), 2);
      assert.equal(await client.call(1, "add", { x: 10 }), 11);
      assert.deepEqual(await client.broadcast("who"), [0, 1, 2]);
    } finally {
      close();
    }
  });

  it("concurrent calls get their own answers, whatever order the workers answer in", async () => {
    const { client, close } = shards(2, (w) => ({
      slow: (a: { ms: number; v: number }) => new Promise((r) => setTimeout(() => r(a.v * 10 + w), a.ms)),
    }));
    try {
      const got = await Promise.all([
        client.call(0, "slow", { ms: 30, v: 1 }),
        client.call(1, "slow", { ms: 0, v: 2 }),
        client.call(0, "slow", { ms: 0, v: 3 }),
      ]);
      assert.deepEqual(got, [10, 21, 30]);
    } finally {
      close();
    }
  });

  it("an error crosses the channel with its code; an unknown operation or worker is refused", async () => {
    const { client, close } = shards(1, () => ({
      refuse: () => {
        throw new MasqError("MASQ_ERR_PORT_IN_USE", "port 8080 is taken");
      },
    }));
    try {
      await assert.rejects(client.call(0, "refuse"), (e: unknown) => {
        assert.ok(e instanceof MasqError);
        assert.equal(e.code, "MASQ_ERR_PORT_IN_USE");
        assert.equal(e.message, "port 8080 is taken");
        return true;
      });
      await assert.rejects(client.call(0, "nothing"), /no operation nothing/);
      await assert.rejects(client.call(5, "refuse"), /no worker 5/);
    } finally {
      close();
    }
  });

  it("engine shards' stats merge into one engine's (a listing of two shards)", async () => {
    const engines = [0, 1].map((index) => makeEngine({ portSlice: { index, count: 2 } }));
    run(engines[0], udp({ src: "192.168.0.5", dst: REMOTE, sport: 4000, dport: 53 }));
    run(engines[1], udp({ src: "192.168.0.6", dst: REMOTE, sport: 4000, dport: 53 }));
    run(engines[1], udp({ src: "192.168.0.6", dst: REMOTE, sport: 4001, dport: 53 }));
    const { client, close } = shards(2, (w) => ({ stats: () => engines[w].stats() }));
    try {
      const merged = mergeEngineStats(await client.broadcast("stats"));
      assert.equal(merged.flows, 3);
      assert.equal(merged.mappings, 3);
      assert.equal(merged.hosts, 2);
      assert.equal(merged.capacity.flows, engines[0].stats().capacity.flows * 2);
      assert.equal(merged.counters.translated_out, 3);
    } finally {
      close();
    }
  });
});

describe("shard control channel to worker threads, synchronously", () => {
  it("a pin on another thread's engine shard answers at once, with a port of that worker's slice", async () => {
    const count = 2;
    const { client, stop } = startShardWorkers(count);
    try {
      // The first call waits while the worker starts (it loads the engine).
      assert.equal(client.callSync(1, "index", undefined, 60_000), 1);
      assert.equal(client.callSync(0, "index", undefined, 60_000), 0);
      for (const w of [0, 1]) {
        const host = ip(`192.168.0.${10 + w}`);
        const r = client.callSync<{ outPort: number }>(w, "pin", {
          proto: "udp",
          inAddr: host,
          inPort: 5000,
          origin: "test",
        });
        assert.equal(portOwner(DEFAULT_INTERFACE_PORTS, false, r.outPort, count), w, `port ${r.outPort}`);
        assert.throws(
          () =>
            client.callSync(w, "pin", {
              proto: "udp",
              inAddr: host,
              inPort: 5000,
              outPort: 61000 + w,
              origin: "test",
            }),
          (e: unknown) => e instanceof MasqError && e.code === "MASQ_ERR_ALREADY_MAPPED",
        );
      }
      // An asynchronous call still pending when a synchronous one is answered settles too.
      const slow = client.call<string>(0, "slow", 20);
      assert.equal(client.callSync(0, "index"), 0);
      assert.equal(await slow, "slow 0");
      const merged = mergeEngineStats(await client.broadcast("stats"));
      assert.equal(merged.mappings, 2);
    } finally {
      await stop();
    }
  });
});
