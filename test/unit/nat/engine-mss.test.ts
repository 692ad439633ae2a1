// MSS clamping (issue 11 part 2): SYNs leaving by the outside interface carry at most its MTU − 40,
// SYNs and SYN-ACKs leaving by an inside one at most the inside MTU − 40, as iptables TCPMSS
// --clamp-mss-to-pmtu does; the TCP checksum is updated incrementally (RFC 1624), and an option
// list that does not parse is left alone.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { EngineConfig } from "../../../src/nat/config.ts";
import { C_MSS_CLAMPED } from "../../../src/nat/counters.ts";
import { FORWARD } from "../../../src/nat/engine.ts";
import { ACK, checksumProblems, ip, SYN, tcp, u16, u32 } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
/** A PPPoE WAN behind a smaller-than-Ethernet LAN, so the two directions differ. */
const MTUS: Partial<EngineConfig> = { outsideMtu: 1492, insideMtu: 1400 };
const mssOpt = (mss: number) => [2, 4, mss >>> 8, mss & 0xff];
/** What Linux sends: MSS, SACK permitted, timestamps, NOP, window scale. */
const linuxOptions = (mss: number) => [...mssOpt(mss), 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];

/** The MSS option's value in the options of the TCP segment of `pkt`, or undefined. */
function mssOf(pkt: Uint8Array): number | undefined {
  const l4 = (pkt[0] & 15) << 2;
  const end = l4 + ((pkt[l4 + 12] >>> 4) << 2);
  for (let i = l4 + 20; i < end; ) {
    if (pkt[i] === 0) return undefined;
    if (pkt[i] === 1) {
      i++;
      continue;
    }
    if (pkt[i] === 2) return u16(pkt, i + 2);
    i += pkt[i + 1];
  }
  return undefined;
}

const outSyn = (tcpOptions: number[], sport = 40000) =>
  tcp({ src: A, dst: REMOTE, sport, dport: 80, flags: SYN, tcpOptions });

