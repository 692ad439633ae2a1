import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  EV_MAPPING_CREATED,
  EV_MAPPING_DELETED,
  EV_QUOTA_EXCEEDED,
  EV_SESSION_CREATED,
  EV_SESSION_DELETED,
  type NatEvent,
  NatEventRing,
} from "../../../src/nat/nat-events.ts";
import { datagram, ip, u16, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";

/** Every event waiting in the ring, as plain copies. */
function drainAll(ring: NatEventRing): NatEvent[] {
  const out: NatEvent[] = [];
  ring.drain((e) => out.push({ ...e }));
  return out;
}

describe("the NAT event ring", () => {
  it("hands events back oldest first with every field, and is empty after a drain", () => {
    const ring = NatEventRing.create(16);
    ring.push(EV_MAPPING_CREATED, 17, 1234.5, ip(A), 40000, ip(P), 61000, ip(REMOTE), 53);
    ring.push(EV_QUOTA_EXCEEDED, 6, 2000, ip(A), 0, 0, 0, 0, 1133);
    assert.equal(ring.pending, 2);
    const got = drainAll(ring);
    assert.deepEqual(got[0], {
      kind: EV_MAPPING_CREATED,
      proto: 17,
      timeMs: 1234.5,
      inAddr: ip(A),
      inPort: 40000,
      outAddr: ip(P),
      outPort: 61000,
      remAddr: ip(REMOTE),
      remPort: 53,
      limit: 0,
    });
    assert.equal(got[1].kind, EV_QUOTA_EXCEEDED);
    assert.equal(got[1].limit, 1133);
    assert.equal(got[1].remPort, 0);
    assert.equal(ring.pending, 0);
    assert.equal(drainAll(ring).length, 0);
  });

  it("counts what does not fit as lost and keeps what came first", () => {
    const ring = NatEventRing.create(16);
    for (let i = 0; i < 20; i++) ring.push(EV_MAPPING_CREATED, 6, i, i, i, 0, 0, 0, 0);
    assert.equal(ring.lost, 4);
    const got = drainAll(ring);
    assert.deepEqual(
      got.map((e) => e.timeMs),
      Array.from({ length: 16 }, (_, i) => i),
    );
    // Room again once drained.
    assert.equal(ring.push(EV_MAPPING_CREATED, 6, 99, 0, 0, 0, 0, 0, 0), true);
    assert.equal(ring.lost, 4);
  });

  it("wraps around its end many times over and drains at most what it is asked", () => {
    const ring = NatEventRing.create(16);
    let next = 0;
    let seen = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 11; i++) ring.push(EV_SESSION_CREATED, 17, next++, 0, 0, 0, 0, 0, 0);
      assert.equal(
        ring.drain(() => {}, 3),
        3,
      );
      seen += 3;
      ring.drain((e) => assert.equal(e.timeMs, seen++));
    }
    assert.equal(seen, next);
    assert.equal(ring.lost, 0);
  });

  it("is shared: a view over its buffer (another thread's) drains what the engine wrote", () => {
    const ring = NatEventRing.create(64);
    const view = NatEventRing.over(ring.buffer);
    assert.equal(view.capacity, 64);
    ring.push(EV_MAPPING_DELETED, 1, 7, ip(A), 5, ip(P), 6, 0, 0);
    const got = drainAll(view);
    assert.equal(got.length, 1);
    assert.equal(got[0].outPort, 6);
    assert.equal(ring.pending, 0);
  });

  it("a producer that may block waits for room: at once below half full, not past its bound when nobody drains", () => {
    const ring = NatEventRing.create(16);
    for (let i = 0; i < 7; i++) ring.push(EV_MAPPING_CREATED, 17, i, ip(A), i, ip(P), i, 0, 0);
    assert.equal(ring.waitForRoom(60_000), true, "7 of 16: room");
    ring.push(EV_MAPPING_CREATED, 17, 7, ip(A), 7, ip(P), 7, 0, 0);
    assert.equal(ring.waitForRoom(1), false, "8 of 16 and no drain: no room within the bound");
    NatEventRing.over(ring.buffer).drain(() => undefined, 1);
    assert.equal(ring.waitForRoom(60_000), true, "drained to 7");
  });
});

