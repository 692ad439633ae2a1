import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CrossSlicePins, type SliceOps } from "../../../src/datapath/cross-slice-pins.ts";

const RANGE = { first: 61000, last: 61999 };
/** With 2 workers: worker 0 owns 61000-61499, worker 1 61500-61999. */
const OF_0 = 61100;
const OF_1 = 61600;

/** The workers as the bookkeeping sees them: reservations, flows still on a port, the override table. */
function fakeWorkers() {
  const reserved = new Set<string>();
  const inUse = new Set<string>();
  const holding = new Set<string>();
  const owner = new Map<string, number>();
  const ops: SliceOps = {
    workers: 2,
    ports: { tcp: RANGE, udp: RANGE },
    reserve: (w, proto, port) => {
      const k = `${w}/${proto}/${port}`;
      if (inUse.has(k) || reserved.has(k)) return false;
      reserved.add(k);
      return true;
    },
    release: (w, proto, port) => reserved.delete(`${w}/${proto}/${port}`),
    holds: (w, proto, port) => holding.has(`${w}/${proto}/${port}`),
    setOwner: (proto, port, worker) => {
      if (worker === undefined) owner.delete(`${proto}/${port}`);
      else owner.set(`${proto}/${port}`, worker);
    },
  };
  return { ops, reserved, inUse, holding, owner };
}

describe("pinned ports beyond their worker's slice", () => {
  it("a port of the pin's own slice needs nothing", () => {
    const f = fakeWorkers();
    const pins = new CrossSlicePins(f.ops);
    assert.equal(pins.claim("tcp", OF_1, 1), undefined);
    pins.bind(3, "tcp", OF_1);
    assert.equal(pins.size, 0);
    assert.equal(f.owner.size, 0);
  });

  it("a port of another slice is reserved there and steered to the pin's worker, until the pin goes", () => {
    const f = fakeWorkers();
    const pins = new CrossSlicePins(f.ops);
    assert.equal(pins.claim("tcp", OF_0, 1), undefined);
    pins.bind(7, "tcp", OF_0);
    assert.ok(f.reserved.has(`0/tcp/${OF_0}`));
    assert.equal(f.owner.get(`tcp/${OF_0}`), 1);
    // The same worker may pin it again (another address, another pin on the mapping) …
    assert.equal(pins.claim("tcp", OF_0, 1), undefined);
    pins.bind(9, "tcp", OF_0);
    // … another worker may not: the override table knows the port, not the address.
    assert.match(pins.claim("tcp", OF_0, 0) ?? "", /in use: held for a host of worker 1/);
    // UDP is another table.
    assert.equal(pins.claim("udp", OF_0, 0), undefined);
    pins.unpinned(7);
    assert.equal(f.owner.get(`tcp/${OF_0}`), 1, "one pin still holds it");
    pins.unpinned(9);
    assert.equal(f.owner.has(`tcp/${OF_0}`), false);
    assert.equal(f.reserved.has(`0/tcp/${OF_0}`), false);
    assert.equal(pins.size, 0);
  });

  it("a port its slice's worker uses is refused, and a refused pin gives its claim back", () => {
    const f = fakeWorkers();
    const pins = new CrossSlicePins(f.ops);
    f.inUse.add(`1/udp/${OF_1}`);
    assert.match(pins.claim("udp", OF_1, 0) ?? "", /in use/);
    assert.equal(f.owner.size, 0);
    assert.equal(pins.claim("udp", OF_0, 1), undefined);
    pins.unclaim("udp", OF_0);
    assert.equal(pins.size, 0);
    assert.equal(f.reserved.size, 0);
  });

  it("a port beyond every range is steered, not reserved, even to worker 0 (so a clash is seen)", () => {
    const f = fakeWorkers();
    const pins = new CrossSlicePins(f.ops);
    assert.equal(pins.claim("tcp", 8080, 0), undefined);
    assert.equal(f.owner.get("tcp/8080"), 0);
    assert.equal(f.reserved.size, 0);
    assert.match(pins.claim("tcp", 8080, 1) ?? "", /worker 0/);
  });

  it("after its last pin, a port stays while the worker's mapping has flows; lapsed pins are swept", () => {
    const f = fakeWorkers();
    const pins = new CrossSlicePins(f.ops);
    pins.claim("tcp", OF_0, 1);
    pins.bind(11, "tcp", OF_0);
    f.holding.add(`1/tcp/${OF_0}`);
    pins.unpinned(11);
    assert.equal(f.owner.get(`tcp/${OF_0}`), 1, "the forward's connection still runs");
    pins.sweep(() => true);
    assert.equal(pins.size, 1);
    f.holding.clear();
    pins.sweep(() => true);
    assert.equal(pins.size, 0);
    assert.equal(f.reserved.size, 0);
    // A lease that lapsed in its worker: the sweep finds the pin gone.
    pins.claim("udp", OF_1, 0);
    pins.bind(12, "udp", OF_1);
    pins.sweep((id) => id !== 12);
    assert.equal(pins.size, 0);
    assert.equal(f.owner.size, 0);
  });
});
