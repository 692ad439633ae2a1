// RFC 5382 REQ-4: unsolicited inbound SYNs answered with ICMP port unreachable after 6 s (when
// configured; silence by default), not at all when the inside host opens the connection itself.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as C from "../../../src/nat/counters.ts";
import { DROP, FORWARD, type NatEngine } from "../../../src/nat/engine.ts";
import { checksumProblems, ip, SYN, tcp, u16, u32 } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";

const unsolicited = (
  e: NatEngine,
  nowMs: number,
  sport = 5555,
  o: { src?: string; options?: number[] } = {},
) =>
  run(
    e,
    tcp({ src: o.src ?? REMOTE, dst: P, sport, dport: 61500, flags: SYN, seq: 777, options: o.options }),
    nowMs,
  );

function drain(e: NatEngine): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let p = e.takeAnswer(); p !== undefined; p = e.takeAnswer()) out.push(p.slice());
  return out;
}

describe("unsolicited SYNs (RFC 5382 REQ-4)", () => {
  it("are dropped silently by default", () => {
    const e = makeEngine();
    assert.equal(unsolicited(e, 10_000).verdict, DROP);
    e.tick(30_000);
    assert.equal(e.takeAnswer(), undefined);
  });

  it("get ICMP port unreachable from the address they were sent to, 6 s later, once per connection", () => {
    const e = makeEngine({ unsolicitedSyn: "port-unreachable" });
    assert.equal(unsolicited(e, 10_000).verdict, DROP);
    assert.equal(e.lastDrop, C.D_NO_MAPPING);
    unsolicited(e, 13_000); // the sender retransmits: the first arrival keeps the time
    e.tick(15_999);
    assert.equal(e.takeAnswer(), undefined, "not before 6 s");
    e.tick(16_000);
    const [icmp, ...more] = drain(e);
    assert.equal(more.length, 0);
    assert.equal(icmp[9], 1);
    assert.equal(u32(icmp, 12), ip(P));
    assert.equal(u32(icmp, 16), ip(REMOTE));
    assert.deepEqual([icmp[20], icmp[21]], [3, 3], "type 3 code 3");
    const q = icmp.subarray(28);
    assert.equal(u32(q, 12), ip(REMOTE), "the SYN quoted as it came");
    assert.equal(u16(q, 20), 5555);
    assert.equal(u16(q, 22), 61500);
    assert.equal(u32(q, 24), 777);
    assert.deepEqual(checksumProblems(icmp), []);
    assert.equal(e.counters[C.C_UNSOLICITED_SYN_REPLIES], 1);
    e.tick(60_000);
    assert.equal(e.takeAnswer(), undefined);
  });

  it("wait 6 s on the millisecond clock, not to the next whole second", () => {
    const e = makeEngine({ unsolicitedSyn: "port-unreachable" });
    unsolicited(e, 10_900);
    e.tick(16_000);
    assert.equal(e.takeAnswer(), undefined, "5.1 s after the SYN");
    e.tick(17_000);
    assert.ok(e.takeAnswer());
  });

  it("get no answer when the inside host sends its own SYN within the 6 s (simultaneous open, REQ-2)", () => {
    const e = makeEngine({ unsolicitedSyn: "port-unreachable", filtering: "address-port-dependent" });
    // A's mapping, known to the peer through a rendezvous server.
    const syn = run(e, tcp({ src: A, dst: "203.0.113.200", sport: 7000, dport: 3478, flags: SYN }), 10_000);
    const port = u16(syn.out, 20);
    const peer = (nowMs: number) =>
      run(e, tcp({ src: REMOTE, dst: P, sport: 6000, dport: port, flags: SYN, seq: 42 }), nowMs);
    assert.equal(peer(10_000).verdict, DROP);
    assert.equal(e.lastDrop, C.D_FILTERED);
    run(e, tcp({ src: A, dst: REMOTE, sport: 7000, dport: 6000, flags: SYN, seq: 1000 }), 12_000);
    e.tick(20_000);
    assert.equal(e.takeAnswer(), undefined);
    assert.equal(e.counters[C.C_UNSOLICITED_SYN_SIMULTANEOUS], 1);
    assert.equal(peer(13_000).verdict, FORWARD, "the peer's retransmission meets the inside host's SYN");
  });

  it("are remembered in a bounded table: beyond it, SYNs go unanswered and are counted", () => {
    const e = makeEngine({ unsolicitedSyn: "port-unreachable", hashSeed: 7 });
    for (let i = 0; i < 1000; i++) unsolicited(e, 10_000, 1024 + i);
    // With IP options the header cannot be quoted from the fixed-size record.
    unsolicited(e, 10_000, 9, { options: [1, 1, 1, 0] });
    e.tick(16_000);
    const sent = drain(e).length;
    assert.ok(sent > 0 && sent <= 256, `${sent} answers`);
    assert.equal(e.counters[C.C_UNSOLICITED_SYN_REPLIES], sent);
    assert.equal(e.counters[C.C_UNSOLICITED_SYN_UNANSWERED], 1001 - sent);
    assert.equal(e.counters[C.D_NO_MAPPING], 1001);
  });
});
