// Held fragments (RFC 4787 REQ-14) under pressure: budgeted by bytes, per source, outside sources
// apart from inside ones, the oldest of the offender evicted first (issue 16 item 8).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { DEFAULT_FRAGMENT_BUFFER_BYTES } from "../../../src/nat/config.ts";
import {
  D_FRAGMENT_BUFFER_FULL,
  D_FRAGMENT_SOURCE_BUDGET,
  D_FRAGMENT_TIMEOUT,
} from "../../../src/nat/counters.ts";
import { DROP, FORWARD, HELD, type NatEngine } from "../../../src/nat/engine.ts";
import {
  CLASS_INSIDE,
  CLASS_OUTSIDE,
  FRAGMENT_CHUNK,
  FragmentStore,
  HOLD_OK,
} from "../../../src/nat/fragment-store.ts";
import { checksumProblems, ip, reassemble, splitFragments, u16, u32, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
/** 64 KiB: 128 chunks; outside sources share 16 (4 each at most), inside ones 112 (28 each). */
const BUFFER = 64 * 1024;

/** A's datagram `id`: [first fragment (1500 bytes), later fragment (548 bytes: 2 chunks)]. */
function aDatagram(id: number, src = A): Uint8Array[] {
  return splitFragments(udp({ src, dst: REMOTE, sport: 40000 + id, dport: 5000, payload: 2000 }), 1480, id);
}

/** A bogus later fragment from the Internet (1000 bytes: 2 chunks), from one of many sources. */
function bogus(i: number): Uint8Array {
  const src = `198.18.${(i >> 8) & 255}.${i & 255}`;
  return splitFragments(
    udp({ src, dst: P, sport: 53, dport: 61000 + (i % 4000), payload: 2000 }),
    1024,
    i,
  )[1];
}

function held(e: NatEngine, pkt: Uint8Array): number {
  return run(e, pkt).verdict;
}

describe("held fragments under pressure (RFC 4787 REQ-14)", () => {
  it("the default buffer is 4 MiB, as Linux's own per namespace; [limits] fragment_buffer_bytes sets it", () => {
    assert.equal(DEFAULT_FRAGMENT_BUFFER_BYTES, 4 * 1024 * 1024);
    const cfg = (text: string) =>
      resolveRunConfig({ inside: ["lan0"], outside: "wan0", config: "masq.toml" }, () => text).limits;
    assert.equal(cfg("").fragmentBufferBytes, DEFAULT_FRAGMENT_BUFFER_BYTES);
    assert.equal(cfg("[limits]\nfragment_buffer_bytes = 1048576\n").fragmentBufferBytes, 1_048_576);
    assert.throws(
      () => cfg("[limits]\nfragment_buffer_bytes = 1000\n"),
      /limits\.fragment_buffer_bytes: must be at least/,
    );
  });

  it("bogus later fragments from the Internet cannot push out an inside host's held fragment", () => {
    const e = makeEngine({ maxHeldFragmentBytes: BUFFER });
    for (let i = 0; i < 300; i++) assert.equal(held(e, bogus(i)), HELD);
    assert.equal(e.stats().heldFragments, 8, "outside sources share 16 chunks: eight 2-chunk fragments");
    assert.equal(e.counters[D_FRAGMENT_BUFFER_FULL], 292, "each new one pushed out the oldest outsider");
    const [first, later] = aDatagram(7);
    assert.equal(held(e, later), HELD, "A-box's fragment finds room");
    for (let i = 300; i < 600; i++) held(e, bogus(i));
    assert.equal(e.counters[D_FRAGMENT_BUFFER_FULL], 592);
    const a = run(e, first);
    assert.equal(a.verdict, FORWARD);
    assert.equal(e.pendingCount, 1, "A-box's held fragment is still there and goes with its first");
    const released = e.takePending()!;
    assert.equal(u32(released, 12), ip(P));
    assert.equal(u16(released, 4), 7);
    assert.deepEqual(checksumProblems(released), []);
    assert.equal(e.stats().counters.fragments_released, 1);
  });

  it("a source over its share loses its own oldest fragment first (counted), newer ones stay", () => {
    const e = makeEngine({ maxHeldFragmentBytes: BUFFER });
    const dgrams = Array.from({ length: 15 }, (_, i) => aDatagram(i));
    for (const [, later] of dgrams) assert.equal(held(e, later), HELD);
    assert.equal(e.stats().heldFragments, 14, "28 chunks: fourteen 2-chunk fragments");
    assert.equal(e.counters[D_FRAGMENT_SOURCE_BUDGET], 1);
    assert.equal(e.counters[D_FRAGMENT_BUFFER_FULL], 0);
    run(e, dgrams[0][0]);
    assert.equal(e.pendingCount, 0, "the oldest went");
    run(e, dgrams[1][0]);
    assert.equal(e.pendingCount, 1, "the next oldest stayed");
  });

  it("when the inside share is full, the oldest inside fragment goes (another host's, counted as buffer full)", () => {
    const e = makeEngine({ maxHeldFragmentBytes: BUFFER });
    const hosts = ["192.168.0.2", "192.168.0.3", "192.168.0.4", "192.168.0.5"];
    const first = aDatagram(0, hosts[0]);
    for (const h of hosts) for (let i = 0; i < 14; i++) assert.equal(held(e, aDatagram(i, h)[1]), HELD);
    assert.equal(e.stats().heldFragmentBytes, 112 * FRAGMENT_CHUNK, "the inside share, in whole chunks");
    assert.equal(held(e, aDatagram(0, "192.168.0.6")[1]), HELD);
    assert.equal(e.counters[D_FRAGMENT_BUFFER_FULL], 1);
    run(e, first[0]);
    assert.equal(e.pendingCount, 0, "the oldest of the class (192.168.0.2's first) went");
  });

  it("a fragment larger than its source may hold is refused; bytes are accounted and given back on timeout", () => {
    const e = makeEngine({ maxHeldFragmentBytes: BUFFER });
    const big = splitFragments(
      udp({ src: "198.18.0.1", dst: P, sport: 53, dport: 61000, payload: 6000 }),
      3000,
      9,
    )[1];
    assert.equal(big.length, 3020);
    assert.equal(held(e, big), DROP, "6 chunks: more than an outside source's 4");
    assert.equal(e.lastDrop, D_FRAGMENT_SOURCE_BUDGET);
    const inside = splitFragments(
      udp({ src: A, dst: REMOTE, sport: 1, dport: 2, payload: 6000 }),
      3000,
      9,
    )[1];
    assert.equal(held(e, inside), HELD, "an inside source may hold it");
    held(e, bogus(1));
    assert.equal(e.stats().heldFragmentBytes, (6 + 2) * FRAGMENT_CHUNK);
    e.tick(1000 + 30_000);
    assert.equal(e.counters[D_FRAGMENT_TIMEOUT], 2);
    assert.deepEqual([e.stats().heldFragments, e.stats().heldFragmentBytes], [0, 0]);
  });

  it("fragments held out of order come out in arrival order, translated, and reassemble byte-exact", () => {
    const e = makeEngine();
    const whole = udp({ src: A, dst: REMOTE, sport: 44000, dport: 5000, payload: 4000 });
    const [p0, p1, p2] = splitFragments(whole, 1480, 0x77);
    assert.equal(held(e, p2), HELD);
    assert.equal(held(e, p1), HELD);
    const head = run(e, p0).out;
    const out = [e.takePending()!.slice(), e.takePending()!.slice()];
    assert.equal(e.takePending(), undefined);
    assert.deepEqual(
      out.map((f) => u16(f, 6) & 0x1fff),
      [(2 * 1480) >> 3, 1480 >> 3],
      "arrival order",
    );
    const re = reassemble([head, ...out]);
    assert.equal(re.length, whole.length);
    assert.deepEqual(checksumProblems(re), []);
    assert.equal(u32(re, 12), ip(P));
  });

  it("first fragments from the Internet cannot push out an inside datagram's record", () => {
    const e = makeEngine();
    const [first, later] = aDatagram(3);
    assert.equal(run(e, first).verdict, FORWARD);
    // 1,100 first fragments from outside (to no mapping: dropped, each remembered as such).
    for (let i = 0; i < 1100; i++) {
      const [f] = splitFragments(
        udp({ src: "198.18.0.9", dst: P, sport: 53, dport: 61000, payload: 100 }),
        24,
        i,
      );
      assert.equal(run(e, f).verdict, DROP);
    }
    const r = run(e, later);
    assert.equal(r.verdict, FORWARD, "translated at once, not held for a first fragment that already went");
    assert.equal(u32(r.out, 12), ip(P));
  });
});

describe("the fragment store (property)", () => {
  it("holds, evictions, releases and timeouts never lose or leak a chunk, and keep the shares", () => {
    const op = fc.oneof(
      fc.record({
        k: fc.constant("hold" as const),
        c: fc.constantFrom(CLASS_INSIDE, CLASS_OUTSIDE),
        src: fc.integer({ min: 1, max: 6 }),
        id: fc.integer({ min: 0, max: 7 }),
        len: fc.integer({ min: 28, max: 3000 }),
      }),
      fc.record({
        k: fc.constant("take" as const),
        src: fc.integer({ min: 1, max: 6 }),
        id: fc.integer({ min: 0, max: 7 }),
      }),
      fc.record({ k: fc.constant("drain" as const) }),
      fc.record({ k: fc.constant("tick" as const), dt: fc.integer({ min: 0, max: 20 }) }),
    );
    assertProperty(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const st = new FragmentStore(16 * 1024, 7);
        const data = new Uint8Array(3000).map((_, i) => i & 255);
        let now = 0;
        for (const o of ops) {
          if (o.k === "hold") {
            // Outside sources have other addresses than inside ones, as the engine classes them.
            const src = o.c === CLASS_INSIDE ? o.src : 100 + o.src;
            data[0] = o.id;
            const r = st.hold(o.c, src, 9, o.id, data, 0, o.len, now);
            if (r === HOLD_OK) assert.ok(st.count > 0);
          } else if (o.k === "take") {
            st.takeHeld(o.src, 9, o.id, (b, off) => {
              assert.equal(b[off], o.id, "the fragment's own bytes come out");
              return true;
            });
          } else if (o.k === "drain") {
            while (st.takePending() !== undefined);
          } else {
            now += o.dt;
            st.expire(now, 30);
          }
          assert.equal(st.heldBytes + st.freeBytes, st.bufferBytes, "every chunk held or free");
          assert.ok(st.classBytes(CLASS_OUTSIDE) <= st.classLimit[CLASS_OUTSIDE] * FRAGMENT_CHUNK);
          assert.ok(st.classBytes(CLASS_INSIDE) <= st.classLimit[CLASS_INSIDE] * FRAGMENT_CHUNK);
        }
        st.expire(now + 30, 30);
        assert.deepEqual([st.count, st.heldBytes], [0, 0]);
      }),
      300,
    );
  });
});
