import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { D_FRAGMENT_TIMEOUT, D_ICMP_ERROR_MALFORMED, D_ICMP_ERROR_NO_FLOW } from "../../src/nat/counters.ts";
import { DROP, FORWARD, HELD, REPLY } from "../../src/nat/engine.ts";
import {
  checksumProblems,
  icmpEcho,
  icmpError,
  ip,
  reassemble,
  SYN,
  splitFragments,
  tcp,
  u16,
  u32,
  udp,
} from "../helpers/packets.ts";
import { makeEngine, openOutbound, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const ROUTER = "198.51.100.1";

describe("RFC 5508: ICMP errors for tracked flows", () => {
  it("REQ-3: time-exceeded for a UDP flow (traceroute) is translated, embedded header, port and all checksums", () => {
    const e = makeEngine();
    const probe = run(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 33434, ttl: 1, payload: 32 })).out;
    const err = icmpError({ from: ROUTER, to: P, type: 11, code: 0, quoted: probe, quoteLen: 28 });
    const { verdict, out } = run(e, err);
    assert.equal(verdict, FORWARD);
    assert.equal(u32(out, 12), ip(ROUTER));
    assert.equal(u32(out, 16), ip(A));
    assert.equal(u32(out, 28 + 12), ip(A), "embedded source is the inside host");
    assert.equal(u16(out, 28 + 20), 44000, "embedded source port is the inside port");
    assert.deepEqual(checksumProblems(out), []);
    assert.equal(e.stats().counters.icmp_errors_translated, 1);
  });

  it("REQ-3: fragmentation-needed for a TCP flow quoting the whole segment keeps the embedded TCP checksum right (PMTUD)", () => {
    const e = makeEngine();
    const seg = run(
      e,
      tcp({ src: A, dst: REMOTE, sport: 45000, dport: 80, flags: SYN, df: true, payload: 100 }),
    ).out;
    const err = icmpError({ from: ROUTER, to: P, type: 3, code: 4, quoted: seg, mtu: 1400 });
    const { verdict, out } = run(e, err);
    assert.equal(verdict, FORWARD);
    assert.equal(u16(out, 26), 1400, "next-hop MTU untouched");
    const inner = out.subarray(28);
    assert.equal(u32(inner, 12), ip(A));
    assert.equal(u16(inner, 20), 45000);
    assert.deepEqual(checksumProblems(out), []);
    assert.deepEqual(checksumProblems(inner), [], "the quoted segment's own checksums are consistent");
  });

  it("translates an error about an ICMP echo (traceroute -I) back to the inside identifier", () => {
    const e = makeEngine();
    const probe = run(e, icmpEcho({ src: A, dst: REMOTE, id: 99, ttl: 1 })).out;
    const err = icmpError({ from: ROUTER, to: P, type: 11, code: 0, quoted: probe, quoteLen: 28 });
    const { verdict, out } = run(e, err);
    assert.equal(verdict, FORWARD);
    assert.equal(u32(out, 16), ip(A));
    assert.equal(u16(out, 28 + 24), 99);
    assert.deepEqual(checksumProblems(out), []);
  });

  it("translates an inside host's port-unreachable about an inbound datagram of a flow", () => {
    const e = makeEngine({ filtering: "endpoint-independent" });
    const port = u16(run(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 53 })).out, 20);
    const inbound = run(e, udp({ src: REMOTE, dst: P, sport: 53, dport: port })).out;
    const err = icmpError({ from: A, to: REMOTE, type: 3, code: 3, quoted: inbound });
    const { verdict, out } = run(e, err);
    assert.equal(verdict, FORWARD);
    assert.equal(u32(out, 12), ip(P));
    assert.equal(u32(out, 28 + 16), ip(P), "embedded destination is the outside address");
    assert.equal(u16(out, 28 + 22), port, "embedded destination port is the outside port");
    assert.deepEqual(checksumProblems(out), []);
  });

  it("drops errors that match no flow (pool mode) and malformed ones, with reasons", () => {
    const e = makeEngine({ mode: "pool" });
    const stray = udp({ src: P, dst: REMOTE, sport: 61999, dport: 53 });
    assert.equal(run(e, icmpError({ from: ROUTER, to: P, type: 3, code: 3, quoted: stray })).verdict, DROP);
    assert.equal(e.lastDrop, D_ICMP_ERROR_NO_FLOW);
    assert.equal(
      run(e, icmpError({ from: ROUTER, to: P, type: 3, code: 3, quoted: stray, quoteLen: 10 })).verdict,
      DROP,
    );
    assert.equal(e.lastDrop, D_ICMP_ERROR_MALFORMED);
  });
});

