// The gateway's own ICMP errors about packets masq translated (issue 17 item 3): with the WAN at
// MTU 1492 (PPPoE) and the LAN at 1500, forwarding a translated full-size packet makes the
// gateway's kernel send fragmentation-needed to the packet's source, masq's public address. The
// kernel picks the error's source itself: the TUN has no address, so it takes the first address
// it finds, often the LAN's (192.168.0.1). masq must translate the error back to the inside host
// (RFC 5508 REQ-3) and not take it for a forgery from the Internet (an inside source arriving on
// the outside) nor, by address, for an inside host's own error (icmp_error_no_flow).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  D_ICMP_ERROR_NO_FLOW,
  D_INSIDE_SOURCE_FROM_OUTSIDE,
  D_SPOOFED_SOURCE,
} from "../../../src/nat/counters.ts";
import {
  DROP,
  FORWARD,
  type NatEngine,
  SIDE_BY_ADDRESS,
  SIDE_INSIDE,
  SIDE_OUTSIDE,
} from "../../../src/nat/engine.ts";
import { fold, pseudoHeaderSum, readU16, writeU16 } from "../../../src/packet/checksum.ts";
import { ACK, checksumProblems, icmpEcho, icmpError, ip, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, openOutbound, P, REMOTE } from "./engine-helpers.ts";

const A = "192.168.0.2";
/** The gateway's address on the LAN. */
const GW_LAN = "192.168.0.1";
/** Pool mode: the gateway's own WAN address (the pool address P is no interface's). */
const GW_WAN_POOL = "198.51.100.3";
/** What the kernel quotes: as much of the packet as fits in 576 bytes (RFC 1812 4.3.2.3). */
const KERNEL_QUOTE = 576 - 28;

function send(
  e: NatEngine,
  pkt: Uint8Array,
  side: number,
  l4Partial = false,
): { verdict: number; out: Uint8Array } {
  const buf = new Uint8Array(pkt.length + 16);
  buf.set(pkt, 8);
  const verdict = e.process(buf, 8, pkt.length, 1000, l4Partial, side);
  return { verdict, out: buf.slice(8, 8 + e.outLen) };
}

/** The gateway's fragmentation-needed (MTU 1492) about `translated`, as its kernel sends it. */
const fragNeeded = (from: string, translated: Uint8Array) =>
  icmpError({ from, to: P, type: 3, code: 4, quoted: translated, quoteLen: KERNEL_QUOTE, mtu: 1492 });

