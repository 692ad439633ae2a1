import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatStats } from "../../../src/control/format.ts";
import { createMetrics } from "../../../src/control/metrics.ts";
import {
  C_DROPPED,
  C_FLOWS_CREATED,
  D_FIREWALL_DROP,
  D_FIREWALL_REJECT,
  D_HOST_RATE_LIMIT,
  D_RATE_LIMIT,
  isDropReason,
  namedCounters,
} from "../../../src/nat/counters.ts";
import { DROP, FORWARD, REPLY } from "../../../src/nat/engine.ts";
import { TokenBucket } from "../../../src/policy/rate.ts";
import {
  ACT_DROP,
  DIR_INBOUND,
  DIR_OUTBOUND,
  type FirewallRule,
  NO_RULE,
  RuleSet,
} from "../../../src/policy/rules.ts";
import { ACK, checksumProblems, icmpEcho, ip, RST, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
const pfx = (s: string) => {
  const [a, l] = s.split("/");
  return { addr: ip(a), len: Number(l ?? 32) };
};

describe("firewall rules (compiled)", () => {
  const rules: FirewallRule[] = [
    {
      direction: "inbound",
      action: "accept",
      protocol: "tcp",
      source: pfx("203.0.113.0/24"),
      destinationPorts: { first: 22, last: 22 },
    },
    { direction: "inbound", action: "drop", protocol: "tcp", destinationPorts: { first: 22, last: 22 } },
    { direction: "outbound", action: "reject", destination: pfx("10.0.0.0/8") },
    {
      direction: "any",
      action: "drop",
      protocol: "udp",
      source: pfx("192.168.0.9"),
      sourcePorts: { first: 1000, last: 2000 },
    },
  ];
  const rs = new RuleSet(rules);

  it("first match wins, by direction, protocol, prefix and port range", () => {
    assert.equal(rs.match(DIR_INBOUND, 6, ip("203.0.113.5"), 40000, ip(A), 22), 0);
    assert.equal(rs.match(DIR_INBOUND, 6, ip("198.18.0.1"), 40000, ip(A), 22), 1);
    assert.equal(rs.match(DIR_INBOUND, 6, ip("198.18.0.1"), 40000, ip(A), 23), NO_RULE);
    assert.equal(rs.match(DIR_INBOUND, 17, ip("198.18.0.1"), 40000, ip(A), 22), NO_RULE, "udp is not tcp");
    assert.equal(rs.match(DIR_OUTBOUND, 6, ip(A), 40000, ip("10.1.2.3"), 80), 2);
    assert.equal(rs.match(DIR_OUTBOUND, 1, ip(A), 0, ip("10.1.2.3"), 0), 2, "any protocol, ICMP too");
    assert.equal(rs.match(DIR_INBOUND, 6, ip("10.1.2.3"), 80, ip(A), 80), NO_RULE, "outbound rule only");
    assert.equal(rs.match(DIR_OUTBOUND, 17, ip("192.168.0.9"), 1500, ip("8.8.8.8"), 53), 3);
    assert.equal(rs.match(DIR_INBOUND, 17, ip("192.168.0.9"), 1500, ip(A), 53), 3, "any direction");
    assert.equal(rs.match(DIR_OUTBOUND, 17, ip("192.168.0.9"), 2001, ip("8.8.8.8"), 53), NO_RULE);
    assert.equal(rs.action[1], ACT_DROP);
  });

  it("counts hits per rule and describes each rule", () => {
    const list = rs.list();
    assert.deepEqual(
      list.map((r) => r.hits),
      [1, 1, 2, 2],
    );
    assert.equal(list[1].rule, "inbound tcp dport 22 drop");
    assert.equal(list[2].rule, "outbound to 10.0.0.0/8 reject");
  });

  it("refuses ports on a rule that is not TCP or UDP", () => {
    assert.throws(
      () => new RuleSet([{ direction: "any", action: "drop", destinationPorts: { first: 1, last: 2 } }]),
      /ports need protocol tcp or udp/,
    );
  });
});

describe("firewall in the engine (new flows only)", () => {
  it("drop: an outbound SYN is dropped and counted; the rule is hit once", () => {
    const e = makeEngine({
      firewall: [
        { direction: "outbound", action: "drop", protocol: "tcp", destinationPorts: { first: 25, last: 25 } },
      ],
    });
    const r = run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 25, flags: SYN }));
    assert.equal(r.verdict, DROP);
    assert.equal(e.lastDrop, D_FIREWALL_DROP);
    assert.equal(e.counters[D_FIREWALL_DROP], 1);
    assert.equal(e.firewall?.hits[0], 1);
    assert.equal(e.counters[C_FLOWS_CREATED], 0);
    assert.equal(run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 80, flags: SYN })).verdict, FORWARD);
    assert.equal(namedCounters(e.counters).drop_firewall_drop, 1);
    assert.ok(isDropReason(D_FIREWALL_DROP));
  });

  it("reject TCP: the inside client gets a RST from the remote it called, checksums valid", () => {
    const e = makeEngine({ firewall: [{ direction: "outbound", action: "reject", protocol: "tcp" }] });
    const r = run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 80, flags: SYN, seq: 5000 }));
    assert.equal(r.verdict, REPLY);
    assert.equal(e.lastDrop, D_FIREWALL_REJECT);
    assert.equal(e.counters[D_FIREWALL_REJECT], 1);
    assert.equal(e.counters[C_DROPPED], 1);
    const o = r.out;
    assert.equal(o.length, 40);
    assert.equal(u32(o, 12), ip(REMOTE));
    assert.equal(u32(o, 16), ip(A));
    assert.equal(u16(o, 20), 80);
    assert.equal(u16(o, 22), 40000);
    assert.equal(o[33], RST | ACK);
    assert.equal(u32(o, 28), 5001, "acknowledges the SYN");
    assert.deepEqual(checksumProblems(o), []);
    // A segment with ACK: the reset takes its acknowledgement number as its sequence number.
    const e2 = makeEngine({ firewall: [{ direction: "inbound", action: "reject", protocol: "tcp" }] });
    e2.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 80, origin: "forward" });
    const r2 = run(e2, tcp({ src: REMOTE, dst: P, sport: 5555, dport: 80, flags: SYN, seq: 77 }));
    assert.equal(r2.verdict, REPLY);
    assert.equal(u32(r2.out, 12), ip(P), "the reset comes from the public address:port");
    assert.equal(u16(r2.out, 20), 80);
    assert.deepEqual(checksumProblems(r2.out), []);
  });

  it("reject UDP and ICMP: an ICMP administratively-prohibited unreachable", () => {
    const e = makeEngine({ firewall: [{ direction: "outbound", action: "reject" }] });
    for (const pkt of [
      udp({ src: A, dst: REMOTE, sport: 4000, dport: 53 }),
      icmpEcho({ src: A, dst: REMOTE, id: 7 }),
    ]) {
      const r = run(e, pkt);
      assert.equal(r.verdict, REPLY);
      assert.equal(r.out[9], 1);
      assert.equal(r.out[20], 3);
      assert.equal(r.out[21], 13);
      assert.equal(u32(r.out, 16), ip(A));
      assert.deepEqual(checksumProblems(r.out), []);
    }
    assert.equal(e.firewall?.hits[0], 2);
  });

  it("packets of an admitted flow are never re-evaluated", () => {
    const e = makeEngine({ firewall: [{ direction: "outbound", action: "accept", protocol: "udp" }] });
    for (let i = 0; i < 5; i++)
      assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 4000, dport: 53 })).verdict, FORWARD);
    assert.equal(e.firewall?.hits[0], 1);
  });

  it("inbound rules see the inside host and port behind a forward, and only new inbound flows", () => {
    const e = makeEngine({
      firewall: [
        {
          direction: "inbound",
          action: "drop",
          protocol: "tcp",
          destination: pfx(A),
          destinationPorts: { first: 22, last: 22 },
        },
      ],
    });
    e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 22, outPort: 2222, origin: "forward" });
    e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 8080, origin: "forward" });
    const ssh = run(e, tcp({ src: REMOTE, dst: P, sport: 5555, dport: 2222, flags: SYN }));
    assert.equal(ssh.verdict, DROP);
    assert.equal(e.lastDrop, D_FIREWALL_DROP);
    assert.equal(run(e, tcp({ src: REMOTE, dst: P, sport: 5556, dport: 8080, flags: SYN })).verdict, FORWARD);
    // The inside host's own outbound flows are not inbound: untouched by the rule.
    assert.equal(run(e, tcp({ src: A, dst: REMOTE, sport: 22, dport: 22, flags: SYN })).verdict, FORWARD);
    assert.equal(e.firewall?.hits[0], 1);
    // Unsolicited inbound without a mapping stays the default deny, before any rule.
    const none = run(e, tcp({ src: REMOTE, dst: P, sport: 1, dport: 61999, flags: SYN }));
    assert.equal(none.verdict, DROP);
    assert.equal(e.firewall?.hits[0], 1);
    const flows = e.flows();
    assert.ok(
      flows.some((f) => f.origin === "forward" && f.inside.port === 80),
      JSON.stringify(flows),
    );
  });
});