describe("timeouts on a fake clock", () => {
  it("RFC 4787 REQ-5: a UDP mapping lives 5 minutes idle by default, then goes and frees its port", () => {
    const e = makeEngine();
    const t0 = 10_000;
    const port = u16(run(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 53 }), t0).out, 20);
    e.tick(t0 + 299_000);
    assert.equal(run(e, udp({ src: REMOTE, dst: P, sport: 53, dport: port }), t0 + 299_000).verdict, FORWARD);
    // Refreshed at 299 s: still there at 598 s, gone after 600 s.
    e.tick(t0 + 598_000);
    assert.equal(e.stats().flows, 1);
    e.tick(t0 + 600_000);
    assert.equal(e.stats().flows, 0);
    assert.equal(e.stats().mappings, 0);
    assert.equal(run(e, udp({ src: REMOTE, dst: P, sport: 53, dport: port }), t0 + 600_000).verdict, DROP);
  });

  it("RFC 5382 REQ-5: an established TCP connection lives 2 h 4 min idle; a half-open one 4 minutes", () => {
    const e = makeEngine();
    const t0 = 5_000;
    openOutbound(e, A, 40000, REMOTE, 80, t0);
    run(e, tcp({ src: A, dst: REMOTE, sport: 40001, dport: 80, flags: SYN }), t0);
    e.tick(t0 + 239_000);
    assert.equal(e.stats().flows, 2);
    e.tick(t0 + 241_000);
    assert.equal(e.stats().flows, 1, "the half-open one went after 4 minutes");
    e.tick(t0 + 7439_000);
    assert.equal(e.stats().flows, 1);
    e.tick(t0 + 7441_000);
    assert.equal(e.stats().flows, 0);
  });

  it("RFC 5508 REQ-1: ICMP query mappings last 60 s", () => {
    const e = makeEngine();
    run(e, icmpEcho({ src: A, dst: REMOTE, id: 5 }), 1000);
    e.tick(60_000);
    assert.equal(e.stats().flows, 1);
    e.tick(61_500);
    assert.equal(e.stats().flows, 0);
  });

  it("timeouts are configurable", () => {
    const e = makeEngine({
      timeouts: {
        tcpEstablishedSec: 7440,
        tcpTransitorySec: 240,
        tcpHalfOpenSec: 60,
        tcpClosedSec: 10,
        udpSec: 3,
        icmpSec: 60,
        fragmentSec: 30,
      },
    });
    run(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 53 }), 1000);
    e.tick(3500);
    assert.equal(e.stats().flows, 1);
    e.tick(4500);
    assert.equal(e.stats().flows, 0);
  });

  it("expires many flows over time without scanning, within a bounded amount of work per call", () => {
    const e = makeEngine({
      maxFlows: 20_000,
      maxMappings: 20_000,
      maxFlowsPerHost: 20_000,
      maxPortsPerHost: 4000,
    });
    for (let i = 0; i < 10_000; i++)
      run(e, udp({ src: A, dst: REMOTE, sport: 1024 + (i % 4000), dport: 1 + Math.floor(i / 4000) }), 1000);
    assert.equal(e.stats().flows, 10_000);
    e.tick(302_000); // one call visits at most a budget of timers
    assert.ok(e.stats().flows > 0 && e.stats().flows < 10_000);
    for (let k = 0; k < 5; k++) e.tick(302_000);
    assert.equal(e.stats().flows, 0);
    assert.equal(e.stats().mappings, 0);
  });
});

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

describe("read-only views", () => {
  it("lists flows with endpoints, state, idle time and counters, and names every drop reason", () => {
    const e = makeEngine();
    const port = u16(
      run(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 53, payload: 10 }), 1000).out,
      20,
    );
    run(e, udp({ src: REMOTE, dst: P, sport: 53, dport: port, payload: 100 }), 4000);
    e.tick(9000);
    const [f] = e.flows();
    assert.deepEqual(f.inside, { addr: A, port: 44000 });
    assert.deepEqual(f.outside, { addr: P, port });
    assert.deepEqual(f.remote, { addr: REMOTE, port: 53 });
    assert.equal(f.protocol, "udp");
    assert.equal(f.state, "active");
    assert.equal(f.origin, "outbound");
    assert.equal(f.idleSec, 5);
    assert.equal(f.packetsOut, 1);
    assert.equal(f.packetsIn, 1);
    assert.equal(f.bytesOut, 20 + 8 + 10);
    assert.equal(f.bytesIn, 20 + 8 + 100);
    const s = e.stats();
    for (const k of [
      "drop_no_mapping",
      "drop_filtered",
      "drop_ip_bad_header_checksum",
      "drop_flow_table_full",
    ])
      assert.ok(k in s.counters, k);
    assert.ok(s.bytesPerFlow > 0);
  });

  it("the same packet at any offset of the buffer translates the same", () => {
    const e1 = makeEngine();
    const e2 = makeEngine();
    const pkt = tcp({ src: A, dst: REMOTE, sport: 62001, dport: 80, flags: SYN });
    const big = new Uint8Array(5000);
    big.set(pkt, 4001);
    e1.process(big, 4001, pkt.length, 1000);
    const { out } = run(e2, pkt);
    assert.deepEqual(big.subarray(4001, 4001 + pkt.length), out);
  });
});
