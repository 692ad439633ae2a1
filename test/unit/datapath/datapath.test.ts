// The datapath with one device per arrival side (as masq runs it: the inside TUN and the
// outside TUN): each packet is processed with its device's side and written back to the device
// it came from, replies the engine builds included; forgeries are dropped and counted.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Datapath } from "../../../src/datapath/datapath.ts";
import { MemoryIo } from "../../../src/io/memory.ts";
import {
  D_INSIDE_ADDRESS_FROM_OUTSIDE,
  D_INSIDE_SOURCE_FROM_OUTSIDE,
  D_SPOOFED_SOURCE,
} from "../../../src/nat/counters.ts";
import { SIDE_INSIDE, SIDE_OUTSIDE } from "../../../src/nat/engine.ts";
import { EXPIRY_BUDGET } from "../../../src/nat/flow-life.ts";
import { ACK, ip, RST, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE } from "../nat/engine-helpers.ts";

const A = "192.168.0.2";

function twoSided(headerBytes = 0) {
  const engine = makeEngine({ firewall: [{ direction: "outbound", action: "reject", protocol: "tcp" }] });
  const inside = new MemoryIo({ headerBytes });
  const outside = new MemoryIo({ headerBytes });
  const dp = new Datapath(
    engine,
    [
      { io: inside, side: SIDE_INSIDE },
      { io: outside, side: SIDE_OUTSIDE },
    ],
    () => 5000,
  );
  dp.start();
  return { engine, inside, outside, dp };
}

for (const headerBytes of [0, 10]) {
  describe(`datapath with an inside and an outside device (${headerBytes ? "vnet header" : "plain"})`, () => {
    it("writes each packet back to the device it came from: outbound on the inside one, replies on the outside one", () => {
      const { inside, outside, dp } = twoSided(headerBytes);
      try {
        inside.push(udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }));
        assert.equal(inside.deliver(), 1);
        const [out] = inside.writtenPackets();
        assert.equal(u32(out, 12), ip(P));
        assert.equal(outside.written.length, 0);
        outside.push(udp({ src: REMOTE, dst: P, sport: 53, dport: u16(out, 20) }));
        outside.deliver();
        const [back] = outside.writtenPackets();
        assert.equal(u32(back, 16), ip(A));
        assert.equal(inside.written.length, 1, "nothing more on the inside device");
        assert.equal(dp.stats.written, 2);
      } finally {
        dp.stop();
      }
    });

    it("a reply the engine builds (a firewall reset) goes back to the device its packet came from", () => {
      const { inside, outside, dp } = twoSided(headerBytes);
      try {
        inside.push(tcp({ src: A, dst: REMOTE, sport: 40000, dport: 25, flags: SYN }));
        inside.deliver();
        const [rst] = inside.writtenPackets();
        assert.equal(rst[33], RST | ACK);
        assert.equal(u32(rst, 16), ip(A));
        assert.equal(outside.written.length, 0);
        if (headerBytes)
          assert.deepEqual([...inside.written[0].subarray(0, headerBytes)], Array(headerBytes).fill(0));
      } finally {
        dp.stop();
      }
    });

    it("forgeries are dropped and counted by the side they arrived on, whatever their addresses claim", () => {
      const { engine, inside, outside, dp } = twoSided(headerBytes);
      try {
        // From outside: an inside source (would open a mapping), an inside destination.
        outside.push(udp({ src: A, dst: REMOTE, sport: 5353, dport: 5353 }));
        outside.push(tcp({ src: REMOTE, dst: A, sport: 1234, dport: 22, flags: SYN }));
        // From inside: a source on no inside network (BCP 38).
        inside.push(udp({ src: "192.0.2.77", dst: REMOTE, sport: 4000, dport: 9 }));
        outside.deliver();
        inside.deliver();
        assert.equal(inside.written.length + outside.written.length, 0);
        assert.equal(engine.counters[D_INSIDE_SOURCE_FROM_OUTSIDE], 1);
        assert.equal(engine.counters[D_INSIDE_ADDRESS_FROM_OUTSIDE], 1);
        assert.equal(engine.counters[D_SPOOFED_SOURCE], 1);
        assert.equal(engine.stats().mappings, 0);
      } finally {
        dp.stop();
      }
    });
  });
}

describe("datapath with one device (replay, tests)", () => {
  it("has no arrival side: the source address decides, as before", () => {
    const engine = makeEngine();
    const io = new MemoryIo();
    const dp = new Datapath(engine, io, () => 5000);
    dp.start();
    try {
      io.push(udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }));
      io.deliver();
      const [out] = io.writtenPackets();
      io.push(udp({ src: REMOTE, dst: P, sport: 53, dport: u16(out, 20) }));
      io.deliver();
      assert.equal(io.written.length, 2);
      assert.equal(u32(io.writtenPackets()[1], 16), ip(A));
    } finally {
      dp.stop();
    }
  });
});

describe("datapath expiry", () => {
  it("a burst of flows timing out together expires a budget at a time, the rest between batches", async () => {
    const engine = makeEngine({
      maxFlows: 4096,
      maxMappings: 4096,
      maxFlowsPerHost: 4096,
      maxPortsPerHost: 4096,
    });
    const io = new MemoryIo();
    let now = 5000;
    const dp = new Datapath(engine, io, () => now);
    dp.start();
    try {
      const flows = 3 * EXPIRY_BUDGET;
      for (let i = 0; i < flows; i++) io.push(udp({ src: A, dst: REMOTE, sport: 20000 + i, dport: 53 }));
      io.deliver();
      assert.equal(engine.stats().flows, flows);
      // Long after their timeout, one packet: its batch expires one budget, no more.
      now += 1_000_000;
      io.push(udp({ src: REMOTE, dst: P, sport: 9, dport: 9 }));
      io.deliver();
      assert.equal(engine.stats().flows, flows - EXPIRY_BUDGET);
      // With no packet to carry it, the datapath takes the rest up after the loop's I/O.
      for (let k = 0; k < 5 && engine.stats().flows > 0; k++) await new Promise((r) => setImmediate(r));
      assert.equal(engine.stats().flows, 0);
      assert.equal(engine.timersBehind, false);
    } finally {
      dp.stop();
    }
  });
});
