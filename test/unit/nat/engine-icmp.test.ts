import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { D_ICMP_ERROR_MALFORMED, D_ICMP_ERROR_NO_FLOW } from "../../../src/nat/counters.ts";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { checksumProblems, icmpEcho, icmpError, ip, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

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
