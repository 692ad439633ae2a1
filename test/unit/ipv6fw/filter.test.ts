import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { parseIpv6 } from "../../../src/ipv6fw/addr6.ts";
import {
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV6_TIMEOUTS,
  Ip6Filter,
} from "../../../src/ipv6fw/filter.ts";
import { DROP, FORWARD, SIDE_BY_ADDRESS, SIDE_INSIDE, SIDE_OUTSIDE } from "../../../src/nat/verdicts.ts";
import { tcp, udp, v6 } from "../../helpers/ipv6-packets.ts";
import { assertProperty } from "../../helpers/property.ts";

const IN = "2001:db8:1::10";
const IN2 = "2001:db8:1::11";
const OUT = "2001:db8:99::1";
const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;

function echo(src: string, dst: string, type: number, id: number): Uint8Array {
  const e = new Uint8Array(8);
  e[0] = type;
  e[4] = id >> 8;
  e[5] = id & 0xff;
  return v6(src, dst, IPPROTO_ICMPV6, e);
}
function icmpError(src: string, dst: string, quoted: Uint8Array): Uint8Array {
  const e = new Uint8Array(8 + quoted.length);
  e[0] = 1; // destination unreachable
  e.set(quoted, 8);
  return v6(src, dst, IPPROTO_ICMPV6, e);
}

function filter(opts: Partial<ConstructorParameters<typeof Ip6Filter>[0]> = {}): Ip6Filter {
  return new Ip6Filter({ capacity: 64, filtering: "address-port-dependent", ...opts });
}
const run = (f: Ip6Filter, p: Uint8Array, side: number, now = 0) => f.process(p, 0, p.length, now, side);

