// GSO super-packets through the datapath, as a vnet TUN with TSO and USO (TUN_F_USO4) hands them
// to masq: one read of up to 64 KB whose L4 checksum holds only the pseudo-header sum, and a
// virtio-net header telling the kernel how to cut it. masq rewrites addresses and ports in place
// and writes the header back unchanged; what the kernel then sends (segmented, checksums
// finished, as test/helpers/gso.ts does it) must be translated datagrams and segments with right
// checksums, carrying the payload unchanged and in order.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Datapath } from "../../../src/datapath/datapath.ts";
import { MemoryIo } from "../../../src/io/memory.ts";
import { SIDE_INSIDE, SIDE_OUTSIDE } from "../../../src/nat/engine.ts";
import {
  decodeVirtioNetHdr,
  emptyVirtioNetHdr,
  VIRTIO_NET_HDR_BYTES,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_UDP_L4,
} from "../../../src/packet/virtio-net.ts";
import { asOffloaded, kernelSegments } from "../../helpers/gso.ts";
import { ACK, checksumProblems, ip, PSH, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { CLIENT_ISN, makeEngine, openOutbound, P, REMOTE, SERVER_ISN } from "../nat/engine-helpers.ts";

const A = "192.168.0.2";

function setup() {
  const engine = makeEngine();
  const inside = new MemoryIo({ headerBytes: VIRTIO_NET_HDR_BYTES });
  const outside = new MemoryIo({ headerBytes: VIRTIO_NET_HDR_BYTES });
  const dp = new Datapath(
    engine,
    [
      { io: inside, side: SIDE_INSIDE },
      { io: outside, side: SIDE_OUTSIDE },
    ],
    () => 5000,
  );
  dp.start();
  return { engine, inside, outside, dp };
}

/** A payload whose every byte says where it is, so a lost, doubled or reordered part shows. */
function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed + (i >>> 8)) & 0xff;
  return b;
}

/** The one packet `io` wrote, its header decoded, and what the kernel sends for it. */
function sentFor(io: MemoryIo) {
  assert.equal(io.written.length, 1, "one write: the super-packet, not its segments");
  const header = decodeVirtioNetHdr(io.written[0], 0, emptyVirtioNetHdr());
  const packet = io.writtenPackets()[0];
  return { header, packet, segments: kernelSegments(header, packet) };
}

function payloadsOf(segments: Uint8Array[], l4Header: number): Uint8Array {
  const parts = segments.map((s) => s.subarray(((s[0] & 15) << 2) + l4Header));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe("GSO super-packets through the datapath (vnet header, TSO and USO)", () => {
  it("a UDP super-packet (GSO_UDP_L4) from the inside leaves as datagrams from the public address, each with a right checksum", () => {
    const { inside, dp } = setup();
    try {
      const data = pattern(5 * 1200 + 345, 1);
      const offloaded = asOffloaded(
        udp({ src: A, dst: REMOTE, sport: 40000, dport: 4433, payload: data }),
        1200,
      );
      inside.pushWithHeader(offloaded.header, offloaded.packet);
      inside.deliver();
      const { header, segments } = sentFor(inside);
      assert.deepEqual(header, offloaded.header, "the header goes back as it came");
      assert.equal(header.gsoType, VIRTIO_NET_HDR_GSO_UDP_L4);
      assert.equal(segments.length, 6);
      const port = u16(segments[0], 20);
      for (const [i, s] of segments.entries()) {
        assert.deepEqual(checksumProblems(s), [], `datagram ${i}`);
        assert.equal(u32(s, 12), ip(P), `datagram ${i} from the public address`);
        assert.equal(u16(s, 20), port, `datagram ${i}: one mapping`);
        assert.equal(u16(s, 24), s.length - 20, `datagram ${i}: its own UDP length`);
      }
      assert.deepEqual(payloadsOf(segments, 8), data);
    } finally {
      dp.stop();
    }
  });

  it("a UDP super-packet from the Internet host to a mapping reaches the inside host as datagrams with right checksums", () => {
    const { inside, outside, dp } = setup();
    try {
      inside.push(udp({ src: A, dst: REMOTE, sport: 40000, dport: 4433 }));
      inside.deliver();
      const port = u16(inside.writtenPackets()[0], 20);
      const data = pattern(3 * 1400 + 1, 2);
      const offloaded = asOffloaded(
        udp({ src: REMOTE, dst: P, sport: 4433, dport: port, payload: data }),
        1400,
      );
      outside.pushWithHeader(offloaded.header, offloaded.packet);
      outside.deliver();
      const { header, segments } = sentFor(outside);
      assert.deepEqual(header, offloaded.header);
      assert.equal(segments.length, 4);
      for (const [i, s] of segments.entries()) {
        assert.deepEqual(checksumProblems(s), [], `datagram ${i}`);
        assert.equal(u32(s, 16), ip(A), `datagram ${i} to the inside host`);
        assert.equal(u16(s, 22), 40000, `datagram ${i} to its port`);
      }
      assert.deepEqual(payloadsOf(segments, 8), data);
    } finally {
      dp.stop();
    }
  });

  it("a TCP super-packet (TSO) of an established connection leaves as segments with right checksums and sequence numbers", () => {
    const { engine, inside, dp } = setup();
    try {
      const port = openOutbound(engine, A, 40001, REMOTE, 443);
      const data = pattern(4 * 1448 + 100, 3);
      const seq = CLIENT_ISN + 1;
      const pkt = tcp({
        src: A,
        dst: REMOTE,
        sport: 40001,
        dport: 443,
        flags: ACK | PSH,
        seq,
        ack: SERVER_ISN + 1,
        payload: data,
      });
      const offloaded = asOffloaded(pkt, 1448);
      inside.pushWithHeader(offloaded.header, offloaded.packet);
      inside.deliver();
      const { header, segments } = sentFor(inside);
      assert.equal(header.gsoType, VIRTIO_NET_HDR_GSO_TCPV4);
      assert.deepEqual(header, offloaded.header);
      assert.equal(segments.length, 5);
      for (const [i, s] of segments.entries()) {
        assert.deepEqual(checksumProblems(s), [], `segment ${i}`);
        assert.equal(u32(s, 12), ip(P));
        assert.equal(u16(s, 20), port);
        assert.equal(u32(s, 24), seq + i * 1448, `segment ${i} sequence number`);
      }
      assert.deepEqual(payloadsOf(segments, 20), data);
    } finally {
      dp.stop();
    }
  });
});
