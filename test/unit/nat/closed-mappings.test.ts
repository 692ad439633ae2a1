// Ports of finished TCP mappings for new connections (src/nat/closed-mappings.ts, issue 17): only
// when no other port is to be had, only mappings whose every connection has finished, the host's
// own first, another host's only towards another remote endpoint and never beyond its share, and
// what late segments of the old connection meet afterwards.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import * as C from "../../../src/nat/counters.ts";
import { DROP, FORWARD, type NatEngine, REPLY } from "../../../src/nat/engine.ts";
import { FifoLists } from "../../../src/nat/fifo-lists.ts";
import { M_PORTS, MAPPING_WORDS } from "../../../src/nat/mapping-table.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../../../src/packet/ipv4.ts";
import { ACK, FIN, icmpError, ip, RST, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";
import { Conn } from "./tcp-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
const D = "192.168.0.4";
const OTHER = "203.0.113.20";
/** Four ports: the default share is all of them. */
const TINY = { first: 61000, last: 61003 };
const tinyRange = { ports: { tcp: TINY, udp: TINY, icmp: TINY } };

function held(e: NatEngine, host: string, proto = IPPROTO_TCP): number {
  return e.portQuota.held(e.hostTable.find(ip(host)), proto);
}

/** An established connection (client ISN 1000, server ISN 9000); undefined outPort when refused. */
function connect(e: NatEngine, host: string, sport: number, remote = REMOTE, dport = 80, nowMs = 1000) {
  const c = new Conn(e, host, sport, remote, dport);
  c.nowMs = nowMs;
  const syn = c.out({ flags: SYN, seq: 1000 });
  if (syn.verdict !== FORWARD) return { c, syn };
  c.in({ flags: SYN | ACK, seq: 9000, ack: 1001 });
  c.out({ flags: ACK, seq: 1001, ack: 9001 });
  assert.equal(c.state(), "established");
  return { c, syn };
}

/** The server closes first (HTTP/1.0): FIN, the client's FIN, the server's ACK of it. */
function close(c: Conn): void {
  c.in({ flags: FIN | ACK, seq: 9001, ack: 1001 });
  c.out({ flags: FIN | ACK, seq: 1001, ack: 9002 });
  c.in({ flags: ACK, seq: 9002, ack: 1002 });
  assert.equal(c.state(), "time-wait");
}

function finished(e: NatEngine, host: string, sport: number, remote = REMOTE, dport = 80, nowMs = 1000) {
  const { c } = connect(e, host, sport, remote, dport, nowMs);
  close(c);
  return c;
}

describe("a new TCP connection takes a finished mapping's port when no other is to be had", () => {
  it("a host at its share takes its own oldest finished mapping's port; its share and the mapping count stay", () => {
    const e = makeEngine({ maxPortsPerHost: 2 });
    const c1 = finished(e, A, 40000, REMOTE, 80, 1000);
    const c2 = finished(e, A, 40001, REMOTE, 80, 2000);
    assert.equal(e.closedMappings.count, 2);
    const { c: c3, syn } = connect(e, A, 40002, REMOTE, 80, 3000);
    assert.equal(syn.verdict, FORWARD);
    assert.equal(c3.outPort, c1.outPort, "the oldest, though it went to the same server");
    assert.equal(e.counters[C.C_TCP_PORTS_REUSED], 1);
    assert.equal(e.stats().counters.tcp_ports_reused, 1);
    assert.equal(held(e, A), 2, "one of its own traded for another: the share is kept");
    assert.equal(e.stats().mappings, 2);
    assert.equal(c1.state(), undefined, "the finished connection's flow went with its mapping");
    assert.equal(c2.state(), "time-wait", "the younger one keeps its 4 minutes");
    assert.equal(e.closedMappings.count, 1);
  });

  it("with ports to spare a finished mapping keeps its port its 4 minutes", () => {
    const e = makeEngine({ maxPortsPerHost: 2 });
    const c1 = finished(e, A, 40000);
    const { c: c2 } = connect(e, A, 40001);
    assert.notEqual(c2.outPort, c1.outPort);
    assert.equal(c1.state(), "time-wait");
    assert.equal(e.counters[C.C_TCP_PORTS_REUSED], 0);
  });

  it("only finished connections: half-closed, a last FIN unacknowledged or established keep their ports", () => {
    const e = makeEngine({ maxPortsPerHost: 3 });
    connect(e, A, 40000);
    const half = connect(e, A, 40001).c;
    half.in({ flags: FIN | ACK, seq: 9001, ack: 1001 });
    half.out({ flags: ACK, seq: 1001, ack: 9002 });
    assert.equal(half.state(), "fin-wait");
    const unacked = connect(e, A, 40002).c;
    unacked.in({ flags: FIN | ACK, seq: 9001, ack: 1001 });
    unacked.out({ flags: FIN | ACK, seq: 1001, ack: 9002 });
    assert.equal(unacked.state(), "time-wait", "both FINs seen, the client's not acknowledged");
    assert.equal(e.closedMappings.count, 0);
    assert.equal(run(e, tcp({ src: A, dst: REMOTE, sport: 40003, dport: 80, flags: SYN })).verdict, REPLY);
    assert.equal(e.lastDrop, C.D_HOST_PORT_QUOTA);
    // The last ACK finishes it: now its port may go.
    unacked.in({ flags: ACK, seq: 9002, ack: 1002 });
    assert.equal(e.closedMappings.count, 1);
    const next = new Conn(e, A, 40003, REMOTE, 80);
    assert.equal(next.out({ flags: SYN, seq: 1000 }).verdict, FORWARD);
    assert.equal(next.outPort, unacked.outPort);
  });

  it("a connection closed by a reset the tracker believes is finished; a refused one too", () => {
    const e = makeEngine({ maxPortsPerHost: 2 });
    const reset = connect(e, A, 40000).c;
    assert.equal(reset.in({ flags: RST, seq: 7 }).verdict, DROP, "a blind reset changes nothing");
    assert.equal(e.closedMappings.count, 0);
    reset.in({ flags: RST, seq: 9001 });
    assert.equal(reset.state(), "closed");
    const refused = new Conn(e, A, 40001, REMOTE, 81);
    refused.out({ flags: SYN, seq: 1000 });
    refused.in({ flags: RST | ACK, seq: 0, ack: 1001 });
    assert.equal(refused.state(), "closed");
    assert.equal(e.closedMappings.count, 2);
    const ports = new Set<number>();
    for (const sport of [40002, 40003]) {
      const c = new Conn(e, A, sport, REMOTE, 80);
      assert.equal(c.out({ flags: SYN, seq: 1000 }).verdict, FORWARD);
      ports.add(c.outPort);
    }
    assert.deepEqual(ports, new Set([reset.outPort, refused.outPort]));
  });

  it("among the oldest, one whose connections went to another remote endpoint goes first", () => {
    const e = makeEngine({ maxPortsPerHost: 3 });
    const toRemote = finished(e, A, 40000, REMOTE, 80, 1000);
    const toOther = finished(e, A, 40001, OTHER, 80, 2000);
    const toRemote443 = finished(e, A, 40002, REMOTE, 443, 3000);
    const c = new Conn(e, A, 40003, REMOTE, 80);
    c.nowMs = 4000;
    c.out({ flags: SYN, seq: 1000 });
    assert.equal(c.outPort, toOther.outPort, "not the oldest: that one's server may hold it in TIME-WAIT");
    const d = new Conn(e, A, 40004, REMOTE, 80);
    d.out({ flags: SYN, seq: 1000 });
    assert.equal(d.outPort, toRemote443.outPort, "another port of the same server is another endpoint");
    assert.equal(toRemote.state(), "time-wait");
  });

  it("another host takes one only towards another remote endpoint, and only below its own share", () => {
    const e = makeEngine({ ...tinyRange, maxPortsPerHost: 2 });
    const a1 = finished(e, A, 40000, REMOTE, 80, 1000);
    finished(e, A, 40001, REMOTE, 80, 2000);
    connect(e, B, 41000);
    connect(e, B, 41001);
    // The range is used up. B holds its share (live connections): never A's port.
    assert.equal(run(e, tcp({ src: B, dst: OTHER, sport: 40002, dport: 80, flags: SYN })).verdict, REPLY);
    assert.equal(e.lastDrop, C.D_PORTS_EXHAUSTED);
    assert.equal(held(e, B), 2);
    // D holds nothing: not towards the server A's connections went to ...
    assert.equal(run(e, tcp({ src: D, dst: REMOTE, sport: 40000, dport: 80, flags: SYN })).verdict, REPLY);
    assert.equal(e.lastDrop, C.D_PORTS_EXHAUSTED);
    // ... but towards another: the outside 5-tuple is new to everyone (RFC 7857 §3).
    const d = new Conn(e, D, 40000, REMOTE, 443);
    assert.equal(d.out({ flags: SYN, seq: 1000 }).verdict, FORWARD);
    assert.equal(d.outPort, a1.outPort, "A's oldest");
    assert.deepEqual([held(e, A), held(e, B), held(e, D)], [1, 2, 1]);
  });

  it("a full mapping table is made room in the same way", () => {
    const e = makeEngine({ maxFlows: 16, maxMappings: 2 });
    const a = finished(e, A, 40000, REMOTE, 80);
    connect(e, B, 41000);
    assert.equal(run(e, tcp({ src: D, dst: REMOTE, sport: 40000, dport: 80, flags: SYN })).verdict, REPLY);
    assert.equal(e.lastDrop, C.D_MAPPING_TABLE_FULL);
    const d = new Conn(e, D, 40001, OTHER, 80);
    assert.equal(d.out({ flags: SYN, seq: 1000 }).verdict, FORWARD);
    assert.equal(d.outPort, a.outPort);
    assert.equal(e.stats().mappings, 2);
  });

  it("UDP and ICMP mappings never finish: a host at its UDP share is refused", () => {
    const e = makeEngine({ maxPortsPerHost: 1 });
    run(e, udp({ src: A, dst: REMOTE, sport: 1000, dport: 53 }), 1000);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1001, dport: 53 }), 200_000).verdict, REPLY);
    assert.equal(e.lastDrop, C.D_HOST_PORT_QUOTA);
    assert.equal(held(e, A, IPPROTO_UDP), 1);
  });

  it("a pinned mapping is in use whatever its connections; unpinned, its finished port may go", () => {
    const e = makeEngine({ maxPortsPerHost: 1 });
    e.tick(1000);
    const pin = e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 40000, origin: "pcp" });
    assert.ok("id" in pin);
    const c = finished(e, A, 40000);
    assert.equal(c.outPort, pin.outPort);
    assert.equal(e.closedMappings.count, 0);
    assert.equal(run(e, tcp({ src: A, dst: REMOTE, sport: 40001, dport: 80, flags: SYN })).verdict, REPLY);
    e.unpin(pin.id);
    assert.equal(e.closedMappings.count, 1);
    const next = new Conn(e, A, 40001, OTHER, 80);
    assert.equal(next.out({ flags: SYN, seq: 1000 }).verdict, FORWARD);
    assert.equal(next.outPort, pin.outPort);
  });

  it("a finished connection opened again on its 4-tuple is in use: its mapping is not taken", () => {
    const e = makeEngine({ maxPortsPerHost: 1 });
    const c = finished(e, A, 40000);
    assert.equal(e.closedMappings.count, 1);
    assert.equal(c.out({ flags: SYN, seq: 50_000 }).verdict, FORWARD);
    assert.equal(c.state(), "syn-sent");
    assert.equal(e.closedMappings.count, 0);
    assert.equal(run(e, tcp({ src: A, dst: OTHER, sport: 40001, dport: 80, flags: SYN })).verdict, REPLY);
    assert.equal(e.lastDrop, C.D_HOST_PORT_QUOTA);
  });

  it("live mappings stay endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1)", () => {
    const e = makeEngine({ maxPortsPerHost: 2 });
    const live = connect(e, A, 40000).c;
    const old = finished(e, A, 40001);
    const c = new Conn(e, A, 40002, REMOTE, 80);
    c.out({ flags: SYN, seq: 1000 });
    assert.equal(c.outPort, old.outPort);
    const sameEndpoint = new Conn(e, A, 40000, OTHER, 443);
    assert.equal(sameEndpoint.out({ flags: SYN, seq: 1000 }).verdict, FORWARD);
    assert.equal(sameEndpoint.outPort, live.outPort, "the live endpoint's mapping, for a new remote too");
    assert.equal(live.state(), "established");
  });
});