describe("new-flow rate limits", () => {
  it("token bucket: burst, then the rate", () => {
    const b = new TokenBucket(10, 10);
    let ok = 0;
    for (let i = 0; i < 50; i++) if (b.take(1000)) ok++;
    assert.equal(ok, 10);
    assert.equal(b.take(1050), false, "half a token");
    assert.equal(b.take(1100), true, "one token after 100 ms");
    assert.equal(b.take(1100), false);
  });

  it("one inside host over its limit is refused with a reason; another keeps working", () => {
    const e = makeEngine({ newFlowsPerSecPerHost: 5 });
    let ok = 0;
    for (let p = 0; p < 40; p++)
      if (run(e, udp({ src: A, dst: REMOTE, sport: 20000 + p, dport: 53 }), 1000).verdict === FORWARD) ok++;
    assert.equal(ok, 5);
    assert.equal(e.counters[D_HOST_RATE_LIMIT], 35);
    assert.equal(run(e, udp({ src: B, dst: REMOTE, sport: 20000, dport: 53 }), 1000).verdict, FORWARD);
    // Existing flows of the limited host keep flowing.
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 20000, dport: 53 }), 1000).verdict, FORWARD);
    // One second later the host has five new flows again.
    ok = 0;
    for (let p = 100; p < 120; p++)
      if (run(e, udp({ src: A, dst: REMOTE, sport: 20000 + p, dport: 53 }), 2000).verdict === FORWARD) ok++;
    assert.equal(ok, 5);
  });

  it("the gateway-wide limit counts every new flow, inbound ones too", () => {
    const e = makeEngine({ newFlowsPerSec: 3, filtering: "endpoint-independent" });
    e.pinMapping({ proto: "udp", inAddr: ip(A), inPort: 53, outPort: 53, origin: "forward" });
    let ok = 0;
    for (let p = 0; p < 2; p++)
      if (run(e, udp({ src: B, dst: REMOTE, sport: 30000 + p, dport: 53 })).verdict === FORWARD) ok++;
    for (let p = 0; p < 3; p++)
      if (run(e, udp({ src: REMOTE, dst: P, sport: 7000 + p, dport: 53 })).verdict === FORWARD) ok++;
    assert.equal(ok, 3);
    assert.equal(e.counters[D_RATE_LIMIT], 2);
  });
});

