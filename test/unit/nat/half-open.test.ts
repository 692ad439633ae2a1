// Inbound half-open TCP connections (a SYN flood's): their queue, the eviction order under
// pressure (oldest first, never an established connection) and the per-host accounting.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_TIMEOUTS } from "../../../src/nat/config.ts";
import * as C from "../../../src/nat/counters.ts";
import { DROP, FORWARD, type NatEngine } from "../../../src/nat/engine.ts";
import { HalfOpenQueue } from "../../../src/nat/half-open.ts";
import { ACK, ip, RST, SYN, tcp, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";
import { Conn } from "./tcp-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
const spoofed = (i: number) => `203.0.113.${i}`;

/** An engine with a forward of public 8080 to A's web server. */
function forwarded(over: Parameters<typeof makeEngine>[0] = {}): NatEngine {
  const e = makeEngine(over);
  e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 8080, origin: "forward" });
  return e;
}

/** A SYN from a spoofed source at the forward. */
const flood = (e: NatEngine, i: number, nowMs: number) =>
  run(e, tcp({ src: spoofed(i), dst: P, sport: 5000, dport: 8080, flags: SYN, seq: 1000 }), nowMs);

const hasFlowFrom = (e: NatEngine, i: number) => e.flows().some((f) => f.remote.addr === spoofed(i));

describe("half-open queue", () => {
  it("keeps flows oldest first; removal anywhere is O(1) and keeps the order", () => {
    const q = new HalfOpenQueue(8);
    assert.equal(q.oldest(), -1);
    q.push(3, 100);
    q.push(5, 200);
    q.push(1, 300);
    q.push(5, 400); // already queued: keeps its place and its time
    assert.equal(q.count, 3);
    assert.equal(q.oldest(), 3);
    assert.ok(q.remove(5));
    assert.equal(q.remove(5), false);
    assert.equal(q.oldest(), 3);
    assert.ok(q.remove(3));
    assert.equal(q.oldest(), 1);
    assert.equal(q.ageMs(1, 1300), 1000);
    q.push(5, 1400);
    assert.ok(q.remove(1));
    assert.equal(q.oldest(), 5);
    assert.ok(q.remove(5));
    assert.equal(q.oldest(), -1);
    assert.equal(q.count, 0);
    assert.equal(q.has(5), false);
  });
});

