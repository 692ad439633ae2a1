import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  C_DROPPED,
  C_HAIRPINNED,
  D_FILTERED,
  D_FLOW_TABLE_FULL,
  D_HOST_FLOW_LIMIT,
  D_NO_MAPPING,
  D_PORTS_EXHAUSTED,
  D_TCP_NO_FLOW,
} from "../../../src/nat/counters.ts";
import { DROP, FORWARD, REPLY } from "../../../src/nat/engine.ts";
import { checksum } from "../../../src/packet/checksum.ts";
import {
  ACK,
  checksumProblems,
  FIN,
  icmpEcho,
  ip,
  RST,
  SYN,
  tcp,
  u16,
  u32,
  udp,
} from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";

function src(b: Uint8Array) {
  return { addr: u32(b, 12), port: u16(b, 20) };
}

describe("outbound translation", () => {
  it("rewrites the source of a UDP datagram to the outside address and a port in range; checksums stay right", () => {
    const e = makeEngine();
    const { verdict, out } = run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53, ttl: 63 }));
    assert.equal(verdict, FORWARD);
    assert.equal(u32(out, 12), ip(P));
    assert.equal(u32(out, 16), ip(REMOTE));
    const port = u16(out, 20);
    assert.equal(port, 40000, "pool mode owns every port: the inside port is kept (RFC 4787 REQ-1)");
    assert.equal(u16(out, 22), 53);
    assert.deepEqual(checksumProblems(out), []);
    assert.equal(out[8], 64, "TTL compensated for the kernel's second decrement");
  });

  it("RFC 4787 REQ-1 / RFC 5382 REQ-1: endpoint-independent mapping, same outside port for every remote", () => {
    const e = makeEngine();
    const a = run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 })).out;
    const b = run(e, udp({ src: A, dst: "203.0.113.99", sport: 40000, dport: 9999 })).out;
    assert.deepEqual(src(a), src(b));
    const t1 = run(e, tcp({ src: A, dst: REMOTE, sport: 40001, dport: 80, flags: SYN })).out;
    const t2 = run(e, tcp({ src: A, dst: "203.0.113.99", sport: 40001, dport: 443, flags: SYN })).out;
    assert.deepEqual(src(t1), src(t2));
    assert.equal(e.stats().mappings, 2);
    assert.equal(e.stats().flows, 4);
  });

  it("preserves the inside port when it is in range and free, and allocates another when taken", () => {
    const e = makeEngine();
    const a = run(e, udp({ src: A, dst: REMOTE, sport: 62000, dport: 53 })).out;
    assert.equal(u16(a, 20), 62000);
    const b = run(e, udp({ src: B, dst: REMOTE, sport: 62000, dport: 53 })).out;
    assert.notEqual(u16(b, 20), 62000);
    assert.equal(e.counters[14], 1, "ports_preserved counted once");
  });

  it("RFC 4787 REQ-2: paired pooling, one outside address per inside host", () => {
    const pool = ["198.51.100.100", "198.51.100.101", "198.51.100.102", "198.51.100.103"].map(ip);
    const e = makeEngine({ outside: pool, mode: "pool" });
    for (let h = 2; h < 30; h++) {
      const host = `192.168.0.${h}`;
      const addrs = new Set<number>();
      for (let p = 0; p < 5; p++) {
        const { out } = run(e, udp({ src: host, dst: REMOTE, sport: 30000 + p, dport: 1000 + p }));
        addrs.add(u32(out, 12));
        run(e, tcp({ src: host, dst: REMOTE, sport: 30000 + p, dport: 80, flags: SYN }));
      }
      assert.equal(addrs.size, 1, `host ${host} used ${addrs.size} addresses`);
    }
  });

  it("drops AH (its check covers the addresses, RFC 3715 §2.1) and protocol 0 with a reason", () => {
    const e = makeEngine();
    for (const proto of [51, 0]) {
      const pkt = udp({ src: A, dst: REMOTE, sport: 1, dport: 2 });
      pkt[9] = proto;
      pkt[10] = 0;
      pkt[11] = 0;
      const ck = checksum(pkt, 0, 20);
      pkt.set([ck >> 8, ck & 0xff], 10);
      assert.equal(run(e, pkt).verdict, DROP);
    }
    assert.equal(e.stats().counters.drop_unsupported_protocol, 2);
  });

  it("drops a mid-stream TCP segment that has no flow (no SYN) and counts it", () => {
    const e = makeEngine();
    assert.equal(run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 80, flags: ACK })).verdict, DROP);
    assert.equal(e.lastDrop, D_TCP_NO_FLOW);
  });

  it("leaves traffic between inside hosts alone", () => {
    const e = makeEngine();
    const pkt = udp({ src: A, dst: B, sport: 1000, dport: 2000 });
    const { verdict, out } = run(e, pkt);
    assert.equal(verdict, FORWARD);
    assert.equal(u32(out, 12), ip(A));
    assert.equal(e.stats().flows, 0);
  });
});

