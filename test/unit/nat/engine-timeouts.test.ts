import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { EXPIRY_BUDGET } from "../../../src/nat/flow-life.ts";
import { icmpEcho, SYN, tcp, u16, udp } from "../../helpers/packets.ts";
import { makeEngine, openOutbound, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";

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
        genericSec: 600,
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
    assert.equal(e.stats().flows, 10_000 - EXPIRY_BUDGET);
    assert.equal(e.timersBehind, true);
    // A packet in the same ms takes none up (a batch shares one clock reading), one a ms later does
    // (unsolicited ones here: dropped, they make no flow).
    const stray = udp({ src: REMOTE, dst: P, sport: 9, dport: 9 });
    assert.equal(run(e, stray, 302_000).verdict, DROP);
    assert.equal(e.stats().flows, 10_000 - EXPIRY_BUDGET);
    run(e, stray, 302_001);
    assert.equal(e.stats().flows, 10_000 - 2 * EXPIRY_BUDGET);
    let calls = 0;
    while (e.timersBehind && calls < 10_000 / EXPIRY_BUDGET + 2) {
      e.tick(302_002);
      calls++;
    }
    assert.equal(e.timersBehind, false);
    assert.equal(e.stats().flows, 0);
    assert.equal(e.stats().mappings, 0);
  });
});
