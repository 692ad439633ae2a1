import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { D_FRAGMENT_TIMEOUT } from "../../../src/nat/counters.ts";
import { FORWARD, HELD } from "../../../src/nat/engine.ts";
import { checksumProblems, ip, reassemble, splitFragments, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";

describe("RFC 4787 REQ-14: fragments", () => {
  const fragmentsOf = (pkt: Uint8Array, firstPayload: number) => splitFragments(pkt, firstPayload, 0x4242);

  it("translates later fragments like their first", () => {
    const e = makeEngine();
    const [first, second] = fragmentsOf(
      udp({ src: A, dst: REMOTE, sport: 44000, dport: 5000, payload: 2000 }),
      1480,
    );
    const a = run(e, first);
    const b = run(e, second);
    assert.equal(a.verdict, FORWARD);
    assert.equal(b.verdict, FORWARD);
    assert.equal(u32(b.out, 12), ip(P));
    assert.deepEqual(checksumProblems(b.out), []);
  });

  it("holds fragments that arrive before their first and releases them translated, and reassembles byte-exact", () => {
    const e = makeEngine();
    const whole = udp({ src: A, dst: REMOTE, sport: 44000, dport: 5000, payload: 2000 });
    const [first, second] = fragmentsOf(whole, 1480);
    assert.equal(run(e, second).verdict, HELD);
    const a = run(e, first);
    assert.equal(a.verdict, FORWARD);
    assert.equal(e.pendingCount, 1);
    const released = e.takePending()!;
    assert.equal(u32(released, 12), ip(P));
    assert.deepEqual(checksumProblems(released), []);
    // Reassembled, the whole translated datagram's UDP checksum is right.
    assert.deepEqual(checksumProblems(reassemble([a.out, released])), []);
  });

  it("drops held fragments whose first never comes, counted as fragment_timeout", () => {
    const e = makeEngine();
    const [, second] = fragmentsOf(
      udp({ src: A, dst: REMOTE, sport: 44000, dport: 5000, payload: 2000 }),
      1480,
    );
    run(e, second, 1000);
    e.tick(40_000);
    assert.equal(e.counters[D_FRAGMENT_TIMEOUT], 1);
  });
});