describe("MSS clamping, pmtu (the default)", () => {
  it("lowers an outbound SYN's MSS to the outside MTU − 40 and counts it; the checksum stays right", () => {
    const e = makeEngine(MTUS);
    const r = run(e, outSyn(linuxOptions(1460)));
    assert.equal(r.verdict, FORWARD);
    assert.equal(mssOf(r.out), 1452);
    assert.deepEqual(checksumProblems(r.out), []);
    assert.equal(e.counters[C_MSS_CLAMPED], 1);
    assert.equal(e.stats().counters.mss_clamped, 1);
  });

  it("leaves an MSS already at or below the limit alone, and a SYN without the option", () => {
    const e = makeEngine(MTUS);
    for (const [i, opts] of [linuxOptions(1452), linuxOptions(536), [1, 3, 3, 7]].entries()) {
      const pkt = outSyn(opts, 40000 + i);
      const r = run(e, pkt);
      assert.equal(r.verdict, FORWARD);
      assert.deepEqual(r.out.subarray(40, pkt.length), pkt.subarray(40), "options untouched");
      assert.deepEqual(checksumProblems(r.out), []);
    }
    assert.equal(e.counters[C_MSS_CLAMPED], 0);
  });

  it("lowers the SYN-ACK of an outbound connection to the inside MTU − 40", () => {
    const e = makeEngine(MTUS);
    const port = u16(run(e, outSyn(linuxOptions(1360))).out, 20);
    const synAck = tcp({
      src: REMOTE,
      dst: P,
      sport: 80,
      dport: port,
      flags: SYN | ACK,
      ack: 1001,
      tcpOptions: linuxOptions(1460),
    });
    const r = run(e, synAck);
    assert.equal(r.verdict, FORWARD);
    assert.equal(mssOf(r.out), 1360);
    assert.deepEqual(checksumProblems(r.out), []);
  });

  it("lowers a forwarded (inbound) SYN to the inside MTU − 40, and the inside server's SYN-ACK to the outside's", () => {
    const e = makeEngine(MTUS);
    e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 8080, origin: "forward" });
    const syn = run(
      e,
      tcp({ src: REMOTE, dst: P, sport: 5555, dport: 8080, flags: SYN, tcpOptions: mssOpt(1460) }),
    );
    assert.equal(syn.verdict, FORWARD);
    assert.equal(mssOf(syn.out), 1360);
    assert.deepEqual(checksumProblems(syn.out), []);
    const synAck = tcp({
      src: A,
      dst: REMOTE,
      sport: 80,
      dport: 5555,
      flags: SYN | ACK,
      tcpOptions: mssOpt(1360),
    });
    const back = run(e, synAck);
    assert.equal(back.verdict, FORWARD);
    assert.equal(mssOf(back.out), 1360, "already below the outside's 1452");
    assert.equal(e.counters[C_MSS_CLAMPED], 1);
  });

  it("clamps a hairpinned SYN to the inside MTU − 40: it leaves by the inside interface", () => {
    const e = makeEngine({ ...MTUS, filtering: "endpoint-independent" });
    const bPort = u16(run(e, tcp({ src: B, dst: REMOTE, sport: 8080, dport: 80, flags: SYN })).out, 20);
    const r = run(
      e,
      tcp({ src: A, dst: P, sport: 7000, dport: bPort, flags: SYN, tcpOptions: mssOpt(1460) }),
    );
    assert.equal(r.verdict, FORWARD);
    assert.equal(u32(r.out, 16), ip(B));
    assert.equal(mssOf(r.out), 1360);
    assert.deepEqual(checksumProblems(r.out), []);
  });

  it("touches only SYNs: an ACK carrying an MSS option passes unchanged", () => {
    const e = makeEngine(MTUS);
    const port = u16(run(e, outSyn(mssOpt(1400))).out, 20);
    run(e, tcp({ src: REMOTE, dst: P, sport: 80, dport: port, flags: SYN | ACK, seq: 5000, ack: 1001 }));
    const ack = tcp({
      src: A,
      dst: REMOTE,
      sport: 40000,
      dport: 80,
      flags: ACK,
      seq: 1001,
      ack: 5001,
      tcpOptions: mssOpt(9000),
    });
    const r = run(e, ack);
    assert.equal(r.verdict, FORWARD);
    assert.equal(mssOf(r.out), 9000);
  });

  it("follows the MTUs the engine is given later (a link event)", () => {
    const e = makeEngine(MTUS);
    e.setMtus(1500, 1280);
    assert.equal(mssOf(run(e, outSyn(mssOpt(1460))).out), 1240);
    assert.equal(e.mssClamp.outbound, 1240);
    assert.equal(e.mssClamp.inbound, 1460);
  });
});

