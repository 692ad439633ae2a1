// Fragments across workers: every fragment from outside is steered by (source, destination, IP
// id), so a datagram may land on a worker that does not hold its flow. That worker hands the
// whole datagram (the first, those held before it, the later ones) to the owner of the
// destination port's slice, which translates it as if it had come from its own queue. A hairpin
// between hosts of two workers is done in halves: the outbound one on the sender's worker, the
// inbound one on the worker of the mapping it goes to.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  FORWARD,
  HAND_OVER,
  HANDED,
  HELD,
  type NatEngine,
  SIDE_HAIRPIN,
  SIDE_INSIDE,
} from "../../../src/nat/engine.ts";
import {
  checksumProblems,
  datagram,
  ip,
  reassemble,
  splitFragments,
  u16,
  u32,
  udp,
} from "../../helpers/packets.ts";
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

describe("fragments and hairpins across workers", () => {
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

  it("a datagram to a pinned port of w0's slice held by w1 (the override table): handed to w1", () => {
    const [w0, w1] = shards();
    // A port of w0's slice of the default range, pinned for A on w1 (a forward's port).
    const { first, last } = w0.config.ports.udp;
    const port = first + 100;
    assert.ok(port <= last);
    const pin = w1.pinMapping({
      proto: "udp",
      inAddr: ip(A),
      inPort: 40000,
      outPort: port,
      origin: "forward",
    });
    assert.ok(!("error" in pin), JSON.stringify(pin));
    for (const e of [w0, w1]) e.setPortOwner(17, port, 1);
    const answer = udp({ src: REMOTE, dst: P, sport: 5000, dport: port, payload: 3000 });
    const frags = splitFragments(answer, 1480, 14);
    for (const f of frags) assert.equal(run(w0, f).verdict, HANDED);
    assertForA(deliver(w0, w1, 1));
    // Back to its slice: w0 keeps what it is sent.
    for (const e of [w0, w1]) e.setPortOwner(17, port, undefined);
    assert.notEqual(run(w0, splitFragments(answer, 1480, 15)[0]).verdict, HANDED);
  });

  it("another protocol's datagram (ESP) on w1: handed to w0, where the steering keeps such flows", () => {
    const [w0, w1] = shards();
    const out = run(w0, datagram({ src: A, dst: REMOTE, proto: 50, payload: new Uint8Array(16) }));
    assert.equal(out.verdict, FORWARD);
    const answer = datagram({ src: REMOTE, dst: P, proto: 50, payload: new Uint8Array(3000) });
    const frags = splitFragments(answer, 1480, 16);
    for (const f of frags) assert.equal(run(w1, f).verdict, HANDED);
    const got = deliver(w1, w0, 0);
    const whole = reassemble(got);
    assert.equal(u32(whole, 16), ip(A), "to A-box");
    assert.equal(whole.length, 20 + 3000);
  });

  it("a datagram on its owner is translated there, nothing handed", () => {
    const [, w1] = shards();
    const { frags } = answerFragments(w1, 13);
    const out = frags.map((f) => run(w1, f));
    for (const r of out) assert.equal(r.verdict, FORWARD);
    assertForA(out.map((r) => r.out));
    assert.equal(w1.handoffOutbox!.count, 0);
  });

  it("hairpin between hosts of two workers: each half on the worker of its mapping", () => {
    const [w0, w1] = shards();
    const B = "192.168.0.3";
    const side = (e: NatEngine, pkt: Uint8Array, sideOf: number) => {
      const buf = pkt.slice();
      const verdict = e.process(buf, 0, buf.length, 1000, false, sideOf);
      return { verdict, out: buf.slice(0, e.outLen) };
    };
    // B's mapping on w1, then A (on w0) sends to B's public endpoint.
    const bOut = run(w1, udp({ src: B, dst: REMOTE, sport: 7000, dport: 5000, payload: 4 }));
    const pB = u16(bOut.out, 20);
    const aHalf = side(w0, udp({ src: A, dst: P, sport: 6000, dport: pB, payload: 4 }), SIDE_INSIDE);
    assert.equal(aHalf.verdict, HAND_OVER);
    assert.equal(w0.handoffWorker, 1);
    assert.equal(u32(aHalf.out, 12), ip(P), "the outbound half is done: from A's public endpoint");
    const pA = u16(aHalf.out, 20);
    const toB = side(w1, aHalf.out, SIDE_HAIRPIN);
    assert.equal(toB.verdict, FORWARD);
    assert.equal(u32(toB.out, 16), ip(B));
    assert.equal(u16(toB.out, 20), pA);
    assert.deepEqual(checksumProblems(toB.out), []);
    // B answers A's public endpoint: the outbound half on w1, the inbound half on w0.
    const bHalf = side(w1, udp({ src: B, dst: P, sport: 7000, dport: pA, payload: 4 }), SIDE_INSIDE);
    assert.equal(bHalf.verdict, HAND_OVER);
    assert.equal(w1.handoffWorker, 0);
    const toA = side(w0, bHalf.out, SIDE_HAIRPIN);
    assert.equal(toA.verdict, FORWARD);
    assert.equal(u32(toA.out, 16), ip(A));
    assert.equal(u16(toA.out, 22), 6000);
    assert.equal(u16(toA.out, 20), pB);
    assert.deepEqual(checksumProblems(toA.out), []);
  });
});