describe("inbound translation and filtering", () => {
  it("translates a reply back to the inside host, the exact reverse of the outbound rewrite", () => {
    const e = makeEngine();
    const out = run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 })).out;
    const port = u16(out, 20);
    const reply = udp({ src: REMOTE, dst: P, sport: 53, dport: port, ttl: 50, payload: 100 });
    const { verdict, out: back } = run(e, reply);
    assert.equal(verdict, FORWARD);
    assert.equal(u32(back, 16), ip(A));
    assert.equal(u16(back, 22), 40000);
    assert.deepEqual(checksumProblems(back), []);
    const expected = udp({ src: REMOTE, dst: A, sport: 53, dport: 40000, ttl: 51, payload: 100 });
    assert.deepEqual(back, expected);
  });

  it("drops and counts unsolicited inbound TCP and UDP (no mapping)", () => {
    const e = makeEngine();
    assert.equal(run(e, udp({ src: REMOTE, dst: P, sport: 53, dport: 61500 })).verdict, DROP);
    assert.equal(e.lastDrop, D_NO_MAPPING);
    assert.equal(run(e, tcp({ src: REMOTE, dst: P, sport: 5555, dport: 61500, flags: SYN })).verdict, DROP);
    assert.equal(e.stats().counters.drop_no_mapping, 2);
  });

  for (const [mode, sameAddrOtherPort, otherAddr] of [
    ["endpoint-independent", FORWARD, FORWARD],
    ["address-dependent", FORWARD, DROP],
    ["address-port-dependent", DROP, DROP],
  ] as const) {
    it(`RFC 4787 REQ-8: ${mode} filtering`, () => {
      const e = makeEngine({ filtering: mode });
      const port = u16(run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 3478 })).out, 20);
      assert.equal(run(e, udp({ src: REMOTE, dst: P, sport: 3479, dport: port })).verdict, sameAddrOtherPort);
      assert.equal(run(e, udp({ src: "203.0.113.77", dst: P, sport: 3478, dport: port })).verdict, otherAddr);
      if (otherAddr === DROP) assert.equal(e.lastDrop, D_FILTERED);
      // The admitted endpoint reaches the right inside host.
      if (otherAddr === FORWARD) {
        const r = run(e, udp({ src: "203.0.113.77", dst: P, sport: 3478, dport: port })).out;
        assert.equal(u32(r, 16), ip(A));
        assert.equal(u16(r, 22), 40000);
      }
    });
  }
});

describe("ICMP", () => {
  it("maps echo identifiers like ports: two hosts pinging the same target with the same id", () => {
    const e = makeEngine();
    const a = run(e, icmpEcho({ src: A, dst: REMOTE, id: 7 })).out;
    const b = run(e, icmpEcho({ src: B, dst: REMOTE, id: 7 })).out;
    const ida = u16(a, 24);
    const idb = u16(b, 24);
    assert.notEqual(ida, idb);
    assert.deepEqual(checksumProblems(a), []);
    assert.deepEqual(checksumProblems(b), []);
    const ra = run(e, icmpEcho({ src: REMOTE, dst: P, id: ida, type: 0 })).out;
    const rb = run(e, icmpEcho({ src: REMOTE, dst: P, id: idb, type: 0 })).out;
    assert.equal(u32(ra, 16), ip(A));
    assert.equal(u32(rb, 16), ip(B));
    assert.equal(u16(ra, 24), 7);
    assert.equal(u16(rb, 24), 7);
    assert.deepEqual(checksumProblems(ra), []);
  });

  it("answers pings to a pool address itself, and passes them to the gateway in interface mode", () => {
    const pool = makeEngine({ mode: "pool" });
    const r = run(pool, icmpEcho({ src: REMOTE, dst: P, id: 1 }));
    assert.equal(r.verdict, REPLY);
    assert.equal(r.out[20], 0);
    assert.equal(u32(r.out, 12), ip(P));
    assert.equal(u32(r.out, 16), ip(REMOTE));
    assert.deepEqual(checksumProblems(r.out), []);
    const iface = makeEngine({ mode: "interface" });
    const p = run(iface, icmpEcho({ src: REMOTE, dst: P, id: 1 }));
    assert.equal(p.verdict, FORWARD);
    assert.equal(u32(p.out, 16), ip(P));
  });
});