describe("rule hits in stats and metrics", () => {
  it("masq stats text and the Prometheus counter show every rule with its hits", async () => {
    const e = makeEngine({
      firewall: [
        {
          name: "no dns",
          direction: "outbound",
          action: "drop",
          protocol: "udp",
          destinationPorts: { first: 53, last: 53 },
        },
        { direction: "inbound", action: "accept" },
      ],
    });
    run(e, udp({ src: A, dst: REMOTE, sport: 4000, dport: 53 }));
    run(e, udp({ src: A, dst: REMOTE, sport: 4001, dport: 53 }));
    const fw = e.firewall?.list() ?? [];
    const text = formatStats({
      uptimeSec: 1,
      mode: "pool",
      publicAddresses: [P],
      engine: e.stats(),
      datapath: {},
      device: {},
      firewall: fw,
    });
    assert.match(
      text,
      /firewall rules \(hits\):\n\s+1\. no dns\s+drop\s+2\n\s+2\. inbound accept\s+accept\s+0/,
    );
    const metrics = createMetrics({ engine: () => e.stats(), datapath: () => ({}), firewall: () => fw });
    const prom = await metrics.metrics();
    assert.match(prom, /masq_firewall_rule_hits_total\{rule="1",name="no dns",action="drop"\} 2/);
    assert.match(prom, /masq_drops_total\{reason="firewall_drop"\} 2/);
  });
});
