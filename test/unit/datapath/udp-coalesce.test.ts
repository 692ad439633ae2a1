// The write side's GRO (src/datapath/udp-coalesce.ts): a batch of datagrams as the datapath writes
// them is merged, then each packet is put together as the native writev puts it (its pieces in
// order) and cut by a model of the kernel's segmentation (test/helpers/gso.ts). What comes out
// must be exactly the datagrams that went in, checksums finished, in order: merging is invisible
// on the wire. Where segmentation cannot give back the same datagrams, nothing is merged.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { coalesceUdpWrites, MAX_COALESCED, WRITE_APPEND } from "../../../src/datapath/udp-coalesce.ts";
import { tryLoadAddon } from "../../../src/io/addon.ts";
import { checksum, diff16, fold, readU16, sumWords, writeU16 } from "../../../src/packet/checksum.ts";
import { IPPROTO_UDP } from "../../../src/packet/ipv4.ts";
import {
  decodeVirtioNetHdr,
  emptyVirtioNetHdr,
  encodeVirtioNetHdr,
  VIRTIO_NET_HDR_BYTES,
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  type VirtioNetHdr,
} from "../../../src/packet/virtio-net.ts";
import { asOffloaded, kernelSegments } from "../../helpers/gso.ts";
import { v6 } from "../../helpers/ipv6-packets.ts";
import { checksumProblems, type IpOpts, tcp, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";

const H = VIRTIO_NET_HDR_BYTES;
const FLOW = { src: "198.51.100.1", dst: "203.0.113.9", sport: 40000, dport: 9, df: true };

type Opts = IpOpts & { sport: number; dport: number; payload?: Uint8Array | number };

/** A datagram with a full checksum and the header it would carry: NEEDS_CSUM (as read) or DATA_VALID. */
function packet(o: Opts, valid = false): { header: VirtioNetHdr; packet: Uint8Array } {
  const full = udp(o);
  if (valid) return { header: { ...emptyVirtioNetHdr(), flags: VIRTIO_NET_HDR_F_DATA_VALID }, packet: full };
  return asOffloaded(full, 0);
}

/** Datagram `i` of a run: a payload that says which it is and where each byte belongs. */
function payload(i: number, size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, k) => (i * 31 + k * 7) & 0xff);
}

/** The batch as the datapath hands it to writeBatch: one buffer, (offset, length) pairs. */
function batch(items: { header: VirtioNetHdr; packet: Uint8Array }[]) {
  const size = items.reduce((n, p) => n + H + p.packet.length, 0);
  const buf = new Uint8Array(size + 64);
  const meta = new Uint32Array(items.length * 2);
  let off = 7; // not at 0, so offsets are exercised
  items.forEach((p, k) => {
    encodeVirtioNetHdr(p.header, buf, off);
    buf.set(p.packet, off + H);
    meta[2 * k] = off;
    meta[2 * k + 1] = H + p.packet.length;
    off += H + p.packet.length;
  });
  return { buf, meta, count: items.length };
}

/** What the native side writes (each packet's pieces joined) and the kernel then sends. */
function onTheWire(
  buf: Uint8Array,
  meta: Uint32Array,
  count: number,
): { sent: Uint8Array[]; writes: number } {
  const packets: number[][] = [];
  for (let k = 0; k < count; k++) {
    const off = meta[2 * k];
    const len = meta[2 * k + 1] & ~WRITE_APPEND;
    const piece = Array.from(buf.subarray(off, off + len));
    if ((meta[2 * k + 1] & WRITE_APPEND) !== 0) {
      assert.ok(packets.length > 0, "an append with no packet before it");
      packets[packets.length - 1].push(...piece);
    } else packets.push(piece);
  }
  const sent: Uint8Array[] = [];
  for (const p of packets) {
    const bytes = Uint8Array.from(p);
    const header = decodeVirtioNetHdr(bytes, 0, emptyVirtioNetHdr());
    const ipPart = bytes.subarray(H);
    if (ipPart[0] >>> 4 === 6) {
      assert.equal(readU16(ipPart, 4) + 40, ipPart.length, "the IPv6 payload length is the packet's");
      sent.push(...kernelSegments6(header, ipPart));
      continue;
    }
    assert.equal(readU16(ipPart, 2), ipPart.length, "the IP length is the packet's");
    // Only the IP header's checksum is whole in a super-packet (its UDP one is a partial sum).
    assert.equal(checksum(ipPart, 0, (ipPart[0] & 15) << 2), 0, "the IP checksum");
    sent.push(...kernelSegments(header, ipPart));
  }
  return { sent, writes: packets.length };
}