describe("late segments of the old connection after its port went to a new one", () => {
  it("from the old remote to a new connection elsewhere: filtered, not delivered; its ICMP errors find no flow", () => {
    const e = makeEngine({ maxPortsPerHost: 1 });
    const old = finished(e, A, 40000, REMOTE, 80);
    const { c } = connect(e, A, 40001, OTHER, 443);
    assert.equal(c.outPort, old.outPort);
    const fin = run(
      e,
      tcp({ src: REMOTE, dst: P, sport: 80, dport: old.outPort, flags: FIN | ACK, seq: 9001 }),
    );
    assert.equal(fin.verdict, DROP);
    assert.equal(e.lastDrop, C.D_FILTERED, "the new mapping has no flow to the old remote");
    const err = icmpError({
      from: "198.51.100.1",
      to: P,
      type: 3,
      code: 4,
      mtu: 1400,
      quoted: tcp({ src: P, dst: REMOTE, sport: old.outPort, dport: 80, flags: ACK, seq: 1001 }),
    });
    assert.equal(run(e, err).verdict, DROP);
    assert.equal(e.lastDrop, C.D_ICMP_ERROR_NO_FLOW);
    assert.equal(c.out({ flags: ACK, seq: 1001, ack: 9001, payload: 10 }).verdict, FORWARD);
  });

  it("with endpoint-independent filtering, a late segment without SYN still opens nothing", () => {
    const e = makeEngine({ maxPortsPerHost: 1, filtering: "endpoint-independent" });
    const old = finished(e, A, 40000, REMOTE, 80);
    connect(e, A, 40001, OTHER, 443);
    const ack = run(
      e,
      tcp({ src: REMOTE, dst: P, sport: 80, dport: old.outPort, flags: ACK, seq: 9002, ack: 1002 }),
    );
    assert.equal(ack.verdict, DROP);
    assert.equal(e.lastDrop, C.D_TCP_NO_FLOW);
  });

  it("the same server's TIME-WAIT answers the SYN with the old ACK: the host's reset of it goes through, then the SYN opens", () => {
    // What a server does when it refuses a SYN on a 4-tuple it holds in TIME-WAIT (a client
    // without timestamps): Linux's tcp_timewait_state_process answers with the old connection's
    // ACK; the client (RFC 9293 §3.10.7.3) resets it at that ACK's number, which ends the TIME-WAIT.
    const e = makeEngine({ maxPortsPerHost: 1 });
    const old = finished(e, A, 40000, REMOTE, 80);
    const c = new Conn(e, A, 40001, REMOTE, 80);
    c.out({ flags: SYN, seq: 70_000 });
    assert.equal(c.outPort, old.outPort);
    const twAck = c.in({ flags: ACK, seq: 9002, ack: 1002 });
    assert.equal(twAck.verdict, FORWARD, "delivered to the new connection's host, which answers it");
    assert.deepEqual([u32(twAck.out, 16), u16(twAck.out, 22)], [ip(A), 40001]);
    assert.equal(c.out({ flags: RST, seq: 1002 }).verdict, FORWARD, "the answer, not a blind reset");
    assert.equal(c.state(), "syn-sent", "for the server's old connection: this one goes on");
    assert.equal(c.out({ flags: RST, seq: 1003 }).verdict, DROP, "any other number is still blind");
    assert.equal(e.lastDrop, C.D_TCP_RST_OUT_OF_WINDOW);
    c.out({ flags: SYN, seq: 70_000 });
    c.in({ flags: SYN | ACK, seq: 300_000, ack: 70_001 });
    c.out({ flags: ACK, seq: 70_001, ack: 300_001 });
    assert.equal(c.state(), "established");
    assert.equal(c.out({ flags: RST, seq: 1002 }).verdict, DROP, "once established, the old number is blind");
  });
});