describe("Ip6Filter (RFC 6092)", () => {
  it("admits the replies of an outbound TCP connection and drops an unsolicited SYN", () => {
    const f = filter();
    assert.equal(run(f, tcp(OUT, 80, IN, 40000, SYN), SIDE_OUTSIDE), DROP);
    assert.equal(f.droppedFor("unsolicited_tcp"), 1);
    assert.equal(run(f, tcp(IN, 40000, OUT, 80, SYN), SIDE_INSIDE), FORWARD);
    assert.equal(run(f, tcp(OUT, 80, IN, 40000, SYN | ACK), SIDE_OUTSIDE), FORWARD);
    assert.equal(run(f, tcp(IN, 40000, OUT, 80, ACK), SIDE_INSIDE), FORWARD);
    // Another port of the same host, or the same port to another inside host: not the flow.
    assert.equal(run(f, tcp(OUT, 81, IN, 40000, ACK), SIDE_OUTSIDE), DROP);
    assert.equal(run(f, tcp(OUT, 80, IN2, 40000, ACK), SIDE_OUTSIDE), DROP);
    assert.equal(f.stats.flowsCreated, 1);
  });

  it("keeps an established TCP flow for 2 h 4 min and an opening one for 4 min", () => {
    const f = filter();
    run(f, tcp(IN, 40000, OUT, 80, SYN), SIDE_INSIDE, 0);
    const opening = IPV6_TIMEOUTS.tcpTransitory * 1000;
    assert.equal(run(f, tcp(OUT, 80, IN, 40000, SYN | ACK), SIDE_OUTSIDE, opening - 1), FORWARD);
    run(f, tcp(IN, 40000, OUT, 80, ACK), SIDE_INSIDE, opening - 1);
    const est = opening - 1 + IPV6_TIMEOUTS.tcpEstablished * 1000;
    assert.equal(run(f, tcp(OUT, 80, IN, 40000, ACK), SIDE_OUTSIDE, est - 1), FORWARD);
    assert.equal(
      run(f, tcp(OUT, 80, IN, 40000, ACK), SIDE_OUTSIDE, est - 1 + IPV6_TIMEOUTS.tcpEstablished * 1000 + 1),
      DROP,
    );
    const g = filter();
    run(g, tcp(IN, 40000, OUT, 80, SYN), SIDE_INSIDE, 0);
    assert.equal(run(g, tcp(OUT, 80, IN, 40000, SYN | ACK), SIDE_OUTSIDE, opening), DROP);
  });

  it("moves a TCP flow to the transitory timeout on FIN", () => {
    const f = filter();
    run(f, tcp(IN, 40000, OUT, 80, SYN), SIDE_INSIDE, 0);
    run(f, tcp(OUT, 80, IN, 40000, SYN | ACK), SIDE_OUTSIDE, 0);
    run(f, tcp(IN, 40000, OUT, 80, ACK), SIDE_INSIDE, 0);
    run(f, tcp(IN, 40000, OUT, 80, FIN | ACK), SIDE_INSIDE, 0);
    const t = IPV6_TIMEOUTS.tcpTransitory * 1000;
    assert.equal(run(f, tcp(OUT, 80, IN, 40000, ACK), SIDE_OUTSIDE, t - 1), FORWARD);
    assert.equal(run(f, tcp(OUT, 80, IN, 40000, ACK), SIDE_OUTSIDE, 2 * t), DROP);
  });

  it("UDP: replies within 2 minutes of the last outbound datagram; inbound does not refresh", () => {
    const f = filter();
    assert.equal(run(f, udp(OUT, 53, IN, 5000), SIDE_OUTSIDE), DROP);
    assert.equal(f.droppedFor("unsolicited_udp"), 1);
    run(f, udp(IN, 5000, OUT, 53), SIDE_INSIDE, 0);
    const t = IPV6_TIMEOUTS.udp * 1000;
    assert.equal(run(f, udp(OUT, 53, IN, 5000), SIDE_OUTSIDE, t - 1), FORWARD);
    assert.equal(run(f, udp(OUT, 53, IN, 5000), SIDE_OUTSIDE, t), DROP);
  });

  it("honours the filtering mode for UDP", () => {
    const apd = filter({ filtering: "address-port-dependent" });
    const ad = filter({ filtering: "address-dependent" });
    const ei = filter({ filtering: "endpoint-independent" });
    for (const f of [apd, ad, ei]) run(f, udp(IN, 5000, OUT, 53), SIDE_INSIDE);
    const otherPort = udp(OUT, 54, IN, 5000);
    const otherHost = udp("2001:db8:98::1", 53, IN, 5000);
    assert.deepEqual([run(apd, otherPort, SIDE_OUTSIDE), run(apd, otherHost, SIDE_OUTSIDE)], [DROP, DROP]);
    assert.deepEqual([run(ad, otherPort, SIDE_OUTSIDE), run(ad, otherHost, SIDE_OUTSIDE)], [FORWARD, DROP]);
    assert.deepEqual(
      [run(ei, otherPort, SIDE_OUTSIDE), run(ei, otherHost, SIDE_OUTSIDE)],
      [FORWARD, FORWARD],
    );
  });

  it("ICMPv6 echo: the reply of a request passes, an unsolicited one does not", () => {
    const f = filter();
    assert.equal(run(f, echo(OUT, IN, 129, 7), SIDE_OUTSIDE), DROP);
    assert.equal(run(f, echo(OUT, IN, 128, 7), SIDE_OUTSIDE), DROP);
    assert.equal(f.droppedFor("unsolicited_icmp"), 2);
    assert.equal(run(f, echo(IN, OUT, 128, 7), SIDE_INSIDE), FORWARD);
    assert.equal(run(f, echo(OUT, IN, 129, 7), SIDE_OUTSIDE), FORWARD);
    assert.equal(run(f, echo(OUT, IN, 129, 8), SIDE_OUTSIDE), DROP);
  });

  it("passes ICMPv6 errors that quote a tracked flow, drops the others", () => {
    const f = filter();
    const sent = udp(IN, 5000, OUT, 53);
    assert.equal(run(f, icmpError("2001:db8:97::1", IN, sent), SIDE_OUTSIDE), DROP);
    assert.equal(f.droppedFor("icmp_error_no_flow"), 1);
    run(f, sent, SIDE_INSIDE);
    assert.equal(run(f, icmpError("2001:db8:97::1", IN, sent), SIDE_OUTSIDE), FORWARD);
    assert.equal(f.stats.icmpErrorsPassed, 1);
  });

  it("a pinhole opens one inside address, protocol and port", () => {
    const f = filter({
      pinholes: [{ address: parseIpv6(IN) as Uint8Array, proto: IPPROTO_TCP, port: 8080 }],
    });
    assert.equal(run(f, tcp(OUT, 50000, IN, 8080, SYN), SIDE_OUTSIDE), FORWARD);
    assert.equal(run(f, tcp(OUT, 50000, IN, 8081, SYN), SIDE_OUTSIDE), DROP);
    assert.equal(run(f, tcp(OUT, 50000, IN2, 8080, SYN), SIDE_OUTSIDE), DROP);
    assert.equal(run(f, udp(OUT, 50000, IN, 8080), SIDE_OUTSIDE), DROP);
    assert.equal(f.stats.pinholeHits, 1);
  });

  it("a run-time pinhole (PCP) admits its address, protocol and port until it lapses or closes", () => {
    const f = filter();
    const a = parseIpv6(IN) as Uint8Array;
    assert.equal(f.openPinhole(a, IPPROTO_UDP, 9000, 0, 1000), true);
    assert.equal(run(f, udp(OUT, 50000, IN, 9000), SIDE_OUTSIDE, 999), FORWARD);
    assert.equal(run(f, udp(OUT, 50000, IN, 9001), SIDE_OUTSIDE, 0), DROP);
    assert.equal(run(f, udp(OUT, 50000, IN2, 9000), SIDE_OUTSIDE, 0), DROP);
    assert.equal(run(f, tcp(OUT, 50000, IN, 9000, SYN), SIDE_OUTSIDE, 0), DROP);
    assert.equal(run(f, udp(OUT, 50000, IN, 9000), SIDE_OUTSIDE, 1000), DROP, "lapsed at its lifetime");
    // Renewal moves the end; closing ends it at once.
    f.openPinhole(a, IPPROTO_TCP, 22, 0, 1000);
    f.openPinhole(a, IPPROTO_TCP, 22, 500, 5000);
    assert.equal(run(f, tcp(OUT, 50000, IN, 22, SYN), SIDE_OUTSIDE, 4000), FORWARD);
    // The SYN through the pinhole made a flow: the connection's later packets pass as its own.
    f.closePinhole(a, IPPROTO_TCP, 22, 4000);
    assert.equal(run(f, tcp(OUT, 50001, IN, 22, SYN), SIDE_OUTSIDE, 4000), DROP);
    assert.equal(run(f, tcp(OUT, 50000, IN, 22, ACK), SIDE_OUTSIDE, 4000), FORWARD);
    assert.equal(f.stats.pinholeHits, 2);
    assert.equal(f.liveFlows(4000), 1, "pinholes are not counted as flows");
  });

  it("a pinhole's key never matches a flow's, even with endpoint-independent filtering", () => {
    const f = filter({ filtering: "endpoint-independent" });
    const a = parseIpv6(IN) as Uint8Array;
    run(f, udp(IN, 5000, OUT, 53), SIDE_INSIDE, 0);
    f.openPinhole(a, IPPROTO_UDP, 5000, 0, 10 * 60_000);
    f.closePinhole(a, IPPROTO_UDP, 5000, 1);
    // The outbound flow still admits what endpoint-independent filtering lets in.
    assert.equal(run(f, udp("2001:db8:77::1", 9, IN, 5000), SIDE_OUTSIDE, 2), FORWARD);
    f.openPinhole(a, IPPROTO_UDP, 6000, 0, 10 * 60_000);
    // The pinhole outlives the flow's two minutes.
    assert.equal(run(f, udp(OUT, 53, IN, 6000), SIDE_OUTSIDE, 5 * 60_000), FORWARD);
    assert.equal(run(f, udp(OUT, 53, IN, 5000), SIDE_OUTSIDE, 5 * 60_000), DROP);
  });

  it("drops link-scope destinations (ND, MLD, router solicitations) and other protocols inbound", () => {
    const f = filter();
    assert.equal(run(f, echo("fe80::1", "ff02::1:ff00:10", 135, 0), SIDE_INSIDE), DROP);
    assert.equal(run(f, echo("fe80::1", "fe80::2", 136, 0), SIDE_OUTSIDE), DROP);
    assert.equal(f.droppedFor("link_scope"), 2);
    assert.equal(run(f, v6(OUT, IN, 50, new Uint8Array(8)), SIDE_OUTSIDE), DROP);
    assert.equal(f.droppedFor("other_protocol"), 1);
    assert.equal(run(f, v6(IN, OUT, 50, new Uint8Array(8)), SIDE_INSIDE), FORWARD);
  });

  it("gives back the hop the kernel took on the way into the TUN", () => {
    const f = filter();
    const p = udp(IN, 5000, OUT, 53);
    p[7] = 63;
    run(f, p, SIDE_INSIDE);
    assert.equal(p[7], 64);
    const q = udp(OUT, 53, IN, 5001);
    q[7] = 63;
    run(f, q, SIDE_OUTSIDE);
    assert.equal(q[7], 63, "a dropped packet is not touched");
  });

  it("tells the side by the inside prefixes when the device does not", () => {
    const f = filter({ insidePrefixes: [{ addr: parseIpv6("2001:db8:1::") as Uint8Array, len: 48 }] });
    assert.equal(run(f, udp(IN, 5000, OUT, 53), SIDE_BY_ADDRESS), FORWARD);
    assert.equal(run(f, udp(OUT, 53, IN, 5000), SIDE_BY_ADDRESS), FORWARD);
    assert.equal(run(f, udp(OUT, 53, IN, 5001), SIDE_BY_ADDRESS), DROP);
  });

  it("counts a drop when the table is full and reuses expired slots", () => {
    const f = filter({ capacity: 16 });
    let full = 0;
    for (let p = 1; p <= 40; p++) if (run(f, udp(IN, p, OUT, 53), SIDE_INSIDE, 0) === DROP) full++;
    assert.ok(full > 0);
    assert.equal(f.droppedFor("table_full"), full);
    assert.ok(f.liveFlows(0) <= 16);
    assert.equal(run(f, udp(IN, 1000, OUT, 53), SIDE_INSIDE, IPV6_TIMEOUTS.udp * 1000), FORWARD);
  });

  it("never admits inbound traffic that no outbound packet or pinhole opened (property)", () => {
    assertProperty(
      fc.property(
        fc.array(
          fc.record({
            sp: fc.integer({ min: 1, max: 20 }),
            dp: fc.integer({ min: 1, max: 20 }),
            udp: fc.boolean(),
          }),
          {
            maxLength: 30,
          },
        ),
        fc.record({
          sp: fc.integer({ min: 1, max: 20 }),
          dp: fc.integer({ min: 1, max: 20 }),
          udp: fc.boolean(),
        }),
        (out, probe) => {
          const f = filter({ capacity: 256 });
          for (const o of out)
            run(f, o.udp ? udp(IN, o.sp, OUT, o.dp) : tcp(IN, o.sp, OUT, o.dp, SYN), SIDE_INSIDE);
          const opened = out.some((o) => o.udp === probe.udp && o.sp === probe.dp && o.dp === probe.sp);
          const v = run(
            f,
            probe.udp ? udp(OUT, probe.sp, IN, probe.dp) : tcp(OUT, probe.sp, IN, probe.dp, ACK),
            SIDE_OUTSIDE,
          );
          assert.equal(v === FORWARD, opened);
        },
      ),
      200,
    );
  });
});
