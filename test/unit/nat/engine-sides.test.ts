// The arrival side decides inside from outside, not the source address: a frame from the
// Internet that claims an inside source opens nothing, a packet from the LAN with a foreign
// source never leaves (BCP 38), and the Internet cannot reach an inside address directly.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  C_DROPPED,
  D_INSIDE_ADDRESS_FROM_OUTSIDE,
  D_INSIDE_SOURCE_FROM_OUTSIDE,
  D_SPOOFED_SOURCE,
} from "../../../src/nat/counters.ts";
import { DROP, FORWARD, type NatEngine, SIDE_INSIDE, SIDE_OUTSIDE } from "../../../src/nat/engine.ts";
import { ip, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE } from "./engine-helpers.ts";

const A = "192.168.0.2";

function send(
  e: NatEngine,
  pkt: Uint8Array,
  side: number,
  nowMs = 1000,
): { verdict: number; out: Uint8Array } {
  const buf = new Uint8Array(pkt.length + 16);
  buf.set(pkt, 8);
  const verdict = e.process(buf, 8, pkt.length, nowMs, false, side);
  return { verdict, out: buf.slice(8, 8 + e.outLen) };
}

for (const mode of ["pool", "interface"] as const) {
  describe(`arrival side (${mode} mode)`, () => {
    it("a packet from the outside with an inside source is dropped and creates no mapping", () => {
      const e = makeEngine({ mode, filtering: "endpoint-independent" });
      const forged = udp({ src: A, dst: REMOTE, sport: 5353, dport: 5353 });
      const r = send(e, forged, SIDE_OUTSIDE);
      assert.equal(r.verdict, DROP);
      assert.equal(e.lastDrop, D_INSIDE_SOURCE_FROM_OUTSIDE);
      assert.equal(e.counters[D_INSIDE_SOURCE_FROM_OUTSIDE], 1);
      assert.equal(e.counters[C_DROPPED], 1);
      assert.equal(e.stats().mappings, 0);
      assert.equal(e.stats().flows, 0);
      // Nothing was opened: the port A-box would have had admits nothing (even full cone).
      for (let port = 61000; port <= 61010; port++)
        assert.equal(
          send(e, udp({ src: REMOTE, dst: P, sport: 5353, dport: port }), SIDE_OUTSIDE).verdict,
          DROP,
        );
    });

    it("the same packet from the inside is translated (the side, not the address, decides)", () => {
      const e = makeEngine({ mode });
      const r = send(e, udp({ src: A, dst: REMOTE, sport: 5353, dport: 5353 }), SIDE_INSIDE);
      assert.equal(r.verdict, FORWARD);
      assert.equal(u32(r.out, 12), ip(P));
      const reply = send(e, udp({ src: REMOTE, dst: P, sport: 5353, dport: u16(r.out, 20) }), SIDE_OUTSIDE);
      assert.equal(reply.verdict, FORWARD);
      assert.equal(u32(reply.out, 16), ip(A));
    });

    it("BCP 38: from the inside, a source on no inside network is dropped as spoofed, never sent on", () => {
      const e = makeEngine({ mode });
      for (const spoofed of ["192.0.2.77", "203.0.113.10", P]) {
        const r = send(
          e,
          tcp({ src: spoofed, dst: REMOTE, sport: 1234, dport: 80, flags: SYN }),
          SIDE_INSIDE,
        );
        assert.equal(r.verdict, DROP, spoofed);
        assert.equal(e.lastDrop, D_SPOOFED_SOURCE);
      }
      assert.equal(e.counters[D_SPOOFED_SOURCE], 3);
      assert.equal(e.stats().flows, 0);
    });

    it("from the outside, a packet addressed straight to an inside host is dropped", () => {
      const e = makeEngine({ mode });
      const r = send(e, tcp({ src: REMOTE, dst: A, sport: 1234, dport: 22, flags: SYN }), SIDE_OUTSIDE);
      assert.equal(r.verdict, DROP);
      assert.equal(e.lastDrop, D_INSIDE_ADDRESS_FROM_OUTSIDE);
    });

    it("a later fragment from the outside with an inside source cannot ride on an outbound datagram's state", () => {
      const e = makeEngine({ mode });
      const first = udp({ src: A, dst: REMOTE, sport: 4000, dport: 53, payload: 64, id: 0x1234, mf: true });
      assert.equal(send(e, first, SIDE_INSIDE).verdict, FORWARD);
      const later = udp({ src: A, dst: REMOTE, sport: 0, dport: 0, payload: 16, id: 0x1234, fragOffset: 80 });
      const r = send(e, later, SIDE_OUTSIDE);
      assert.equal(r.verdict, DROP);
      assert.equal(e.lastDrop, D_INSIDE_SOURCE_FROM_OUTSIDE);
      assert.equal(send(e, later, SIDE_INSIDE).verdict, FORWARD, "the real host's fragment still goes");
    });
  });
}
