// Outside ports per inside host (RFC 6888 REQ-4) and the answers to a host whose new flow gets no
// mapping (RFC 6888 REQ-11): per protocol, per host, the default share, pins, rate limits.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import {
  C_EXHAUSTION_REPLIES,
  D_FRAGMENT_OF_DROPPED,
  D_HOST_PORT_QUOTA,
  D_PORTS_EXHAUSTED,
} from "../../../src/nat/counters.ts";
import { DROP, FORWARD, REPLY } from "../../../src/nat/engine.ts";
import { GATEWAY_ANSWER_BURST, HOST_ANSWER_BURST, HOST_ANSWER_RATE } from "../../../src/nat/exhaustion.ts";
import { defaultPortShare } from "../../../src/nat/port-quota.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../../../src/packet/ipv4.ts";
import {
  ACK,
  checksumProblems,
  icmpEcho,
  ip,
  RST,
  SYN,
  splitFragments,
  tcp,
  u16,
  u32,
  udp,
} from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
/** 256 ports: the default share is 64. */
const SMALL = { first: 61000, last: 61255 };
const smallRange = { ports: { tcp: SMALL, udp: SMALL, icmp: SMALL } };

function held(e: ReturnType<typeof makeEngine>, host: string, proto: number): number {
  return e.portQuota.held(e.hostTable.find(ip(host)), proto);
}

