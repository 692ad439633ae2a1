import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlowTable, NO_FLOW } from "../../../src/nat/flow-table.ts";
import { M_HEAD, MAPPING_WORDS, MappingTable, NO_MAPPING } from "../../../src/nat/mapping-table.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../../../src/packet/ipv4.ts";
import { TEST_HASH_SEED } from "./engine-helpers.ts";

const IN = 0xc0a80002; // 192.168.0.2
const OUT = 0xc6336464; // 198.51.100.100

function tables(capacity = 8) {
  const flows = new FlowTable(capacity * 2, undefined, TEST_HASH_SEED);
  return { flows, mappings: new MappingTable(capacity, flows, undefined, TEST_HASH_SEED) };
}

function listOf(mt: MappingTable, m: number): number[] {
  const out: number[] = [];
  for (let f = mt.firstFlow(m); f !== NO_FLOW; f = mt.nextFlow(f)) out.push(f);
  return out;
}

describe("MappingTable", () => {
  it("RFC 4787 REQ-1: finds a mapping by its inside and by its outside endpoint, per protocol", () => {
    const { mappings: mt } = tables();
    const m = mt.add(IPPROTO_UDP, IN, 5000, OUT, 61000);
    assert.equal(mt.lookupInside(IPPROTO_UDP, IN, 5000), m);
    assert.equal(mt.lookupOutside(IPPROTO_UDP, OUT, 61000), m);
    assert.equal(mt.lookupInside(IPPROTO_TCP, IN, 5000), NO_MAPPING);
    assert.equal(mt.lookupOutside(IPPROTO_UDP, OUT, 61001), NO_MAPPING);
    assert.equal(mt.lookupInside(IPPROTO_UDP, IN + 1, 5000), NO_MAPPING);
    assert.equal(mt.count, 1);
    mt.remove(m);
    assert.equal(mt.lookupInside(IPPROTO_UDP, IN, 5000), NO_MAPPING);
    assert.equal(mt.lookupOutside(IPPROTO_UDP, OUT, 61000), NO_MAPPING);
    assert.equal(mt.count, 0);
  });

  it("is full at its capacity and reuses removed records", () => {
    const { mappings: mt } = tables(2);
    const a = mt.add(IPPROTO_UDP, IN, 1, OUT, 1);
    mt.add(IPPROTO_UDP, IN, 2, OUT, 2);
    assert.equal(mt.add(IPPROTO_UDP, IN, 3, OUT, 3), NO_MAPPING);
    mt.remove(a);
    const c = mt.add(IPPROTO_UDP, IN, 3, OUT, 3);
    assert.equal(c, a);
    assert.equal(mt.lookupInside(IPPROTO_UDP, IN, 3), c);
    assert.equal(mt.u32[c * MAPPING_WORDS + M_HEAD], 0, "a reused record starts with no flows");
  });

  it("keeps its flows in a list: newest first, detached from the head, middle or end", () => {
    const { flows, mappings: mt } = tables();
    const m = mt.add(IPPROTO_TCP, IN, 5000, OUT, 61000);
    assert.equal(mt.hasFlows(m), false);
    assert.equal(mt.firstFlow(m), NO_FLOW);
    const f = [flows.alloc(), flows.alloc(), flows.alloc(), flows.alloc()];
    for (const x of f) mt.attachFlow(m, x);
    assert.deepEqual(listOf(mt, m), [f[3], f[2], f[1], f[0]]);
    assert.equal(mt.flowCount(m), 4);
    mt.detachFlow(m, f[2]); // middle
    assert.deepEqual(listOf(mt, m), [f[3], f[1], f[0]]);
    mt.detachFlow(m, f[3]); // head
    assert.deepEqual(listOf(mt, m), [f[1], f[0]]);
    mt.detachFlow(m, f[0]); // end
    assert.deepEqual(listOf(mt, m), [f[1]]);
    mt.detachFlow(m, f[2]); // not on the list: nothing happens
    assert.deepEqual(listOf(mt, m), [f[1]]);
    mt.detachFlow(m, f[1]);
    assert.equal(mt.hasFlows(m), false);
    assert.equal(mt.flowCount(m), 0);
  });

  it("two mappings' lists are independent", () => {
    const { flows, mappings: mt } = tables();
    const a = mt.add(IPPROTO_UDP, IN, 1, OUT, 1);
    const b = mt.add(IPPROTO_UDP, IN, 2, OUT, 2);
    const fa = flows.alloc();
    const fb = flows.alloc();
    mt.attachFlow(a, fa);
    mt.attachFlow(b, fb);
    mt.detachFlow(a, fb); // fb is b's: a is unchanged
    assert.deepEqual(listOf(mt, a), [fa]);
    assert.deepEqual(listOf(mt, b), [fb]);
  });
});