describe("FifoLists", () => {
  it("keeps each list in insertion order through removals anywhere", () => {
    const l = new FifoLists(8, 2);
    const order = (list: number) => {
      const out: number[] = [];
      for (let i = l.oldest(list); i >= 0; i = l.after(i)) out.push(i);
      return out;
    };
    for (const i of [3, 1, 4, 5]) l.push(0, i);
    l.push(1, 2);
    assert.deepEqual([order(0), order(1)], [[3, 1, 4, 5], [2]]);
    l.remove(1);
    l.remove(5);
    l.remove(1);
    assert.deepEqual(order(0), [3, 4]);
    l.remove(3);
    l.remove(4);
    assert.deepEqual([order(0), l.has(3), l.oldest(0)], [[], false, -1]);
    l.push(0, 5);
    assert.deepEqual(order(0), [5]);
  });
});

// ---- a model of many short and long connections on a tiny range ----

type Status = "open" | "half" | "finished";
interface ModelConn {
  host: string;
  sport: number;
  remote: [string, number];
  outPort: number;
  status: Status;
  lastMs: number;
  cNxt: number;
  sNxt: number;
}

type Act =
  | { k: "open"; h: number; sp: number; r: number }
  | { k: "data" | "full" | "half" | "reset"; i: number }
  | { k: "wait"; ms: number };

