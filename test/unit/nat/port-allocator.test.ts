import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NO_PORT, PortAllocator } from "../../../src/nat/port-allocator.ts";

const RANGE = { first: 1000, last: 1099 };

describe("PortAllocator", () => {
  it("RFC 4787 REQ-3: keeps the inside port when it is in range and free", () => {
    const p = new PortAllocator(RANGE, 1);
    assert.equal(p.allocate(0, 1042, false), 1042);
    assert.notEqual(p.allocate(0, 1042, false), 1042, "taken now: another one");
    assert.equal(p.free[0], 98);
  });

  it("a port out of range is never given; an allocated one always lies in range", () => {
    const p = new PortAllocator(RANGE, 1);
    for (let i = 0; i < 50; i++) {
      const port = p.allocate(0, 80, false);
      assert.ok(p.inRange(port), `${port}`);
    }
    assert.equal(p.take(0, 80), false);
    assert.equal(p.isFree(0, 80), false);
  });

  it("hands out every port of the range once, then NO_PORT; a released port comes back", () => {
    const p = new PortAllocator(RANGE, 1, 12345);
    const got = new Set<number>();
    for (let i = 0; i < 100; i++) got.add(p.allocate(0, 0, false));
    assert.equal(got.size, 100);
    assert.equal(p.free[0], 0);
    assert.equal(p.allocate(0, 0, false), NO_PORT);
    p.release(0, 1057);
    p.release(0, 1057); // twice is harmless
    assert.equal(p.free[0], 1);
    assert.equal(p.allocate(0, 0, false), 1057);
  });

  it("RFC 4787 REQ-4: with parity, keeps the preferred port's parity while one of it is free", () => {
    const p = new PortAllocator(RANGE, 1);
    p.take(0, 1010);
    for (let i = 0; i < 20; i++) assert.equal(p.allocate(0, 1010, true) & 1, 0);
    for (let i = 0; i < 20; i++) assert.equal(p.allocate(0, 1011, true) & 1, 1);
  });

  it("with parity and none of that parity left, gives one of the other", () => {
    const p = new PortAllocator({ first: 2000, last: 2003 }, 1);
    p.take(0, 2000);
    p.take(0, 2002);
    const port = p.allocate(0, 2000, true);
    assert.ok(port === 2001 || port === 2003);
  });

  it("each outside address has its own ports", () => {
    const p = new PortAllocator(RANGE, 2);
    assert.equal(p.take(0, 1005), true);
    assert.equal(p.take(1, 1005), true);
    assert.equal(p.take(0, 1005), false);
    assert.deepEqual([...p.free], [99, 99]);
  });

  it("the random start depends on the seed (ports are hard to guess), and only on it", () => {
    const seq = (seed: number) => {
      const p = new PortAllocator(RANGE, 1, seed);
      return Array.from({ length: 5 }, () => p.allocate(0, 0, false));
    };
    assert.deepEqual(seq(7), seq(7));
    assert.notDeepEqual(seq(7), seq(8));
  });

  describe("RFC 4787 REQ-3: a range on both sides of 1024 (pool mode's 1-65535) keeps the two classes apart", () => {
    const FULL = { first: 1, last: 65535 };

    it("an inside port below 1024 gets one below 1024, one from 1024 one from 1024, when its own is taken", () => {
      const p = new PortAllocator(FULL, 1, 99, true);
      assert.equal(p.allocate(0, 500, false), 500, "kept when free");
      for (let i = 0; i < 200; i++) {
        const low = p.allocate(0, 500, false);
        assert.ok(low >= 1 && low <= 1023, `${low} below 1024`);
        const high = p.allocate(0, 40000, false);
        assert.ok(high >= 1024 && high <= 65535, `${high} from 1024`);
      }
    });

    it("the low class runs out apart: NO_PORT below 1024 while ports above are free", () => {
      const p = new PortAllocator({ first: 1000, last: 1099 }, 1, 5, true);
      const low = new Set<number>();
      for (let i = 0; i < 24; i++) low.add(p.allocate(0, 80, false));
      assert.deepEqual(
        [...low].sort((a, b) => a - b),
        Array.from({ length: 24 }, (_, i) => 1000 + i),
      );
      assert.equal(p.freeFor(0, 80), 0);
      assert.equal(p.allocate(0, 80, false), NO_PORT);
      assert.equal(p.freeFor(0, 5000), 76);
      assert.ok(p.allocate(0, 5000, false) >= 1024);
      p.release(0, 1010);
      assert.equal(p.freeFor(0, 80), 1);
      assert.equal(p.allocate(0, 80, false), 1010);
    });

    it("every port of the high class is handed out once, none of the low class", () => {
      const p = new PortAllocator({ first: 900, last: 1199 }, 1, 3, true);
      const got = new Set<number>();
      for (let i = 0; i < 176; i++) got.add(p.allocate(0, 0xffff, false));
      assert.equal(got.size, 176);
      assert.ok([...got].every((port) => port >= 1024 && port <= 1199));
      assert.equal(p.allocate(0, 0xffff, false), NO_PORT);
      assert.equal(p.free[0], 124, "the low class untouched");
    });

    it("without keepClass (ICMP identifiers) or on one side of 1024 the range is one class", () => {
      const icmp = new PortAllocator({ first: 1000, last: 1099 }, 1, 5);
      for (let i = 0; i < 100; i++) assert.notEqual(icmp.allocate(0, 80, false), NO_PORT);
      const iface = new PortAllocator({ first: 61000, last: 65534 }, 1, 5, true);
      assert.ok(iface.allocate(0, 80, false) >= 61000, "interface mode: a low port gets one of the range");
      assert.equal(iface.freeFor(0, 80), iface.free[0]);
    });
  });
});
