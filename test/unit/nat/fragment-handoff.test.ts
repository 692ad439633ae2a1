// Fragments across workers: every fragment from outside is steered by (source, destination, IP
// id), so a datagram may land on a worker that does not hold its flow. That worker hands the
// whole datagram (the first, those held before it, the later ones) to the owner of the
// destination port's slice, which translates it as if it had come from its own queue.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FORWARD, HANDED, HELD, type NatEngine } from "../../../src/nat/engine.ts";
import { checksumProblems, ip, reassemble, splitFragments, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";

/** Two shards of one gateway, as two workers run them. */
function shards(): [NatEngine, NatEngine] {
  return [0, 1].map((index) => makeEngine({ portSlice: { index, count: 2 } })) as [NatEngine, NatEngine];
}

/** A opens a UDP flow on `owner`; the remote's 3000-byte answer to its public port, as fragments. */
function answerFragments(owner: NatEngine, id: number): { frags: Uint8Array[] } {
  const out = run(owner, udp({ src: A, dst: REMOTE, sport: 40000, dport: 5000, payload: 10 }));
  assert.equal(out.verdict, FORWARD);
  const port = u16(out.out, 20);
  const answer = udp({ src: REMOTE, dst: P, sport: 5000, dport: port, payload: 3000 });
  return { frags: splitFragments(answer, 1480, id) };
}

/** What `from` handed over, fed to `to` in order: the translated packets. */
function deliver(from: NatEngine, to: NatEngine, worker: number): Uint8Array[] {
  const box = from.handoffOutbox!;
  const got: Uint8Array[] = [];
  for (let i = 0; i < box.count; i++) {
    assert.equal(box.meta[3 * i], worker, "handed to the owner");
    const at = box.meta[3 * i + 1];
    const r = run(to, box.buf.slice(at, at + box.meta[3 * i + 2]));
    assert.equal(r.verdict, FORWARD, `packet ${i} translated by the owner`);
    got.push(r.out);
  }
  box.clear();
  return got;
}

function assertForA(frags: Uint8Array[]): void {
  const whole = reassemble(frags);
  assert.equal(u32(whole, 16), ip(A), "to A-box");
  assert.deepEqual(checksumProblems(whole), []);
  assert.equal(whole.length, 20 + 8 + 3000);
}

describe("fragments across workers", () => {
  it("one worker has no outbox", () => {
    assert.equal(makeEngine().handoffOutbox, null);
  });

  it("a datagram on the wrong worker, in order: every fragment is handed to the owner, which translates it", () => {
    const [w0, w1] = shards();
    const { frags } = answerFragments(w1, 11);
    for (const f of frags) assert.equal(run(w0, f).verdict, HANDED);
    assert.equal(w0.stats().counters.fragments_handed_off, frags.length);
    assertForA(deliver(w0, w1, 1));
  });

  it("a later fragment before its first: held, then handed with the first, first in front", () => {
    const [w0, w1] = shards();
    const { frags } = answerFragments(w1, 12);
    const [first, ...later] = frags;
    assert.equal(run(w0, later[1]).verdict, HELD);
    assert.equal(run(w0, first).verdict, HANDED);
    assert.equal(run(w0, later[0]).verdict, HANDED);
    const box = w0.handoffOutbox!;
    assert.equal(box.count, 3);
    assert.equal(u16(box.buf, box.meta[1] + 6) & 0x1fff, 0, "the first fragment goes first");
    assertForA(deliver(w0, w1, 1));
    assert.equal(w0.stats().heldFragments, 0, "nothing left held on the wrong worker");
  });

  it("a datagram on its owner is translated there, nothing handed", () => {
    const [, w1] = shards();
    const { frags } = answerFragments(w1, 13);
    const out = frags.map((f) => run(w1, f));
    for (const r of out) assert.equal(r.verdict, FORWARD);
    assertForA(out.map((r) => r.out));
    assert.equal(w1.handoffOutbox!.count, 0);
  });
});
