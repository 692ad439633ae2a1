import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { REPLY } from "../../../src/nat/engine.ts";
import { checksumProblems, ip, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";

describe("TTL", () => {
  it("decrement mode: the engine is the hop and answers time-exceeded at TTL 1", () => {
    const e = makeEngine({ ttlMode: "decrement" });
    const probe = udp({ src: A, dst: REMOTE, sport: 44000, dport: 33434, ttl: 1 });
    const { verdict, out } = run(e, probe);
    assert.equal(verdict, REPLY);
    assert.equal(out[20], 11);
    assert.equal(u32(out, 12), ip(P));
    assert.equal(u32(out, 16), ip(A));
    assert.deepEqual(checksumProblems(out), []);
    const ok = run(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 33434, ttl: 5 }));
    assert.equal(ok.out[8], 4);
  });

  it("compensate mode adds back the kernel's second decrement, preserve leaves it", () => {
    assert.equal(run(makeEngine(), udp({ src: A, dst: REMOTE, sport: 1, dport: 2, ttl: 9 })).out[8], 10);
    assert.equal(
      run(makeEngine({ ttlMode: "preserve" }), udp({ src: A, dst: REMOTE, sport: 1, dport: 2, ttl: 9 }))
        .out[8],
      9,
    );
  });
});
