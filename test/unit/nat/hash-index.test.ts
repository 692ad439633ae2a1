import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { HashIndex, hashTuple, randomSeed } from "../../../src/nat/hash-index.ts";
import { assertProperty } from "../../helpers/property.ts";

/** The refs a lookup of `hash` meets along its probe run (what the tables' lookups walk). */
function refsOf(ix: HashIndex, hash: number): number[] {
  const out: number[] = [];
  for (let i = hash & ix.mask; ix.slots[2 * i + 1] !== 0; i = (i + 1) & ix.mask)
    if (ix.slots[2 * i] === hash) out.push(ix.slots[2 * i + 1]);
  return out;
}

describe("HashIndex", () => {
  it("is sized to keep the load at or below one half", () => {
    const ix = new HashIndex(100);
    assert.ok(ix.mask + 1 >= 200);
    assert.equal((ix.mask + 1) & ix.mask, 0, "a power of two");
  });

  it("finds colliding keys along one probe run, and removes either without losing the other", () => {
    const ix = new HashIndex(8);
    const home = 5;
    ix.insert(home, 11);
    ix.insert(home, 12);
    ix.insert(home + 1, 13); // its home slot is taken by the run: it lands after
    assert.deepEqual(refsOf(ix, home), [11, 12]);
    assert.deepEqual(refsOf(ix, home + 1), [13]);
    assert.equal(ix.remove(home, 11), true);
    assert.deepEqual(refsOf(ix, home), [12]);
    assert.deepEqual(refsOf(ix, home + 1), [13], "backward shift keeps the later key reachable");
    assert.equal(ix.remove(home, 11), false, "already gone");
    assert.equal(ix.count, 2);
  });

  it("backward shift wraps around the end of the table", () => {
    const ix = new HashIndex(8);
    const last = ix.mask;
    ix.insert(last, 1);
    ix.insert(last, 2); // wraps to slot 0
    ix.insert(0, 3); // home 0 is taken: slot 1
    assert.equal(ix.remove(last, 1), true);
    assert.deepEqual(refsOf(ix, last), [2]);
    assert.deepEqual(refsOf(ix, 0), [3]);
  });

  it("any sequence of inserts and removes leaves exactly the live keys findable", () => {
    const op = fc.record({ add: fc.boolean(), key: fc.integer({ min: 0, max: 40 }) });
    assertProperty(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const ix = new HashIndex(64);
        const live = new Set<number>();
        // Few distinct hashes, so probe runs collide and overlap.
        const hashOf = (k: number) => (k * 7) % 13;
        for (const { add, key } of ops) {
          if (add && !live.has(key)) {
            ix.insert(hashOf(key), key + 1);
            live.add(key);
          } else if (!add) {
            assert.equal(ix.remove(hashOf(key), key + 1), live.delete(key));
          }
        }
        assert.equal(ix.count, live.size);
        for (let k = 0; k <= 40; k++)
          assert.equal(refsOf(ix, hashOf(k)).includes(k + 1), live.has(k), `key ${k}`);
      }),
      200,
    );
  });

  it("clear empties it", () => {
    const ix = new HashIndex(4);
    ix.insert(1, 1);
    ix.clear();
    assert.equal(ix.count, 0);
    assert.deepEqual(refsOf(ix, 1), []);
  });
});

describe("hash seeds", () => {
  it("a fixed seed gives the same hashes every run, salted per table; 0 means random", () => {
    assert.equal(randomSeed(42, 1), randomSeed(42, 1));
    assert.notEqual(randomSeed(42, 1), randomSeed(42, 2));
    assert.notEqual(randomSeed(0, 1), randomSeed(0, 1));
    const s = randomSeed(42, 1);
    assert.equal(hashTuple(s, 6, 1, 2, 3, 4), hashTuple(s, 6, 1, 2, 3, 4));
    assert.notEqual(
      hashTuple(s, 6, 1, 2, 3, 4),
      hashTuple(s, 17, 1, 2, 3, 4),
      "the protocol is part of the key",
    );
    assert.notEqual(
      hashTuple(s, 6, 1, 2, 3, 4),
      hashTuple(s, 6, 1, 4, 3, 2),
      "ports are not interchangeable",
    );
  });
});