describe("engine NAT events (RFC 6888 §4: mappings, not every connection)", () => {
  const withEvents = (sessions = false) =>
    makeEngine({ natEvents: { capacity: 1024, sessions }, timeouts: { ...defaults(), udpSec: 120 } });
  function defaults() {
    return makeEngine().config.timeouts;
  }

  it("records nothing when not configured", () => {
    const e = makeEngine();
    assert.equal(e.natEvents, null);
  });

  it("logs a mapping's creation with inside and outside endpoints, once for its many flows", () => {
    const e = withEvents();
    const out = run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }), 5000).out;
    run(e, udp({ src: A, dst: "203.0.113.11", sport: 40000, dport: 53 }), 5100);
    const got = drainAll(e.natEvents!);
    assert.equal(got.length, 1);
    assert.equal(got[0].kind, EV_MAPPING_CREATED);
    assert.equal(got[0].proto, 17);
    assert.equal(got[0].timeMs, 5000);
    assert.equal(got[0].inAddr, ip(A));
    assert.equal(got[0].inPort, 40000);
    assert.equal(got[0].outAddr, ip(P));
    assert.equal(got[0].outPort, u16(out, 20));
    assert.equal(got[0].remAddr, ip(REMOTE));
  });

  it("logs the mapping's deletion when its last flow expires, at the expiry's time", () => {
    const e = withEvents();
    run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }), 1000);
    drainAll(e.natEvents!);
    e.tick(60_000);
    assert.equal(e.natEvents!.pending, 0);
    e.tick(125_000);
    const got = drainAll(e.natEvents!);
    assert.equal(got.length, 1);
    assert.equal(got[0].kind, EV_MAPPING_DELETED);
    assert.equal(got[0].inPort, 40000);
    assert.equal(got[0].timeMs, 125_000);
  });

  it("with sessions, logs each flow's start and end as well", () => {
    const e = withEvents(true);
    run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }), 1000);
    run(e, udp({ src: A, dst: "203.0.113.11", sport: 40000, dport: 53 }), 1000);
    e.tick(125_000);
    const kinds = drainAll(e.natEvents!).map((x) => x.kind);
    assert.deepEqual(kinds, [
      EV_MAPPING_CREATED,
      EV_SESSION_CREATED,
      EV_SESSION_CREATED,
      EV_SESSION_DELETED,
      EV_SESSION_DELETED,
      EV_MAPPING_DELETED,
    ]);
  });

  it("logs an address-only flow (GRE) as a mapping of its own, with port 0", () => {
    const e = withEvents();
    run(e, datagram({ src: A, dst: REMOTE, proto: 47, payload: new Uint8Array(8) }), 1000);
    const got = drainAll(e.natEvents!);
    assert.equal(got.length, 1);
    assert.equal(got[0].kind, EV_MAPPING_CREATED);
    assert.equal(got[0].proto, 47);
    assert.equal(got[0].outAddr, ip(P));
    assert.equal(got[0].outPort, 0);
  });

  it("logs a host refused at its port quota once a second, not once per packet", () => {
    const e = makeEngine({ natEvents: { capacity: 1024, sessions: false }, maxPortsPerHost: 2 });
    for (let port = 40000; port < 40010; port++)
      run(e, udp({ src: A, dst: REMOTE, sport: port, dport: 53 }), 1000);
    run(e, udp({ src: A, dst: REMOTE, sport: 40020, dport: 53 }), 2100);
    const quota = drainAll(e.natEvents!).filter((x) => x.kind === EV_QUOTA_EXCEEDED);
    assert.equal(quota.length, 2);
    assert.equal(quota[0].inAddr, ip(A));
    assert.equal(quota[0].limit, 2);
    assert.equal(quota[0].proto, 17);
  });

  it("logs a pinned mapping (a forward) and its removal", () => {
    const e = withEvents();
    const pin = e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 8080, origin: "forward" });
    assert.ok("id" in pin);
    e.unpin(pin.id);
    const got = drainAll(e.natEvents!);
    assert.deepEqual(
      got.map((x) => [x.kind, x.outPort, x.inPort]),
      [
        [EV_MAPPING_CREATED, 8080, 80],
        [EV_MAPPING_DELETED, 8080, 80],
      ],
    );
  });

  it("a new public address: the old address's mappings go, a pinned one is deleted and made again on the new", () => {
    const e = makeEngine({ mode: "interface", natEvents: { capacity: 1024, sessions: false } });
    run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }), 1000);
    const pin = e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 8080, origin: "forward" });
    assert.ok("id" in pin);
    drainAll(e.natEvents!);
    e.changePublicAddress(ip("198.51.100.9"));
    const got = drainAll(e.natEvents!).map((x) => [x.kind, x.proto, x.outAddr, x.outPort]);
    assert.deepEqual(got.slice(1), [
      [EV_MAPPING_DELETED, 6, ip(P), 8080],
      [EV_MAPPING_CREATED, 6, ip("198.51.100.9"), 8080],
    ]);
    assert.deepEqual(got[0].slice(0, 3), [EV_MAPPING_DELETED, 17, ip(P)]);
  });
});
