// The batch prefetch is an optimisation only: whatever it found, processing must give exactly what
// it gives without it, also when the batch is processed out of order, when packets change between
// the prefetch and their processing, and when flows expire and records are reused in between.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { FORWARD, type NatEngine, REPLY } from "../../../src/nat/engine.ts";
import { ACK, SYN, tcp, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { makeEngine, P } from "./engine-helpers.ts";

const SLOT = 128;
const INSIDE = ["192.168.0.2", "192.168.0.3", "192.168.0.4"];
const REMOTES = ["203.0.113.10", "203.0.113.11"];
// In-range inside ports are preserved (RFC 4787), so replies to them can be aimed at live mappings.
const PORTS = [61000, 61001, 61002, 5000];

const packetArb = fc
  .record({
    kind: fc.constantFrom("udp-out", "syn-out", "ack-out", "udp-in", "ack-in"),
    host: fc.integer({ min: 0, max: INSIDE.length - 1 }),
    port: fc.integer({ min: 0, max: PORTS.length - 1 }),
    remote: fc.integer({ min: 0, max: REMOTES.length - 1 }),
    rport: fc.constantFrom(53, 80),
  })
  .map(({ kind, host, port, remote, rport }) => {
    const inside = { src: INSIDE[host], dst: REMOTES[remote], sport: PORTS[port], dport: rport };
    const reply = { src: REMOTES[remote], dst: P, sport: rport, dport: PORTS[port] };
    switch (kind) {
      case "udp-out":
        return udp(inside);
      case "syn-out":
        return tcp({ ...inside, flags: SYN });
      case "ack-out":
        return tcp({ ...inside, flags: ACK });
      case "udp-in":
        return udp(reply);
      default:
        return tcp({ ...reply, flags: SYN | ACK });
    }
  });

const batchArb = fc.record({
  packets: fc.array(packetArb, { minLength: 1, maxLength: 24 }),
  /** Seconds before the batch: some batches come after flows have expired. */
  gapSec: fc.constantFrom(0, 1, 30, 400),
  /** Process in this order (a permutation's keys) instead of the batch's. */
  shuffle: fc.boolean(),
  order: fc.array(fc.integer(), { minLength: 24, maxLength: 24 }),
  /** Overwrite this packet with the next one after the prefetch (-1: none). */
  mutate: fc.integer({ min: -1, max: 23 }),
});

interface Outcome {
  verdict: number;
  bytes: number[];
}

function outcome(e: NatEngine, buf: Uint8Array, off: number, verdict: number): Outcome {
  if (verdict === FORWARD) return { verdict, bytes: [...buf.subarray(off, off + e.outLen)] };
  if (verdict === REPLY) return { verdict, bytes: [...e.replyBuf.subarray(0, e.outLen)] };
  return { verdict, bytes: [] };
}

describe("engine: batch prefetch", () => {
  it("gives exactly the verdicts and bytes of processing without it", () => {
    assertProperty(
      fc.property(fc.array(batchArb, { minLength: 1, maxLength: 12 }), (batches) => {
        const withPrefetch = makeEngine({ maxFlows: 64 });
        const without = makeEngine({ maxFlows: 64 });
        let nowMs = 1000;
        for (const b of batches) {
          nowMs += b.gapSec * 1000;
          const n = b.packets.length;
          const buf = new Uint8Array(n * SLOT);
          const meta = new Uint32Array(n * 2);
          b.packets.forEach((p, k) => {
            buf.set(p, k * SLOT);
            meta[2 * k] = k * SLOT;
            meta[2 * k + 1] = p.length;
          });
          withPrefetch.prefetch(buf, meta, n);
          if (b.mutate >= 0 && b.mutate < n) {
            const next = b.packets[(b.mutate + 1) % n];
            buf.set(next, b.mutate * SLOT);
            meta[2 * b.mutate + 1] = next.length;
          }
          const order = [...Array(n).keys()];
          if (b.shuffle) order.sort((x, y) => b.order[x] - b.order[y] || x - y);
          const copy = buf.slice();
          for (const k of order) {
            const off = meta[2 * k];
            const len = meta[2 * k + 1];
            const a = outcome(withPrefetch, buf, off, withPrefetch.process(buf, off, len, nowMs));
            const c = outcome(without, copy, off, without.process(copy, off, len, nowMs));
            assert.deepEqual(a, c);
          }
        }
      }),
      300,
    );
  });

  it("a candidate whose record was freed and reused by another flow is not taken", () => {
    const e = makeEngine({ maxFlows: 1 });
    const first = udp({ src: INSIDE[0], dst: REMOTES[0], sport: 61000, dport: 53 });
    const second = udp({ src: INSIDE[1], dst: REMOTES[1], sport: 61001, dport: 53 });
    const buf = new Uint8Array(SLOT);
    buf.set(first);
    assert.equal(e.process(buf, 0, first.length, 1000), FORWARD);
    // Prefetch the first flow's next packet, then let the flow expire and its record be reused.
    buf.set(first);
    e.prefetch(buf, Uint32Array.of(0, first.length), 1);
    const other = new Uint8Array(SLOT);
    other.set(second);
    assert.equal(e.process(other, 0, second.length, 1000 + 400_000), FORWARD);
    assert.equal(e.flowTable.count, 1);
    // The first flow's packet must not ride on the second flow's record: the table is full.
    assert.notEqual(e.process(buf, 0, first.length, 1000 + 400_000), FORWARD);
    assert.deepEqual(e.flows()[0].inside, { addr: INSIDE[1], port: 61001 });
  });
});