describe("hairpinning", () => {
  it("RFC 4787 REQ-9: UDP from one inside host to another's outside mapping, both ways", () => {
    const e = makeEngine({ filtering: "endpoint-independent" });
    const bOut = run(e, udp({ src: B, dst: REMOTE, sport: 5000, dport: 3478 })).out;
    const bPort = u16(bOut, 20);
    const { verdict, out } = run(e, udp({ src: A, dst: P, sport: 6000, dport: bPort, payload: 33 }));
    assert.equal(verdict, FORWARD);
    // B sees A as the outside address and A's outside port.
    assert.equal(u32(out, 12), ip(P));
    const aPort = u16(out, 20);
    assert.equal(u32(out, 16), ip(B));
    assert.equal(u16(out, 22), 5000);
    assert.deepEqual(checksumProblems(out), []);
    // B answers to what it saw; A gets it from B's outside endpoint.
    const back = run(e, udp({ src: B, dst: P, sport: 5000, dport: aPort })).out;
    assert.equal(u32(back, 12), ip(P));
    assert.equal(u16(back, 20), bPort);
    assert.equal(u32(back, 16), ip(A));
    assert.equal(u16(back, 22), 6000);
    assert.equal(e.counters[C_HAIRPINNED], 2);
  });

  it("RFC 5382 REQ-8: TCP hairpin handshake", () => {
    const e = makeEngine({ filtering: "endpoint-independent" });
    const bPort = u16(run(e, tcp({ src: B, dst: REMOTE, sport: 8080, dport: 80, flags: SYN })).out, 20);
    const syn = run(e, tcp({ src: A, dst: P, sport: 7000, dport: bPort, flags: SYN }));
    assert.equal(syn.verdict, FORWARD);
    assert.equal(u32(syn.out, 16), ip(B));
    assert.equal(u16(syn.out, 22), 8080);
    const aPort = u16(syn.out, 20);
    const synack = run(e, tcp({ src: B, dst: P, sport: 8080, dport: aPort, flags: SYN | ACK }));
    assert.equal(u32(synack.out, 16), ip(A));
    assert.equal(u16(synack.out, 22), 7000);
    assert.deepEqual(checksumProblems(synack.out), []);
    const conns = e.flows().filter((f) => f.origin === "hairpin");
    assert.ok(conns.length >= 2);
  });
});