for (const mode of ["interface", "pool"] as const) {
  const gwWan = mode === "interface" ? P : GW_WAN_POOL;
  const engine = () => makeEngine({ mode, gateway: [ip(GW_LAN), ip(gwWan)] });

  for (const side of [SIDE_OUTSIDE, SIDE_BY_ADDRESS]) {
    const where = side === SIDE_OUTSIDE ? "arriving on the outside TUN" : "by address (no arrival side)";

    describe(`the gateway's own ICMP errors, ${mode} mode, ${where}`, () => {
      /** Checks `out` is `err` translated back to A (quoted source A:inPort), from the gateway's LAN address. */
      function assertBackToA(out: Uint8Array, inPort: number, quotedProto: number) {
        assert.equal(u32(out, 12), ip(GW_LAN), "from the gateway's address on A-box's network");
        assert.equal(u32(out, 16), ip(A), "to the inside host");
        assert.equal(out[8], 65, "TTL 64 plus the hop forwarding it to the LAN takes");
        assert.deepEqual([out[20], out[21], u16(out, 26)], [3, 4, 1492], "type, code and MTU untouched");
        const q = out.subarray(28);
        assert.equal(q[9], quotedProto);
        assert.equal(u32(q, 12), ip(A), "quoted source: the inside host");
        assert.equal(u32(q, 16), ip(REMOTE));
        assert.equal(u16(q, quotedProto === 1 ? 24 : 20), inPort, "quoted source port (echo identifier)");
        assert.ok((q[6] & 0x40) !== 0, "quoted DF kept");
        assert.deepEqual(checksumProblems(out), []);
      }

      it("fragmentation-needed quoting a TCP segment, from its LAN address: to the inside host, counted", () => {
        const e = engine();
        openOutbound(e, A, 40000, REMOTE, 9000);
        const seg = send(
          e,
          tcp({
            src: A,
            dst: REMOTE,
            sport: 40000,
            dport: 9000,
            flags: ACK,
            seq: 1001,
            df: true,
            payload: 1448,
          }),
          SIDE_INSIDE,
        ).out;
        const r = send(e, fragNeeded(GW_LAN, seg), side);
        assert.equal(r.verdict, FORWARD);
        assertBackToA(r.out, 40000, 6);
        const c = e.stats().counters;
        assert.equal(c.gateway_icmp_errors_translated, 1);
        assert.equal(c.icmp_errors_translated, 1);
        assert.equal(c.dropped, 0);
      });

      it("fragmentation-needed quoting a UDP datagram (tracepath's probe), from the WAN address: sent from the LAN address", () => {
        const e = engine();
        const probe = send(
          e,
          udp({ src: A, dst: REMOTE, sport: 44000, dport: 44444, df: true, ttl: 2, payload: 1472 }),
          SIDE_INSIDE,
        ).out;
        const r = send(e, fragNeeded(gwWan, probe), side);
        assert.equal(r.verdict, FORWARD);
        assertBackToA(r.out, 44000, 17);
      });

      it("fragmentation-needed quoting an ICMP echo (ping -M do -s 1472): back to the inside identifier", () => {
        const e = engine();
        const ping = send(
          e,
          icmpEcho({ src: A, dst: REMOTE, id: 77, df: true, payload: 1472 }),
          SIDE_INSIDE,
        ).out;
        const r = send(e, fragNeeded(GW_LAN, ping), side);
        assert.equal(r.verdict, FORWARD);
        assertBackToA(r.out, 77, 1);
      });

      it("a quoted GSO super-packet (offloads: 64 KB, a partial checksum) is translated like its first segment", () => {
        const e = engine();
        openOutbound(e, A, 40001, REMOTE, 9000);
        const big = tcp({
          src: A,
          dst: REMOTE,
          sport: 40001,
          dport: 9000,
          flags: ACK,
          seq: 1001,
          df: true,
          payload: 64_000,
        });
        // As the kernel hands it over with a virtio-net header: NEEDS_CSUM, the checksum field
        // holding the pseudo-header sum only.
        writeU16(big, 36, partialSum(big));
        const seg = send(e, big, SIDE_INSIDE, true).out;
        assert.equal(readU16(seg, 36), partialSum(seg), "masq wrote it with its partial sum adjusted");
        const r = send(e, fragNeeded(GW_LAN, seg), side);
        assert.equal(r.verdict, FORWARD);
        assertBackToA(r.out, 40001, 6);
        assert.equal(u16(r.out, 28 + 2), 64_040, "the quoted length is the super-packet's, as quoted");
        assert.equal(r.out.length, 576);
      });
    });
  }

  describe(`the gateway's own ICMP errors, ${mode} mode: what is not one`, () => {
    it("from another inside address on the outside: a forgery, dropped, nothing translated", () => {
      const e = engine();
      const probe = send(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 53, df: true }), SIDE_INSIDE).out;
      const r = send(e, fragNeeded("192.168.0.9", probe), SIDE_OUTSIDE);
      assert.equal(r.verdict, DROP);
      assert.equal(e.lastDrop, D_INSIDE_SOURCE_FROM_OUTSIDE);
      assert.equal(e.stats().counters.icmp_errors_translated, 0);
    });

    it("from the gateway's addresses but arriving from the LAN: the LAN's rules apply", () => {
      const e = engine();
      const probe = send(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 53, df: true }), SIDE_INSIDE).out;
      // Its LAN address: an inside host's error about an inbound packet, which this is not.
      assert.equal(send(e, fragNeeded(GW_LAN, probe), SIDE_INSIDE).verdict, DROP);
      assert.equal(e.lastDrop, D_ICMP_ERROR_NO_FLOW);
      assert.equal(send(e, fragNeeded(gwWan, probe), SIDE_INSIDE).verdict, DROP);
      assert.equal(e.lastDrop, D_SPOOFED_SOURCE);
      assert.equal(e.stats().counters.gateway_icmp_errors_translated, 0);
    });

    it("about no flow of masq's: interface mode hands it back to the gateway's stack unchanged, pool mode drops it", () => {
      const e = engine();
      // The gateway's own UDP to a closed port of its own address: port unreachable, P to P.
      const own = udp({ src: P, dst: P, sport: 40000, dport: 5999 });
      const err = icmpError({ from: P, to: P, type: 3, code: 3, quoted: own });
      const r = send(e, err, SIDE_OUTSIDE);
      if (mode === "interface") {
        assert.equal(r.verdict, FORWARD);
        assert.deepEqual(r.out.subarray(12), err.subarray(12), "addresses and the quote as they were");
        assert.equal(e.stats().counters.passthrough, 1);
      } else {
        assert.equal(r.verdict, DROP);
        assert.equal(e.lastDrop, D_ICMP_ERROR_NO_FLOW);
      }
    });

    it("without the gateway's addresses (replay): dropped as before, by side or by address", () => {
      const e = makeEngine({ mode });
      const probe = send(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 53, df: true }), SIDE_INSIDE).out;
      assert.equal(send(e, fragNeeded(GW_LAN, probe), SIDE_OUTSIDE).verdict, DROP);
      assert.equal(e.lastDrop, D_INSIDE_SOURCE_FROM_OUTSIDE);
      // By address, an inside source makes it an inside host's error about an inbound packet:
      // what pool mode did before the arrival sides, the drop issue 17 reported.
      assert.equal(send(e, fragNeeded(GW_LAN, probe), SIDE_BY_ADDRESS).verdict, DROP);
      assert.equal(e.lastDrop, D_ICMP_ERROR_NO_FLOW);
    });
  });
}