describe("MSS clamping, odd option layouts", () => {
  const clampedTo1452 = (opts: number[]) => {
    const e = makeEngine(MTUS);
    const r = run(e, outSyn(opts));
    assert.equal(r.verdict, FORWARD);
    assert.deepEqual(checksumProblems(r.out), [], `options ${opts}`);
    return mssOf(r.out);
  };

  it("an MSS at an odd offset (after a NOP): clamped, checksum right", () => {
    assert.equal(clampedTo1452([1, ...mssOpt(1460), 1, 1, 1]), 1452);
    assert.equal(clampedTo1452([1, 1, 1, ...mssOpt(65535), 1]), 1452);
  });

  it("an MSS after the other options: clamped", () => {
    assert.equal(clampedTo1452([4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 3, 3, 7, ...mssOpt(1460)]), 1452);
  });

  it("an MSS after end-of-options is padding, not an option: left alone", () => {
    const e = makeEngine(MTUS);
    const pkt = outSyn([0, 0, 0, 0, ...mssOpt(1460)]);
    const r = run(e, pkt);
    assert.equal(r.verdict, FORWARD);
    assert.deepEqual(r.out.subarray(40, pkt.length), pkt.subarray(40));
    assert.equal(e.counters[C_MSS_CLAMPED], 0);
  });

  for (const [what, opts] of [
    ["an option of length 0 before the MSS", [1, 1, 8, 0, ...mssOpt(1460)]],
    ["an option of length 1", [...mssOpt(1460), 8, 1, 0, 0]],
    ["an option running past the header", [...mssOpt(1460), 8, 10, 0, 0]],
    ["an MSS option of length 3", [2, 3, 0x05, 1, 1, 1, 1, 1]],
    ["an MSS option of length 5", [2, 5, 0x05, 0xb4, 0, 1, 1, 1]],
    ["two MSS options", [...mssOpt(1460), ...mssOpt(1460)]],
    ["a kind in the last byte without its length", [...mssOpt(1460), 1, 1, 1, 8]],
  ] as Array<[string, number[]]>) {
    it(`${what}: the packet passes untouched`, () => {
      const e = makeEngine(MTUS);
      const pkt = outSyn(opts);
      const r = run(e, pkt);
      assert.equal(r.verdict, FORWARD);
      assert.deepEqual(r.out.subarray(40, pkt.length), pkt.subarray(40), "options untouched");
      assert.deepEqual(checksumProblems(r.out), []);
      assert.equal(e.counters[C_MSS_CLAMPED], 0);
    });
  }

  it("any option bytes: the SYN is forwarded with a right checksum, and only its MSS may change, to at most the limit", () => {
    assertProperty(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), fc.boolean(), (opts, withMss) => {
        const bytes = withMss ? [...mssOpt(1460), ...opts].slice(0, 40) : [...opts];
        const e = makeEngine(MTUS);
        const pkt = outSyn(bytes);
        const r = run(e, pkt);
        assert.equal(r.verdict, FORWARD);
        assert.deepEqual(checksumProblems(r.out), []);
        const changed: number[] = [];
        for (let i = 40; i < pkt.length; i++) if (r.out[i] !== pkt[i]) changed.push(i);
        if (changed.length > 0) {
          assert.equal(e.counters[C_MSS_CLAMPED], 1);
          assert.ok(changed.length <= 2 && changed[changed.length - 1] - changed[0] <= 1, `${changed}`);
          assert.ok(mssOf(r.out)! <= 1452);
        } else assert.equal(e.counters[C_MSS_CLAMPED], 0);
      }),
      300,
    );
  });
});

describe("MSS clamping settings", () => {
  it('"off" leaves every SYN alone', () => {
    const e = makeEngine({ ...MTUS, mssClamp: "off" });
    assert.equal(mssOf(run(e, outSyn(mssOpt(1460))).out), 1460);
    assert.equal(e.counters[C_MSS_CLAMPED], 0);
  });

  it("a number clamps both directions to it", () => {
    const e = makeEngine({ ...MTUS, mssClamp: 1300 });
    const out = run(e, outSyn(mssOpt(1460))).out;
    assert.equal(mssOf(out), 1300);
    const synAck = tcp({
      src: REMOTE,
      dst: P,
      sport: 80,
      dport: u16(out, 20),
      flags: SYN | ACK,
      ack: 1001,
      tcpOptions: mssOpt(1460),
    });
    assert.equal(mssOf(run(e, synAck).out), 1300);
    // A link event changes nothing when the number is fixed.
    e.setMtus(9000, 9000);
    assert.equal(mssOf(run(e, outSyn(mssOpt(1460), 40001)).out), 1300);
  });

  it("a partial checksum (virtio-net NEEDS_CSUM) is not adjusted for the option: it covers no header bytes", () => {
    const field = (mss: number) => {
      const e = makeEngine(MTUS);
      const pkt = outSyn(mssOpt(mss));
      const buf = new Uint8Array(pkt);
      // What a NEEDS_CSUM packet carries: a pseudo-header sum (any value, the same in both).
      buf[36] = 0x12;
      buf[37] = 0x34;
      assert.equal(e.process(buf, 0, buf.length, 1000, true), FORWARD);
      return { check: u16(buf, 36), mss: mssOf(buf) };
    };
    const clamped = field(1460);
    const untouched = field(1400);
    assert.equal(clamped.mss, 1452);
    assert.equal(untouched.mss, 1400);
    // Both got the same address and port adjustment and nothing else.
    assert.equal(clamped.check, untouched.check);
  });
});
