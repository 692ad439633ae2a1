// At a stop that does not keep the table, the NAT event log gets an end for everything it was
// told began: each mapping's deletion (with its last flow), each pin's, each port block's; the
// ring is drained as it fills, so a table larger than the ring loses nothing.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  EV_MAPPING_CREATED,
  EV_MAPPING_DELETED,
  EV_PORT_BLOCK_ADDED,
  EV_PORT_BLOCK_DELETED,
  type NatEvent,
} from "../../../src/nat/nat-events.ts";
import { ip, udp } from "../../helpers/packets.ts";
import { makeEngine, REMOTE, run } from "./engine-helpers.ts";

const key = (e: NatEvent) => `${e.proto}/${e.inAddr}:${e.inPort}>${e.outAddr}:${e.outPort}`;

describe("the NAT log at the end of the table", () => {
  it("ends every mapping it announced, pins too, draining a ring smaller than the table", () => {
    const e = makeEngine({ mode: "pool", natEvents: { capacity: 16, sessions: false } });
    const seen: NatEvent[] = [];
    const drain = () => e.natEvents!.drain((x) => seen.push({ ...x }));
    for (let i = 0; i < 100; i++) {
      run(e, udp({ src: "192.168.0.2", dst: REMOTE, sport: 40000 + i, dport: 53 }), 1000);
      drain();
    }
    const pin = e.pinMapping({ proto: "udp", inAddr: ip("192.168.0.3"), inPort: 7000, origin: "test" });
    assert.ok(!("error" in pin));
    drain();
    const ended = e.logEndOfTable(drain);
    drain();
    assert.deepEqual(ended, { flows: 100, pins: 1, blocks: 0 });
    assert.equal(e.natEvents!.lost, 0, "nothing lost to the ring");
    const created = new Set(seen.filter((x) => x.kind === EV_MAPPING_CREATED).map(key));
    const deleted = new Set(seen.filter((x) => x.kind === EV_MAPPING_DELETED).map(key));
    assert.equal(created.size, 101);
    assert.deepEqual([...deleted].sort(), [...created].sort(), "every created mapping is deleted once");
    assert.equal(e.stats().flows, 0);
  });

  it("ends port blocks, held and cooling, with no per-mapping record", () => {
    const e = makeEngine({
      mode: "pool",
      portBlocks: { size: 64, maxPerHost: 2 },
      natEvents: { capacity: 64, sessions: false },
    });
    run(e, udp({ src: "192.168.0.2", dst: REMOTE, sport: 40000, dport: 53 }), 1000);
    run(e, udp({ src: "192.168.0.3", dst: REMOTE, sport: 40000, dport: 53 }), 1000);
    const seen: NatEvent[] = [];
    const drain = () => e.natEvents!.drain((x) => seen.push({ ...x }));
    drain();
    assert.deepEqual(e.logEndOfTable(drain), { flows: 2, pins: 0, blocks: 2 });
    drain();
    const added = seen
      .filter((x) => x.kind === EV_PORT_BLOCK_ADDED)
      .map(key)
      .sort();
    const gone = seen
      .filter((x) => x.kind === EV_PORT_BLOCK_DELETED)
      .map(key)
      .sort();
    assert.equal(added.length, 2);
    assert.deepEqual(gone, added);
    assert.equal(seen.filter((x) => x.kind === EV_MAPPING_DELETED).length, 0);
  });

  it("writes nothing when the log is off", () => {
    const e = makeEngine({ mode: "pool" });
    run(e, udp({ src: "192.168.0.2", dst: REMOTE, sport: 40000, dport: 53 }), 1000);
    assert.deepEqual(
      e.logEndOfTable(() => undefined),
      { flows: 0, pins: 0, blocks: 0 },
    );
  });
});