describe("RFC 6888 REQ-4: outside ports per inside host", () => {
  it("the default share is a quarter of the range, at least 64 ports (all of a smaller range)", () => {
    assert.equal(defaultPortShare({ first: 61000, last: 65534 }), 1133, "interface mode's 4535 ports");
    assert.equal(defaultPortShare({ first: 1, last: 65535 }), 16383);
    assert.equal(defaultPortShare(SMALL), 64);
    assert.equal(defaultPortShare({ first: 61000, last: 61099 }), 64, "100 ports: 64, not 25");
    assert.equal(defaultPortShare({ first: 61000, last: 61031 }), 32, "never more than the range");
    assert.deepEqual([...makeEngine().portQuota.limit], [16383, 16383, 16383], "pool mode's 1-65535");
    const e = makeEngine({ mode: "interface" });
    assert.deepEqual([...e.portQuota.limit], [1133, 1133, 1133]);
    assert.deepEqual([...makeEngine({ maxPortsPerHost: 7 }).portQuota.limit], [7, 7, 7]);
  });

  it("a host at its share of UDP is refused new mappings (counted); its other protocols, its existing flows and other hosts go on", () => {
    const e = makeEngine(smallRange);
    for (let i = 0; i < 64; i++)
      assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1000 + i, dport: 53 })).verdict, FORWARD);
    assert.equal(held(e, A, IPPROTO_UDP), 64);
    const mappings = e.stats().mappings;
    const over = run(e, udp({ src: A, dst: REMOTE, sport: 2000, dport: 53 }));
    assert.equal(over.verdict, REPLY);
    assert.equal(e.lastDrop, D_HOST_PORT_QUOTA);
    assert.equal(e.counters[D_HOST_PORT_QUOTA], 1);
    assert.equal(e.stats().counters.drop_host_port_quota, 1);
    assert.equal(e.stats().mappings, mappings, "no mapping made, none removed to make room (REQ-11 d)");
    // An existing mapping takes new remotes: no new port, so no quota.
    assert.equal(run(e, udp({ src: A, dst: "203.0.113.99", sport: 1005, dport: 9 })).verdict, FORWARD);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1063, dport: 53 })).verdict, FORWARD);
    // Other protocols have their own share.
    assert.equal(run(e, tcp({ src: A, dst: REMOTE, sport: 2000, dport: 80, flags: SYN })).verdict, FORWARD);
    assert.equal(run(e, icmpEcho({ src: A, dst: REMOTE, id: 77 })).verdict, FORWARD);
    // Another host is not affected.
    assert.equal(run(e, udp({ src: B, dst: REMOTE, sport: 2000, dport: 53 })).verdict, FORWARD);
    assert.equal(held(e, B, IPPROTO_UDP), 1);
    assert.equal(held(e, A, IPPROTO_TCP), 1);
    assert.equal(held(e, A, IPPROTO_ICMP), 1);
  });

  it("a port comes back to the host's share when its mapping expires", () => {
    const e = makeEngine({ ...smallRange, maxPortsPerHost: 2 });
    run(e, udp({ src: A, dst: REMOTE, sport: 1000, dport: 53 }), 1000);
    run(e, udp({ src: A, dst: REMOTE, sport: 1001, dport: 53 }), 200_000);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1002, dport: 53 }), 200_000).verdict, REPLY);
    e.tick(302_000); // the first mapping's flow (UDP, 300 s) is gone
    assert.equal(held(e, A, IPPROTO_UDP), 1);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1002, dport: 53 }), 302_000).verdict, FORWARD);
    e.tick(1_000_000);
    assert.equal(e.stats().hosts, 0, "a host holding nothing is forgotten");
  });

  it("with the whole range used, every host is told the range is exhausted", () => {
    const e = makeEngine({ ports: { tcp: SMALL, udp: { first: 61000, last: 61063 }, icmp: SMALL } });
    for (let h = 2; h < 6; h++)
      for (let i = 0; i < 16; i++)
        run(e, udp({ src: `192.168.0.${h}`, dst: REMOTE, sport: 1000 + i, dport: 53 }));
    assert.equal(e.stats().mappings, 64);
    assert.equal(run(e, udp({ src: "192.168.0.9", dst: REMOTE, sport: 1000, dport: 53 })).verdict, REPLY);
    assert.equal(e.lastDrop, D_PORTS_EXHAUSTED);
  });

  it("mappings the host asks for itself (NAT-PMP/PCP, ALG) count; the administrator's forwards do not", () => {
    const e = makeEngine({ maxPortsPerHost: 3 });
    e.tick(1000);
    // Forwards: not part of A's share.
    for (let p = 0; p < 4; p++) {
      const r = e.pinMapping({
        proto: "udp",
        inAddr: ip(A),
        inPort: 5000 + p,
        outPort: 62000 + p,
        origin: "forward",
        hostQuota: false,
      });
      assert.ok(!("error" in r), JSON.stringify(r));
    }
    assert.equal(held(e, A, IPPROTO_UDP), 0);
    const natpmp = (inPort: number) =>
      e.pinMapping({ proto: "udp", inAddr: ip(A), inPort, origin: "natpmp" });
    const a = natpmp(7000);
    const b = natpmp(7001);
    assert.ok("id" in a && "id" in b);
    assert.equal(held(e, A, IPPROTO_UDP), 2);
    assert.equal(e.stats().hosts, 1, "the host is remembered while it holds pinned ports without flows");
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1000, dport: 53 })).verdict, FORWARD);
    const third = natpmp(7002);
    assert.ok("error" in third && third.code === "MASQ_ERR_HOST_PORT_QUOTA", JSON.stringify(third));
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 1001, dport: 53 })).verdict, REPLY);
    assert.equal(e.lastDrop, D_HOST_PORT_QUOTA);
    // A pin on a mapping the host already has takes no new port.
    assert.ok("id" in e.pinMapping({ proto: "udp", inAddr: ip(A), inPort: 1000, origin: "pcp" }));
    e.unpin(a.id);
    assert.equal(held(e, A, IPPROTO_UDP), 2);
    assert.ok("id" in natpmp(7002), "the unpinned mapping's port came back to A's share");
  });

  it("[limits] max_ports_per_host is read, and refused with the key named when it is not a count", () => {
    const cfg = (text: string) =>
      resolveRunConfig({ inside: ["lan0"], outside: "wan0", config: "masq.toml" }, () => text);
    assert.equal(cfg("").limits.maxPortsPerHost, 0, "default: derived from the range");
    assert.equal(cfg("[limits]\nmax_ports_per_host = 500\n").limits.maxPortsPerHost, 500);
    for (const bad of ["0", "1.5", "70000", '"many"'])
      assert.throws(
        () => cfg(`[limits]\nmax_ports_per_host = ${bad}\n`),
        /masq\.toml: limits\.max_ports_per_host: /,
      );
  });
});

