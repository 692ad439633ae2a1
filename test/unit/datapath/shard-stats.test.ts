import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mergeEngineStats } from "../../../src/datapath/shard-stats.ts";
import { makeEngine } from "../nat/engine-helpers.ts";

describe("merging the shards' statistics", () => {
  it("adds counters up, but takes a gateway event every shard counts (an address change) once", () => {
    const [a, b] = [0, 1].map((index) => makeEngine({ mode: "interface", portSlice: { index, count: 2 } }));
    for (const e of [a, b]) e.changePublicAddress(0xc6336409);
    const merged = mergeEngineStats([a.stats(), b.stats()]);
    assert.equal(merged.counters.public_address_changes, 1);
    assert.equal(merged.capacity.flows, a.stats().capacity.flows + b.stats().capacity.flows);
  });
});
