import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { DEFAULT_INTERFACE_PORTS } from "../../../src/nat/config.ts";
import { NO_PORT, PortAllocator } from "../../../src/nat/port-allocator.ts";
import { portClasses, portOwner, sliceOfClass } from "../../../src/nat/port-slices.ts";
import { assertProperty } from "../../helpers/property.ts";

const POOL = { first: 1, last: 65535 };

describe("port slices", () => {
  it("interface mode's range in two: the halves, the odd port to the last worker", () => {
    const r = DEFAULT_INTERFACE_PORTS; // 61000-65534: 4535 ports, 2267 each, the last takes 2268
    assert.deepEqual(sliceOfClass(r, { index: 0, count: 2 }), { first: 61000, last: 63266 });
    assert.deepEqual(sliceOfClass(r, { index: 1, count: 2 }), { first: 63267, last: 65534 });
    assert.equal(portOwner(r, false, 63266, 2), 0);
    assert.equal(portOwner(r, false, 63267, 2), 1);
    assert.equal(portOwner(r, false, 65534, 2), 1);
    assert.equal(portOwner(r, false, 60999, 2), -1, "beyond the range: nobody's");
  });

  it("pool mode's classes are sliced each on its own (RFC 4787 REQ-3 in every worker)", () => {
    assert.deepEqual(portClasses(POOL, true), [
      { first: 1, last: 1023 },
      { first: 1024, last: 65535 },
    ]);
    assert.deepEqual(portClasses(POOL, false), [POOL], "ICMP identifiers: one class");
    assert.equal(portOwner(POOL, true, 511, 2), 0);
    assert.equal(portOwner(POOL, true, 512, 2), 1);
    assert.equal(portOwner(POOL, true, 1024, 2), 0);
    assert.equal(portOwner(POOL, true, 33279, 2), 0);
    assert.equal(portOwner(POOL, true, 33280, 2), 1);
  });

  it("the slices of a range are disjoint, cover it, and each port's owner is the slice that holds it", () => {
    assertProperty(
      fc.property(
        fc.integer({ min: 1, max: 65535 }),
        fc.integer({ min: 0, max: 3000 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        (first, extra, count, keepClass) => {
          const range = { first, last: Math.min(65535, first + extra) };
          const seen = new Map<number, number>();
          for (const c of portClasses(range, keepClass))
            for (let index = 0; index < count; index++) {
              const s = sliceOfClass(c, { index, count });
              if (!s) continue;
              for (let p = s.first; p <= s.last; p++) {
                assert.equal(seen.has(p), false, `port ${p} in two slices`);
                seen.set(p, index);
              }
            }
          assert.equal(seen.size, range.last - range.first + 1, "every port in a slice");
          for (const [p, w] of seen) assert.equal(portOwner(range, keepClass, p, count), w, `owner of ${p}`);
        },
      ),
      200,
    );
  });
});

describe("PortAllocator with a slice", () => {
  it("gives out only its slice's ports, of both classes, then NO_PORT; counts only them free", () => {
    const range = { first: 1000, last: 1099 }; // classes 1000-1023 and 1024-1099
    for (const index of [0, 1]) {
      const a = new PortAllocator(range, 1, 7, true, { index, count: 2 });
      const low = sliceOfClass({ first: 1000, last: 1023 }, { index, count: 2 });
      const high = sliceOfClass({ first: 1024, last: 1099 }, { index, count: 2 });
      assert.ok(low && high);
      const lowSize = low.last - low.first + 1;
      const highSize = high.last - high.first + 1;
      assert.equal(a.free[0], lowSize + highSize);
      assert.equal(a.freeFor(0, 80), lowSize);
      const got: number[] = [];
      for (let i = 0; i < lowSize; i++) got.push(a.allocate(0, 1001, false));
      assert.equal(a.allocate(0, 1001, false), NO_PORT, "the low slice is spent");
      for (let i = 0; i < highSize; i++) got.push(a.allocate(0, 5000, false));
      assert.equal(a.allocate(0, 5000, false), NO_PORT);
      assert.equal(a.free[0], 0);
      for (const p of got) assert.equal(portOwner(range, true, p, 2), index, `${p} is worker ${index}'s`);
      assert.equal(new Set(got).size, got.length);
    }
  });

  it("keeps an inside port only in its own slice; takes another worker's port by name without counting it", () => {
    const a = new PortAllocator(DEFAULT_INTERFACE_PORTS, 1, 7, false, { index: 0, count: 2 });
    assert.equal(a.allocate(0, 61001, false), 61001, "its own: preserved");
    const other = a.allocate(0, 64000, false);
    assert.notEqual(other, 64000, "worker 1's port is not given out here");
    assert.equal(portOwner(DEFAULT_INTERFACE_PORTS, false, other, 2), 0);
    const free = a.free[0];
    assert.equal(a.take(0, 64000), true, "a pin on this worker's behalf may name it");
    assert.equal(a.free[0], free, "not from this worker's slice: not counted");
    a.release(0, 64000);
    assert.equal(a.free[0], free);
    assert.equal(a.isFree(0, 64000), true);
  });

  it("the whole range (one worker) behaves as before", () => {
    const a = new PortAllocator(DEFAULT_INTERFACE_PORTS, 1, 7);
    assert.equal(a.free[0], 4535);
    assert.equal(a.allocate(0, 64000, false), 64000);
  });
});