describe("RFC 6888 REQ-11: answers to a refused new flow", () => {
  it("a TCP SYN gets a reset from the remote it was sent to, acknowledging the SYN", () => {
    const e = makeEngine({ ...smallRange, maxPortsPerHost: 1 });
    run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 80, flags: SYN }));
    const { verdict, out } = run(
      e,
      tcp({ src: A, dst: REMOTE, sport: 40001, dport: 443, flags: SYN, seq: 5000 }),
    );
    assert.equal(verdict, REPLY);
    assert.equal(out.length, 40);
    assert.deepEqual([u32(out, 12), u32(out, 16)], [ip(REMOTE), ip(A)]);
    assert.deepEqual([u16(out, 20), u16(out, 22)], [443, 40001]);
    assert.equal(out[33], RST | ACK);
    assert.equal(u32(out, 28), 5001, "acknowledges the SYN");
    assert.deepEqual(checksumProblems(out), []);
    assert.equal(e.counters[C_EXHAUSTION_REPLIES], 1);
    assert.equal(e.stats().counters.exhaustion_replies, 1);
  });

  it("UDP and ICMP echo get destination unreachable, host unreachable (code 1), from the public address", () => {
    const e = makeEngine({ ...smallRange, maxPortsPerHost: 1 });
    run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }));
    run(e, icmpEcho({ src: A, dst: REMOTE, id: 1 }));
    for (const pkt of [
      udp({ src: A, dst: REMOTE, sport: 40001, dport: 53, payload: 30 }),
      icmpEcho({ src: A, dst: REMOTE, id: 2 }),
    ]) {
      const { verdict, out } = run(e, pkt);
      assert.equal(verdict, REPLY);
      assert.deepEqual([out[9], out[20], out[21]], [IPPROTO_ICMP, 3, 1]);
      assert.deepEqual([u32(out, 12), u32(out, 16)], [ip(P), ip(A)]);
      assert.deepEqual(out.subarray(28), pkt, "quotes the whole refused packet (it is short)");
      assert.deepEqual(checksumProblems(out), []);
    }
  });

  it("the later fragments of a refused datagram are dropped at once, not held for nothing", () => {
    const e = makeEngine({ ...smallRange, maxPortsPerHost: 1 });
    run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }));
    const [first, later] = splitFragments(
      udp({ src: A, dst: REMOTE, sport: 40001, dport: 53, payload: 2000 }),
      1480,
      9,
    );
    assert.equal(run(e, first).verdict, REPLY);
    assert.equal(run(e, later).verdict, DROP);
    assert.equal(e.lastDrop, D_FRAGMENT_OF_DROPPED);
    assert.equal(e.stats().heldFragments, 0);
  });

  it("no answer to a datagram sent to a multicast or broadcast address (RFC 1122 3.2.2)", () => {
    const e = makeEngine({ ...smallRange, maxPortsPerHost: 1 });
    run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }));
    assert.equal(run(e, udp({ src: A, dst: "239.1.2.3", sport: 40001, dport: 5000 })).verdict, DROP);
    assert.equal(run(e, udp({ src: A, dst: "255.255.255.255", sport: 40002, dport: 67 })).verdict, DROP);
    assert.equal(e.counters[D_HOST_PORT_QUOTA], 2);
    assert.equal(e.counters[C_EXHAUSTION_REPLIES], 0);
  });

  it("a host that floods gets a burst of answers, then as many as the rate allows; every refusal is counted", () => {
    const e = makeEngine({ ...smallRange, maxPortsPerHost: 1 });
    run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }), 1000);
    let answered = 0;
    for (let i = 0; i < 100; i++)
      if (run(e, udp({ src: A, dst: REMOTE, sport: 41000 + i, dport: 53 }), 1000).verdict === REPLY)
        answered++;
    assert.equal(answered, HOST_ANSWER_BURST);
    answered = 0;
    for (let i = 0; i < 100; i++)
      if (run(e, udp({ src: A, dst: REMOTE, sport: 42000 + i, dport: 53 }), 2000).verdict === REPLY)
        answered++;
    assert.equal(answered, HOST_ANSWER_RATE, "one second later: one second's worth");
    assert.equal(e.counters[D_HOST_PORT_QUOTA], 200);
    assert.equal(e.counters[C_EXHAUSTION_REPLIES], HOST_ANSWER_BURST + HOST_ANSWER_RATE);
    // Another host has its own bucket.
    run(e, udp({ src: B, dst: REMOTE, sport: 40000, dport: 53 }), 2000);
    assert.equal(run(e, udp({ src: B, dst: REMOTE, sport: 40001, dport: 53 }), 2000).verdict, REPLY);
  });

  it("the whole gateway answers a bounded burst, however many hosts are refused at once", () => {
    const e = makeEngine({ maxPortsPerHost: 1, maxHosts: 256 });
    const hosts = GATEWAY_ANSWER_BURST + 10;
    for (let h = 0; h < hosts; h++)
      run(e, udp({ src: `192.168.0.${h + 2}`, dst: REMOTE, sport: 1, dport: 53 }), 1000);
    let answered = 0;
    for (let h = 0; h < hosts; h++)
      if (
        run(e, udp({ src: `192.168.0.${h + 2}`, dst: REMOTE, sport: 2, dport: 53 }), 1000).verdict === REPLY
      )
        answered++;
    assert.equal(answered, GATEWAY_ANSWER_BURST);
    assert.equal(e.counters[D_HOST_PORT_QUOTA], hosts);
  });
});