/** The datagrams as a receiver sees them (every checksum finished). */
function expected(items: { header: VirtioNetHdr; packet: Uint8Array }[]): Uint8Array[] {
  return items.flatMap((p) =>
    p.packet[0] >>> 4 === 6 ? kernelSegments6(p.header, p.packet) : kernelSegments(p.header, p.packet),
  );
}

const V6 = { src: "2001:db8:1::2", dst: "2001:db8:ffff::9", sport: 40000, dport: 9 };

/** The IPv6 pseudo-header's sum (RFC 8200 §8.1) for a UDP length. */
function pseudo6(b: Uint8Array, udpLen: number): number {
  return sumWords(b, 8, 32, IPPROTO_UDP + udpLen);
}

/** An IPv6 UDP datagram with a full checksum, behind NEEDS_CSUM (as read) or DATA_VALID. */
function packet6(
  o: { src: string; dst: string; sport: number; dport: number; payload: Uint8Array; flowLabel?: number },
  valid = false,
): { header: VirtioNetHdr; packet: Uint8Array } {
  const l4 = new Uint8Array(8 + o.payload.length);
  writeU16(l4, 0, o.sport);
  writeU16(l4, 2, o.dport);
  writeU16(l4, 4, l4.length);
  l4.set(o.payload, 8);
  const b = v6(o.src, o.dst, IPPROTO_UDP, l4);
  b[3] = o.flowLabel ?? 0x42;
  let ck = checksum(b, 40, l4.length, pseudo6(b, l4.length));
  if (ck === 0) ck = 0xffff;
  writeU16(b, 46, ck);
  if (valid) return { header: { ...emptyVirtioNetHdr(), flags: VIRTIO_NET_HDR_F_DATA_VALID }, packet: b };
  writeU16(b, 46, fold(pseudo6(b, l4.length)));
  return {
    header: { flags: 1, gsoType: 0, hdrLen: 48, gsoSize: 0, csumStart: 40, csumOffset: 6 },
    packet: b,
  };
}

/** What the kernel sends for an IPv6 UDP packet behind `h`: cut into datagrams, checksums finished. */
function kernelSegments6(h: VirtioNetHdr, pkt: Uint8Array): Uint8Array[] {
  const finish = (d: Uint8Array) => {
    if ((h.flags & 1) === 0) return d;
    assert.equal(h.csumStart, 40);
    assert.equal(h.csumOffset, 6);
    let ck = checksum(d, 40, d.length - 40, 0);
    if (ck === 0) ck = 0xffff;
    writeU16(d, 46, ck);
    return d;
  };
  if (h.gsoType === 0) return [finish(pkt.slice())];
  assert.equal(h.gsoType, VIRTIO_NET_HDR_GSO_UDP_L4);
  const superLen = pkt.length - 40;
  const out: Uint8Array[] = [];
  for (let at = 48; at < pkt.length; at += h.gsoSize) {
    const end = Math.min(pkt.length, at + h.gsoSize);
    const d = new Uint8Array(48 + end - at);
    d.set(pkt.subarray(0, 48));
    d.set(pkt.subarray(at, end), 48);
    const udpLen = d.length - 40;
    writeU16(d, 4, udpLen);
    writeU16(d, 44, udpLen);
    // The partial sum covers the super-packet's UDP length; each segment's covers its own.
    writeU16(d, 46, fold(readU16(pkt, 46) + diff16(superLen, udpLen)));
    out.push(finish(d));
  }
  return out;
}

