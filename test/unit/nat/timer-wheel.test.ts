import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TimerWheel } from "../../../src/nat/timer-wheel.ts";

/** Runs the wheel to `nowSec`, recording which records came due; `deadlines` answers for them. */
function advance(w: TimerWheel, nowSec: number, deadlines: Map<number, number>, budget = 1000): number[] {
  const seen: number[] = [];
  w.advance(
    nowSec,
    (i) => {
      seen.push(i);
      const d = deadlines.get(i) ?? -1;
      return d > nowSec ? d : -1;
    },
    budget,
  );
  return seen;
}

describe("TimerWheel", () => {
  it("visits a record in its deadline's second, not before", () => {
    const w = new TimerWheel(16, 8);
    advance(w, 100, new Map());
    w.schedule(3, 105);
    assert.deepEqual(advance(w, 104, new Map()), []);
    assert.deepEqual(advance(w, 105, new Map()), [3]);
    assert.equal(w.isScheduled(3), false, "expired (the callback returned -1)");
    assert.equal(w.scheduled, 0);
  });

  it("lazy timers: a later real deadline reschedules the record instead of expiring it", () => {
    const w = new TimerWheel(16, 8);
    advance(w, 0, new Map());
    w.schedule(1, 5);
    const deadlines = new Map([[1, 9]]);
    assert.deepEqual(advance(w, 5, deadlines), [1]);
    assert.equal(w.isScheduled(1), true);
    assert.deepEqual(advance(w, 8, deadlines), []);
    deadlines.delete(1);
    assert.deepEqual(advance(w, 9, deadlines), [1]);
    assert.equal(w.isScheduled(1), false);
  });

  it("unschedule and reschedule move a record (FIN, RST shorten a flow's timeout)", () => {
    const w = new TimerWheel(16, 8);
    advance(w, 0, new Map());
    w.schedule(2, 10);
    w.schedule(2, 3); // moved, not duplicated
    assert.equal(w.scheduled, 1);
    assert.deepEqual(advance(w, 3, new Map()), [2]);
    w.schedule(4, 7);
    w.unschedule(4);
    w.unschedule(4); // twice is harmless
    assert.deepEqual(advance(w, 7, new Map()), []);
    assert.equal(w.scheduled, 0);
  });

  it("a deadline in the past lands in the current second", () => {
    const w = new TimerWheel(16, 8);
    advance(w, 50, new Map());
    w.schedule(0, 10);
    assert.deepEqual(advance(w, 51, new Map()), [0]);
  });

  it("a deadline a turn or more away comes round early, is rechecked, and does not stall the wheel", () => {
    const w = new TimerWheel(16, 8); // 16 slots: second 20 shares slot 4 with second 4
    advance(w, 0, new Map());
    w.schedule(5, 20);
    const deadlines = new Map([[5, 20]]);
    // Seen at second 4, deadline still ahead: put back, but not into the slot being drained
    // (that looped until the budget ran out and left the wheel stuck at second 4).
    const seen: number[] = [];
    const recheck = (i: number) => {
      seen.push(i);
      return deadlines.get(i) ?? -1;
    };
    const behind = w.advance(4, recheck, 1000);
    assert.equal(behind, false);
    assert.deepEqual(seen, [5]);
    assert.equal(w.isScheduled(5), true);
    assert.deepEqual(advance(w, 18, deadlines), []);
    assert.deepEqual(advance(w, 19, deadlines), [5], "rechecked a turn later");
    deadlines.delete(5);
    assert.deepEqual(advance(w, 20, deadlines), [5]);
    assert.equal(w.isScheduled(5), false);
  });

  it("stops after `budget` records and reports that it is behind; the next call goes on", () => {
    const w = new TimerWheel(16, 100);
    advance(w, 0, new Map());
    for (let i = 0; i < 10; i++) w.schedule(i, 1);
    const seen: number[] = [];
    const due = (i: number) => {
      seen.push(i);
      return -1;
    };
    assert.equal(w.advance(1, due, 4), true);
    assert.equal(seen.length, 4);
    assert.equal(w.advance(1, due, 4), true);
    assert.equal(w.advance(1, due, 4), false);
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
  });

  it("after a pause longer than the wheel, one turn covers every slot", () => {
    const w = new TimerWheel(16, 8);
    advance(w, 0, new Map());
    w.schedule(0, 3);
    w.schedule(1, 12);
    assert.deepEqual(advance(w, 1000, new Map()).sort(), [0, 1]);
  });
});