describe("SYN flood pressure", () => {
  it("at the cap, a SYN evicts the oldest half-open connection once it has had a second; else it is refused", () => {
    const e = forwarded({ maxHalfOpen: 3 });
    assert.equal(flood(e, 1, 1000).verdict, FORWARD);
    assert.equal(flood(e, 2, 1000).verdict, FORWARD);
    assert.equal(flood(e, 3, 1200).verdict, FORWARD);
    assert.equal(flood(e, 4, 1500).verdict, DROP);
    assert.equal(e.lastDrop, C.D_HALF_OPEN_LIMIT, "every queued one is younger than a second");
    assert.equal(flood(e, 4, 2000).verdict, FORWARD);
    assert.equal(e.counters[C.C_HALF_OPEN_EVICTED], 1);
    assert.equal(hasFlowFrom(e, 1), false, "the oldest went first");
    assert.ok(hasFlowFrom(e, 2));
    assert.equal(flood(e, 5, 2100).verdict, FORWARD);
    assert.equal(hasFlowFrom(e, 2), false);
    assert.equal(flood(e, 6, 2150).verdict, DROP, "the oldest left is 950 ms old");
    assert.equal(e.counters[C.C_HALF_OPEN_EVICTED], 2);
    assert.equal(e.stats().flows, 3);
  });

  it("an established connection is never evicted, and keeps working through the flood", () => {
    const e = forwarded({ maxHalfOpen: 2 });
    const real = new Conn(e, A, 80, REMOTE, 6000, 8080);
    real.in({ flags: SYN, seq: 1000 });
    real.out({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    real.in({ flags: ACK, seq: 1001, ack: 5001 });
    for (let i = 1; i <= 50; i++) flood(e, i, 1000 + i * 1000);
    assert.equal(real.state(), "established");
    real.nowMs = 60_000;
    assert.equal(real.in({ flags: ACK, seq: 1001, ack: 5001, payload: 10 }).verdict, FORWARD);
    assert.equal(real.out({ flags: ACK, seq: 5001, ack: 1011, payload: 10 }).verdict, FORWARD);
    assert.equal(e.counters[C.C_HALF_OPEN_EVICTED], 48);
  });

  it("inbound half-open connections do not use the inside host's quota; a completed one counts", () => {
    const e = forwarded({ maxFlowsPerHost: 4 });
    for (let i = 1; i <= 20; i++) assert.equal(flood(e, i, 1000).verdict, FORWARD);
    const h = e.hostTable.find(ip(A));
    assert.equal(e.hostTable.halfOpen[h], 20);
    assert.equal(e.hostTable.flows[h], 0);
    // One of them completes: it is now one of A's flows.
    const c = new Conn(e, A, 80, spoofed(1), 5000, 8080);
    c.out({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    c.in({ flags: ACK, seq: 1001, ack: 5001 });
    assert.equal(e.hostTable.halfOpen[h], 19);
    assert.equal(e.hostTable.flows[h], 1);
    // A's own connections still have the rest of the quota.
    for (let p = 0; p < 3; p++)
      assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1000 + p, dport: 53 })).verdict, FORWARD);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 2000, dport: 53 })).verdict, DROP);
    assert.equal(e.lastDrop, C.D_HOST_FLOW_LIMIT);
  });

  it("a full flow table: a new flow evicts the oldest half-open connection whatever its age; with none, it is refused", () => {
    const e = forwarded({ maxFlows: 16, maxMappings: 32 });
    for (let i = 1; i <= 4; i++) flood(e, i, 1000);
    for (let p = 0; p < 12; p++) run(e, udp({ src: A, dst: REMOTE, sport: 1000 + p, dport: 53 }), 1000);
    assert.equal(e.stats().flows, 16);
    const fresh = (p: number) => run(e, udp({ src: B, dst: REMOTE, sport: 3000 + p, dport: 53 }), 1000);
    assert.equal(fresh(0).verdict, FORWARD);
    assert.equal(hasFlowFrom(e, 1), false);
    assert.equal(e.counters[C.C_HALF_OPEN_EVICTED], 1);
    // An outbound TCP connection too, and an inbound SYN while under the half-open cap.
    assert.equal(
      run(e, tcp({ src: B, dst: REMOTE, sport: 4000, dport: 80, flags: SYN }), 1000).verdict,
      FORWARD,
    );
    assert.equal(flood(e, 9, 1000).verdict, FORWARD);
    assert.equal(e.counters[C.C_HALF_OPEN_EVICTED], 3);
    for (let p = 1; p <= 2; p++) assert.equal(fresh(p).verdict, FORWARD);
    assert.equal(fresh(3).verdict, DROP);
    assert.equal(e.lastDrop, C.D_FLOW_TABLE_FULL, "nothing left to evict");
    assert.equal(e.stats().flows, 16);
  });

  it("an evicted connection's mapping goes with it when it was the last; the SYN that found it is then unsolicited", () => {
    const e = makeEngine({
      filtering: "endpoint-independent",
      maxHalfOpen: 1,
      timeouts: { ...DEFAULT_TIMEOUTS, tcpClosedSec: 10 },
    });
    // A mapping made by an outbound connection that is refused (and so ends), then held by an
    // inbound SYN alone.
    const out = new Conn(e, A, 7000, REMOTE, 80);
    out.out({ flags: SYN, seq: 1000 });
    out.in({ flags: RST | ACK, seq: 0, ack: 1001 });
    const port = out.outPort;
    const syn = (i: number, nowMs: number) =>
      run(e, tcp({ src: spoofed(i), dst: P, sport: 5000, dport: port, flags: SYN, seq: 1000 }), nowMs);
    assert.equal(syn(1, 1000).verdict, FORWARD);
    e.tick(12_000);
    assert.equal(e.stats().flows, 1);
    assert.equal(e.stats().mappings, 1);
    // Evicting the half-open one removes the mapping: the new SYN has nothing to reach.
    assert.equal(syn(2, 12_500).verdict, DROP);
    assert.equal(e.lastDrop, C.D_NO_MAPPING);
    assert.equal(e.stats().mappings, 0);
    assert.equal(e.stats().flows, 0);
    assert.equal(e.counters[C.C_HALF_OPEN_EVICTED], 1);
  });
});