const HOSTS = [A, B, D];
const REMOTES: [string, number][] = [
  [REMOTE, 80],
  [REMOTE, 443],
  [OTHER, 80],
];
const SHARE = 3;

const act: fc.Arbitrary<Act> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant("open" as const), h: fc.nat(2), sp: fc.nat(5), r: fc.nat(2) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constantFrom("data" as const, "full" as const, "half" as const, "reset" as const),
      i: fc.nat(40),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("wait" as const), ms: fc.integer({ min: 1000, max: 300_000 }) }),
  },
);

/** The engine's flow for a model connection, if it has one. */
function flowOf(e: NatEngine, c: ModelConn) {
  return e
    .flows()
    .find(
      (f) =>
        f.protocol === "tcp" &&
        f.inside.addr === c.host &&
        f.inside.port === c.sport &&
        f.remote.addr === c.remote[0] &&
        f.remote.port === c.remote[1],
    );
}

function modelRun(acts: Act[]): void {
  const e = makeEngine({
    ports: { tcp: { first: 61000, last: 61007 }, udp: TINY, icmp: TINY },
    maxPortsPerHost: SHARE,
  });
  let now = 1000;
  let conns: ModelConn[] = [];
  let isn = 1000;
  const send = (c: ModelConn, fromInside: boolean, flags: number, seq: number, ack: number, payload = 0) => {
    c.lastMs = now;
    const pkt = fromInside
      ? tcp({ src: c.host, dst: c.remote[0], sport: c.sport, dport: c.remote[1], flags, seq, ack, payload })
      : tcp({ src: c.remote[0], dst: P, sport: c.remote[1], dport: c.outPort, flags, seq, ack, payload });
    return run(e, pkt, now);
  };
  /** Endpoints (host:sport) and what they hold: the model's view of the mappings. */
  const endpointConns = (host: string, sport: number) =>
    conns.filter((c) => c.host === host && c.sport === sport);
  for (const a of acts) {
    if (a.k === "wait") {
      now += a.ms;
      e.tick(now);
    } else if (a.k === "open") {
      const host = HOSTS[a.h];
      const sport = 40000 + a.sp;
      const remote = REMOTES[a.r];
      const same = conns.find((c) => c.host === host && c.sport === sport && c.remote === remote);
      if (same && same.status !== "finished") continue;
      // Before: who holds which port, and whether a finished one could be had.
      const holders = new Map(conns.map((c) => [c.outPort, c]));
      const sharesEndpoint = conns.some((c) => c.host === host && c.sport === sport);
      const belowShare = held(e, host) < SHARE;
      const c: ModelConn = {
        host,
        sport,
        remote,
        outPort: 0,
        status: "open",
        lastMs: now,
        cNxt: isn + 1,
        sNxt: 0,
      };
      isn += 100_000;
      const syn = run(
        e,
        tcp({ src: host, dst: remote[0], sport, dport: remote[1], flags: SYN, seq: c.cNxt - 1 }),
        now,
      );
      if (syn.verdict !== FORWARD) {
        assert.ok(!sharesEndpoint, "an endpoint with a mapping needs no new one");
        assert.ok([C.D_HOST_PORT_QUOTA, C.D_PORTS_EXHAUSTED].includes(e.lastDrop), `reason ${e.lastDrop}`);
        // Refused only when no finished mapping may be taken (the lists are shorter than the
        // candidates looked at, so every one is seen).
        const allFinished = (t: ModelConn) =>
          endpointConns(t.host, t.sport).every((u) => u.status === "finished");
        assert.ok(!conns.some((t) => t.host === host && allFinished(t)), "the host's own finished one");
        if (belowShare)
          assert.ok(
            !conns.some(
              (t) => allFinished(t) && endpointConns(t.host, t.sport).every((u) => u.remote !== remote),
            ),
            "another host's finished one towards elsewhere",
          );
        continue;
      }
      c.outPort = u16(syn.out, 20);
      const before = holders.get(c.outPort);
      if (before && !(before.host === host && before.sport === sport)) {
        // The port was another endpoint's: every connection of that endpoint had finished, and
        // another host's never went to this remote endpoint.
        const theirs = endpointConns(before.host, before.sport);
        assert.ok(
          theirs.every((t) => t.status === "finished"),
          "only a finished mapping's port is taken",
        );
        if (before.host !== host)
          assert.ok(
            theirs.every((t) => t.remote !== remote),
            "another host: elsewhere only",
          );
        conns = conns.filter((t) => !(t.host === before.host && t.sport === before.sport));
      }
      if (same) conns = conns.filter((t) => t !== same);
      conns.push(c);
      c.sNxt = isn + 1;
      isn += 100_000;
      send(c, false, SYN | ACK, c.sNxt - 1, c.cNxt);
      send(c, true, ACK, c.cNxt, c.sNxt);
    } else if (conns.length > 0) {
      const c = conns[a.i % conns.length];
      if (c.status === "finished") continue;
      if (a.k === "data") {
        assert.equal(send(c, true, ACK, c.cNxt, c.sNxt, 10).verdict, FORWARD);
        c.cNxt += 10;
        assert.equal(send(c, false, ACK, c.sNxt, c.cNxt).verdict, FORWARD);
      } else if (a.k === "reset") {
        send(c, false, RST, c.sNxt, 0);
        c.status = "finished";
      } else if (c.status === "open") {
        send(c, false, FIN | ACK, c.sNxt, c.cNxt);
        c.sNxt += 1;
        send(c, true, ACK, c.cNxt, c.sNxt);
        c.status = "half";
      }
      if (a.k === "full" && c.status === "half") {
        send(c, true, FIN | ACK, c.cNxt, c.sNxt);
        c.cNxt += 1;
        send(c, false, ACK, c.sNxt, c.cNxt);
        c.status = "finished";
      }
    }
    // Connections the engine let go: finished ones (taken or expired), or idle past their timeout.
    conns = conns.filter((c) => {
      const f = flowOf(e, c);
      if (f) {
        assert.equal(f.outside.port, c.outPort, "a connection keeps its outside port");
        return true;
      }
      // The engine counts whole seconds: a flow may go up to a second before 240 s of milliseconds.
      assert.ok(c.status === "finished" || now - c.lastMs >= 239_000, "a live connection is never taken");
      return false;
    });
    for (const h of HOSTS) assert.ok(held(e, h) <= SHARE, "no host beyond its share");
    // The engine's list of finished mappings is exactly the endpoints whose connections all finished.
    for (let m = 0; m < e.mappingTable.capacity; m++) {
      if (!e.closedMappings.has(m)) continue;
      const mine = conns.filter(
        (c) => c.outPort === (e.mappingTable.u32[m * MAPPING_WORDS + M_PORTS] & 0xffff),
      );
      assert.ok(
        mine.length > 0 && mine.every((c) => c.status === "finished"),
        "listed only when all finished",
      );
    }
    const finishedEndpoints = new Set(
      conns
        .filter((c) => endpointConns(c.host, c.sport).every((t) => t.status === "finished"))
        .map((c) => `${c.host}:${c.sport}`),
    );
    assert.equal(e.closedMappings.count, finishedEndpoints.size);
  }
  e.tick(now + 10_000_000);
  assert.equal(e.closedMappings.count, 0);
  assert.equal(e.mappingTable.count, 0);
}

describe("property: many connections on a tiny range", () => {
  it("a live connection keeps its port; only finished mappings change hands, by the rules; no host passes its share", () => {
    assertProperty(fc.property(fc.array(act, { minLength: 30, maxLength: 120, size: "max" }), modelRun), 200);
  });
});
