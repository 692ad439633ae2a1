import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { D_FILTERED, D_NO_MAPPING } from "../../../src/nat/counters.ts";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { checksumProblems, ip, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";

describe("pinned mappings (forwards, port mappings, ALG expectations)", () => {
  it("a forward admits unsolicited inbound TCP to its exact outside port and translates it to the inside host", () => {
    const e = makeEngine({ filtering: "address-port-dependent" });
    const r = e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 8080, origin: "forward" });
    assert.ok("id" in r, JSON.stringify(r));
    assert.equal(r.outPort, 8080);
    const { verdict, out } = run(e, tcp({ src: REMOTE, dst: P, sport: 5555, dport: 8080, flags: SYN }));
    assert.equal(verdict, FORWARD);
    assert.equal(u32(out, 16), ip(A));
    assert.equal(u16(out, 22), 80);
    assert.deepEqual(checksumProblems(out), []);
    // The inside server's answer leaves from the forwarded port.
    const back = run(e, tcp({ src: A, dst: REMOTE, sport: 80, dport: 5555, flags: SYN | 0x10 })).out;
    assert.equal(u16(back, 20), 8080);
  });

  it("hairpinning to a forwarded port (RFC 5382 REQ-8): an inside host reaches another through the public address", () => {
    const e = makeEngine();
    e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 80, origin: "forward" });
    const { verdict, out } = run(e, tcp({ src: B, dst: P, sport: 40000, dport: 80, flags: SYN }));
    assert.equal(verdict, FORWARD);
    assert.equal(u32(out, 12), ip(P));
    assert.equal(u32(out, 16), ip(A));
    assert.equal(u16(out, 22), 80);
  });

  it("an expectation admits only its remote, only once, and lapses on time", () => {
    const e = makeEngine({ filtering: "address-port-dependent" });
    run(e, udp({ src: A, dst: REMOTE, sport: 1, dport: 1 }), 1000); // start the clock
    const r = e.pinMapping({
      proto: "tcp",
      inAddr: ip(A),
      inPort: 40020,
      remoteAddr: ip(REMOTE),
      oneShot: true,
      expiresAtSec: e.clockSec + 30,
      origin: "ftp",
    });
    assert.ok("id" in r);
    const other = run(e, tcp({ src: "203.0.113.77", dst: P, sport: 20, dport: r.outPort, flags: SYN }));
    assert.equal(other.verdict, DROP);
    assert.equal(e.lastDrop, D_FILTERED);
    const ok = run(e, tcp({ src: REMOTE, dst: P, sport: 20, dport: r.outPort, flags: SYN }));
    assert.equal(ok.verdict, FORWARD);
    assert.equal(e.pinList().length, 0, "one-shot pin consumed");
    const second = run(e, tcp({ src: REMOTE, dst: P, sport: 21, dport: r.outPort, flags: SYN }));
    assert.equal(second.verdict, DROP, "a second connection is not admitted");

    const r2 = e.pinMapping({
      proto: "udp",
      inAddr: ip(B),
      inPort: 5000,
      expiresAtSec: e.clockSec + 5,
      origin: "pcp",
    });
    assert.ok("id" in r2);
    assert.equal(e.pinList().length, 1);
    e.tick(1000 + 6000);
    assert.equal(e.pinList().length, 0, "expired");
    const late = run(e, udp({ src: REMOTE, dst: P, sport: 9, dport: r2.outPort }), 7000);
    assert.equal(late.verdict, DROP);
    assert.equal(e.lastDrop, D_NO_MAPPING, "the mapping went with its pin");
  });

  it("refuses a port in use, a second outside port for a mapped endpoint, and a non-inside address", () => {
    const e = makeEngine();
    const a = e.pinMapping({ proto: "udp", inAddr: ip(A), inPort: 53, outPort: 5353, origin: "forward" });
    assert.ok("id" in a);
    const taken = e.pinMapping({ proto: "udp", inAddr: ip(B), inPort: 53, outPort: 5353, origin: "forward" });
    assert.ok("error" in taken && /in use/.test(taken.error));
    const again = e.pinMapping({ proto: "udp", inAddr: ip(A), inPort: 53, outPort: 5354, origin: "forward" });
    assert.ok("error" in again && /already mapped/.test(again.error));
    const foreign = e.pinMapping({ proto: "udp", inAddr: ip("10.9.9.9"), inPort: 1, origin: "forward" });
    assert.ok("error" in foreign);
    assert.ok(e.unpin(a.id));
    assert.equal(e.stats().mappings, 0);
  });
});

describe("port allocation seed (RFC 6056)", () => {
  const firstPorts = (seed: number) => {
    const e = makeEngine({ portSeed: seed });
    // One inside port from four hosts: the first keeps it, the others get ports the seed picks.
    return [2, 3, 4, 5].map((i) =>
      u16(run(e, udp({ src: `192.168.0.${i}`, dst: REMOTE, sport: 5000, dport: 53 })).out, 20),
    );
  };
  it("the same seed allocates the same ports (replay); another seed others (unpredictable per run)", () => {
    assert.deepEqual(firstPorts(7), firstPorts(7));
    assert.notDeepEqual(firstPorts(7), firstPorts(8));
  });
});