function run(items: { header: VirtioNetHdr; packet: Uint8Array }[]) {
  const { buf, meta, count } = batch(items);
  const appended = coalesceUdpWrites(buf, meta, count, H);
  return { appended, ...onTheWire(buf, meta, count) };
}

const sameDatagrams = (a: Uint8Array[], b: Uint8Array[], what: string) =>
  assert.deepEqual(
    a.map((p) => Buffer.from(p).toString("hex")),
    b.map((p) => Buffer.from(p).toString("hex")),
    what,
  );

describe("UDP write coalescing", () => {
  it("agrees with the native side on the append mark and the most datagrams per packet", () => {
    const addon = tryLoadAddon();
    if (!addon) return;
    assert.equal(addon.WRITE_APPEND, WRITE_APPEND);
    assert.equal(addon.WRITE_MAX_DATAGRAMS, MAX_COALESCED);
  });

  it("merges a run of one flow into one super-packet the kernel cuts back into the same datagrams", () => {
    const items = Array.from({ length: 10 }, (_, i) =>
      packet({ ...FLOW, id: 100 + i, payload: payload(i, 64) }),
    );
    const r = run(items);
    assert.equal(r.appended, 9);
    assert.equal(r.writes, 1);
    sameDatagrams(r.sent, expected(items), "the datagrams on the wire");
    for (const d of r.sent) assert.deepEqual(checksumProblems(d), []);
  });

  it("writes the USO header: NEEDS_CSUM, UDP_L4, the segment size, the checksum's place", () => {
    const items = Array.from({ length: 3 }, (_, i) => packet({ ...FLOW, id: i, payload: payload(i, 100) }));
    const { buf, meta, count } = batch(items);
    coalesceUdpWrites(buf, meta, count, H);
    const h = decodeVirtioNetHdr(buf, meta[0], emptyVirtioNetHdr());
    assert.deepEqual(h, {
      flags: 1,
      gsoType: VIRTIO_NET_HDR_GSO_UDP_L4,
      hdrLen: 28,
      gsoSize: 100,
      csumStart: 20,
      csumOffset: 6,
    });
    assert.equal(readU16(buf, meta[0] + H + 2), 28 + 300, "IP total length");
    assert.equal(readU16(buf, meta[0] + H + 24), 8 + 300, "UDP length");
    assert.deepEqual(Array.from(meta.subarray(2)), [
      meta[2],
      (100 | WRITE_APPEND) >>> 0,
      meta[4],
      (100 | WRITE_APPEND) >>> 0,
    ]);
  });

  it("takes a shorter last datagram; a shorter one ends the run and a longer one starts another", () => {
    const sizes = [200, 200, 120, 200, 200, 300];
    const items = sizes.map((s, i) => packet({ ...FLOW, id: i, payload: payload(i, s) }));
    const r = run(items);
    assert.equal(r.writes, 3, "[200 200 120] [200 200] [300]");
    sameDatagrams(r.sent, expected(items), "the datagrams on the wire");
  });

  it("merges only neighbours: another flow between them keeps the order", () => {
    const other = { ...FLOW, sport: 40001 };
    const items = [FLOW, FLOW, other, FLOW, other, other].map((f, i) => packet({ ...f, id: i, payload: 50 }));
    const r = run(items);
    assert.equal(r.writes, 4);
    sameDatagrams(r.sent, expected(items), "the datagrams on the wire, in order");
  });

  it("without DF, merges only consecutive IP IDs (segmentation numbers them up from the first)", () => {
    const noDf = { ...FLOW, df: false };
    const consecutive = [7, 8, 9].map((id, i) => packet({ ...noDf, id, payload: payload(i, 80) }));
    const r1 = run(consecutive);
    assert.equal(r1.writes, 1);
    sameDatagrams(r1.sent, expected(consecutive), "consecutive IDs survive exactly");
    const wrap = [0xffff, 0, 1].map((id, i) => packet({ ...noDf, id, payload: payload(i, 80) }));
    assert.equal(run(wrap).writes, 1, "the ID wraps");
    const gaps = [7, 9, 12].map((id, i) => packet({ ...noDf, id, payload: payload(i, 80) }));
    const r2 = run(gaps);
    assert.equal(r2.writes, 3);
    sameDatagrams(r2.sent, expected(gaps), "IDs kept");
  });

  it("with DF, merges whatever the IDs (atomic datagrams, RFC 6864): only the ID field differs", () => {
    const items = [0, 0, 0].map((id, i) => packet({ ...FLOW, id, payload: payload(i, 80) }));
    const r = run(items);
    assert.equal(r.writes, 1);
    const noId = (ps: Uint8Array[]) =>
      ps.map((p) => {
        const c = p.slice();
        writeU16(c, 4, 0);
        writeU16(c, 10, 0);
        return c;
      });
    sameDatagrams(noId(r.sent), noId(expected(items)), "all but ID and IP checksum");
    for (const d of r.sent) assert.deepEqual(checksumProblems(d), []);
  });

  it("merges DATA_VALID datagrams (verified checksums) and mixes them with NEEDS_CSUM ones", () => {
    const items = [0, 1, 2, 3].map((i) => packet({ ...FLOW, id: i, payload: payload(i, 90) }, i % 2 === 0));
    const r = run(items);
    assert.equal(r.writes, 1);
    sameDatagrams(r.sent, expected(items), "the datagrams on the wire");
  });

  it("leaves alone what segmentation would not give back or what is not known to be intact", () => {
    const plain = (o: Partial<Opts>, i: number) => packet({ ...FLOW, id: i, payload: payload(i, 60), ...o });
    const unverified = () => {
      const p = packet({ ...FLOW, id: 1, payload: 60 }, true);
      p.header.flags = 0; // a checksum nobody checked: merging would launder a corrupt one
      return p;
    };
    const noChecksum = () => {
      const p = packet({ ...FLOW, id: 1, payload: 60 }, true);
      writeU16(p.packet, 26, 0); // UDP "no checksum": segmentation would add one
      return p;
    };
    const tcpOne = () =>
      asOffloaded(tcp({ src: FLOW.src, dst: FLOW.dst, sport: 1, dport: 2, flags: 0x18 }), 0);
    const gso = () => asOffloaded(udp({ ...FLOW, id: 1, payload: 2000 }), 500);
    const cases: [string, () => { header: VirtioNetHdr; packet: Uint8Array }][] = [
      ["unverified checksum", unverified],
      ["no UDP checksum", noChecksum],
      ["TCP", tcpOne],
      ["already a super-packet", gso],
      ["a fragment", () => plain({ mf: true, df: false }, 1)],
      ["IP options", () => plain({ options: [1, 1, 1, 0] }, 1)],
      ["another TTL", () => plain({ ttl: 63 }, 1)],
      ["another destination port", () => plain({ dport: 10 }, 1)],
      ["no DF", () => plain({ df: false }, 1)],
      ["an empty payload", () => plain({ payload: 0 }, 1)],
    ];
    for (const [what, make] of cases) {
      const items = [plain({}, 0), make()];
      const r = run(items);
      assert.equal(r.appended, 0, what);
      assert.equal(r.writes, 2, what);
      sameDatagrams(r.sent, expected(items), what);
    }
    const tos = [plain({}, 0), plain({}, 1)];
    tos[1].packet[1] = 0x10;
    writeU16(tos[1].packet, 10, 0);
    writeU16(tos[1].packet, 10, checksum(tos[1].packet, 0, 20));
    assert.equal(run(tos).appended, 0, "another TOS");
    const expiring = [plain({ ttl: 1 }, 0), plain({ ttl: 1 }, 1)];
    assert.equal(run(expiring).appended, 0, "TTL 1: each datagram gets its own time-exceeded");
  });

  it("merges IPv6 datagrams of one flow, and neither another flow label nor an extension header", () => {
    const run6 = Array.from({ length: 12 }, (_, i) => packet6({ ...V6, payload: payload(i, 64) }, i === 3));
    const r = run(run6);
    assert.equal(r.writes, 1);
    assert.equal(r.appended, 11);
    sameDatagrams(r.sent, expected(run6), "the IPv6 datagrams on the wire");
    for (const d of r.sent)
      assert.equal(checksum(d, 40, d.length - 40, pseudo6(d, d.length - 40)), 0, "UDP checksum");
    const otherLabel = [
      packet6({ ...V6, payload: payload(0, 64) }),
      packet6({ ...V6, payload: payload(1, 64), flowLabel: 7 }),
    ];
    assert.equal(run(otherLabel).appended, 0, "another flow label");
    const hopByHop = packet6({ ...V6, payload: payload(1, 64) });
    hopByHop.packet[6] = 0; // a hop-by-hop header first: not a plain UDP datagram
    assert.equal(
      run([packet6({ ...V6, payload: payload(0, 64) }), hopByHop]).appended,
      0,
      "an extension header",
    );
    const mixed = [
      packet({ ...FLOW, id: 0, payload: payload(0, 64) }),
      packet6({ ...V6, payload: payload(1, 64) }),
    ];
    assert.equal(run(mixed).appended, 0, "IPv4 and IPv6 neighbours");
  });

  it("stops at 64 datagrams and at the 64 KB an IP packet holds", () => {
    const many = Array.from({ length: 130 }, (_, i) => packet({ ...FLOW, id: i, payload: payload(i, 16) }));
    const r1 = run(many);
    assert.equal(r1.writes, 3, "64 + 64 + 2");
    sameDatagrams(r1.sent, expected(many), "130 small datagrams");
    const big = Array.from({ length: 50 }, (_, i) => packet({ ...FLOW, id: i, payload: payload(i, 1400) }));
    const r2 = run(big);
    assert.equal(r2.writes, 2, "46 × 1400 B fit in 65535 − 28, 4 more go in another");
    sameDatagrams(r2.sent, expected(big), "50 large datagrams");
  });

  it("a random batch comes out of the kernel as it went in", () => {
    const flows = [FLOW, { ...FLOW, sport: 40001 }, { ...FLOW, dst: "203.0.113.10", df: false }, null];
    const item = fc.record({
      flow: fc.integer({ min: 0, max: flows.length - 1 }),
      size: fc.constantFrom(1, 64, 64, 64, 200, 1200),
      valid: fc.boolean(),
      idStep: fc.constantFrom(1, 1, 1, 2),
    });
    assertProperty(
      fc.property(fc.array(item, { minLength: 1, maxLength: 150 }), (spec) => {
        const ids = flows.map(() => 500);
        const items = spec.map((s, i) => {
          const flow = flows[s.flow];
          if (flow === null) return packet6({ ...V6, payload: payload(i, s.size) }, s.valid); // IPv6
          ids[s.flow] = (ids[s.flow] + s.idStep) & 0xffff;
          return packet({ ...flow, id: ids[s.flow], payload: payload(i, s.size) }, s.valid);
        });
        const r = run(items);
        const mask = (ps: Uint8Array[]) =>
          ps.map((p) => {
            const c = p.slice();
            if (c[0] >>> 4 === 6) return Buffer.from(c).toString("hex");
            if ((c[6] & 0x40) !== 0) writeU16(c, 4, 0); // DF: the ID is free (see above)
            writeU16(c, 10, 0);
            return Buffer.from(c).toString("hex");
          });
        assert.deepEqual(mask(r.sent), mask(expected(items)));
        for (const d of r.sent) if (d[0] >>> 4 === 4) assert.deepEqual(checksumProblems(d), []);
        assert.equal(r.writes + r.appended, items.length);
      }),
      200,
    );
  });
});