describe("the gateway's own ICMP errors: the source the inside host sees", () => {
  it("the gateway's address on the host's own network, else on another inside network, else the kernel's", () => {
    const probeFrom = (e: NatEngine, host: string) =>
      send(e, udp({ src: host, dst: REMOTE, sport: 44000, dport: 53, df: true }), SIDE_INSIDE).out;
    const inside = [
      { addr: ip("192.168.0.0"), len: 24 },
      { addr: ip("10.1.0.0"), len: 16 },
    ];
    const e = makeEngine({ mode: "interface", inside, gateway: [ip(P), ip("10.1.0.1"), ip(GW_LAN)] });
    for (const [host, from] of [
      [A, GW_LAN],
      ["10.1.7.7", "10.1.0.1"],
    ])
      assert.equal(u32(send(e, fragNeeded(P, probeFrom(e, host)), SIDE_OUTSIDE).out, 12), ip(from), host);
    // 10.2.0.0/16 is routed behind an inside router: the gateway has no address on it.
    const routed = makeEngine({
      mode: "interface",
      inside: [...inside, { addr: ip("10.2.0.0"), len: 16 }],
      gateway: [ip(P), ip(GW_LAN)],
    });
    const r = send(routed, fragNeeded(P, probeFrom(routed, "10.2.3.4")), SIDE_OUTSIDE);
    assert.equal(u32(r.out, 12), ip(GW_LAN));
    assert.deepEqual(checksumProblems(r.out), []);
    // No inside address at all: the kernel's choice stays.
    const bare = makeEngine({ mode: "interface", gateway: [ip(P)] });
    const kept = send(bare, fragNeeded(P, probeFrom(bare, A)), SIDE_OUTSIDE);
    assert.equal(kept.verdict, FORWARD);
    assert.equal(u32(kept.out, 12), ip(P));
    assert.equal(u32(kept.out, 16), ip(A));
  });
});

/** The pseudo-header sum a NEEDS_CSUM TCP segment carries in its checksum field. */
function partialSum(pkt: Uint8Array): number {
  return fold(pseudoHeaderSum(u32(pkt, 12), u32(pkt, 16), 6, readU16(pkt, 2) - 20));
}