describe("TCP tracking and limits", () => {
  it("tracks SYN, SYN-ACK, the ACK of the SYN-ACK, FIN both ways to time-wait", () => {
    const e = makeEngine();
    const out = (flags: number, seq: number, ack = 0) =>
      run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 80, flags, seq, ack }));
    const port = u16(out(SYN, 1000).out, 20);
    const back = (flags: number, seq: number, ack: number) =>
      run(e, tcp({ src: REMOTE, dst: P, sport: 80, dport: port, flags, seq, ack }));
    assert.equal(e.flows()[0].state, "syn-sent");
    back(SYN | ACK, 5000, 1001);
    assert.equal(e.flows()[0].state, "syn-received", "not established before the third packet");
    out(ACK, 1001, 5001);
    assert.equal(e.flows()[0].state, "established");
    out(FIN | ACK, 1001, 5001);
    assert.equal(e.flows()[0].state, "fin-wait");
    back(FIN | ACK, 5001, 1002);
    assert.equal(e.flows()[0].state, "time-wait");
  });

  it("RFC 5382 REQ-2: simultaneous open (SYN out, SYN in) is admitted, established once both SYNs are acknowledged", () => {
    const e = makeEngine({ filtering: "address-port-dependent" });
    const out = (flags: number, ack = 0) =>
      run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 5000, flags, seq: 1000, ack }));
    const port = u16(out(SYN).out, 20);
    const back = (flags: number, ack = 0) =>
      run(e, tcp({ src: REMOTE, dst: P, sport: 5000, dport: port, flags, seq: 7000, ack }));
    const r = back(SYN);
    assert.equal(r.verdict, FORWARD);
    assert.equal(u32(r.out, 16), ip(A));
    assert.equal(e.flows()[0].state, "syn-received");
    // Each side answers the other's SYN with a SYN-ACK (RFC 9293 figure 7).
    out(SYN | ACK, 7001);
    assert.equal(e.flows()[0].state, "syn-received");
    back(SYN | ACK, 1001);
    assert.equal(e.flows()[0].state, "established");
  });

  it("an RST closes the connection; it is gone 4 minutes later (RFC 7857 §2.2) and its port is free", () => {
    const e = makeEngine();
    const port = u16(run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 80, flags: SYN }), 1000).out, 20);
    // A refused connection: the reset acknowledges the SYN (RFC 9293 §3.10.7.3).
    run(e, tcp({ src: REMOTE, dst: P, sport: 80, dport: port, flags: RST | ACK, seq: 0, ack: 1001 }), 2000);
    assert.equal(e.flows()[0].state, "closed");
    e.tick(2000 + 239_000);
    assert.equal(e.stats().flows, 1, "a late segment still finds the state");
    e.tick(2000 + 241_000);
    assert.equal(e.stats().flows, 0);
    assert.equal(e.stats().mappings, 0);
  });

  it("RFC 6888 REQ-4: a host at its flow limit is refused while another host keeps working", () => {
    const e = makeEngine({ maxFlowsPerHost: 10 });
    for (let i = 0; i < 10; i++)
      assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1000 + i, dport: 53 })).verdict, FORWARD);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 2000, dport: 53 })).verdict, DROP);
    assert.equal(e.lastDrop, D_HOST_FLOW_LIMIT);
    assert.equal(run(e, udp({ src: B, dst: REMOTE, sport: 2000, dport: 53 })).verdict, FORWARD);
    // Existing flows of the limited host still translate.
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1003, dport: 53 })).verdict, FORWARD);
  });

  it("a full flow table refuses new flows and counts them; existing flows keep working", () => {
    const e = makeEngine({ maxFlows: 16, maxMappings: 16 });
    for (let i = 0; i < 16; i++) run(e, udp({ src: A, dst: REMOTE, sport: 1000 + i, dport: 53 }));
    assert.equal(run(e, udp({ src: B, dst: REMOTE, sport: 1, dport: 53 })).verdict, DROP);
    assert.equal(e.lastDrop, D_FLOW_TABLE_FULL);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1005, dport: 53 })).verdict, FORWARD);
    assert.equal(e.counters[C_DROPPED], 1);
  });

  it("an exhausted port range refuses new mappings with a reason, and tells the host (RFC 6888 REQ-11)", () => {
    const e = makeEngine({
      ports: {
        tcp: { first: 61000, last: 61003 },
        udp: { first: 61000, last: 61003 },
        icmp: { first: 61000, last: 61003 },
      },
    });
    for (let i = 0; i < 4; i++)
      assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1000 + i, dport: 53 })).verdict, FORWARD);
    const refused = udp({ src: A, dst: REMOTE, sport: 2000, dport: 53 });
    const { verdict, out } = run(e, refused);
    assert.equal(verdict, REPLY, "answered, not silently dropped");
    assert.equal(e.lastDrop, D_PORTS_EXHAUSTED);
    assert.equal(e.counters[D_PORTS_EXHAUSTED], 1);
    assert.deepEqual([out[20], out[21]], [3, 1], "ICMP destination unreachable, host unreachable");
    assert.equal(u32(out, 16), ip(A));
    assert.deepEqual(out.subarray(28, 28 + refused.length), refused, "quotes the refused datagram");
  });
});
