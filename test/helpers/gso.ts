// What the kernel does with a packet a vnet TUN is given: a GSO super-packet is cut into segments
// as its virtio-net header says (tcp_gso_segment, __udp_gso_segment), and each partial checksum
// is finished over its segment (skb_checksum_help). Tests build super-packets as a TUN reader gets
// them, pass them through masq, and check that what the kernel would send is right.
import { checksum, diff16, fold, pseudoHeaderSum, readU16, writeU16 } from "../../src/packet/checksum.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../../src/packet/ipv4.ts";
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  type VirtioNetHdr,
} from "../../src/packet/virtio-net.ts";

const u32 = (b: Uint8Array, at: number): number =>
  ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;

/**
 * A TCP or UDP packet with full checksums (from the packets.ts builders) as the kernel hands a
 * vnet TUN reader a super-packet of it: the L4 checksum field holds only the pseudo-header sum,
 * the header says where it is and how to segment (`gsoSize` payload bytes each; 0: no GSO).
 */
export function asOffloaded(pkt: Uint8Array, gsoSize: number): { header: VirtioNetHdr; packet: Uint8Array } {
  const b = pkt.slice();
  const hl = (b[0] & 15) << 2;
  const total = readU16(b, 2);
  const proto = b[9];
  const l4Header = proto === IPPROTO_TCP ? (b[hl + 12] >>> 4) << 2 : 8;
  const csumOffset = proto === IPPROTO_TCP ? 16 : 6;
  writeU16(b, hl + csumOffset, fold(pseudoHeaderSum(u32(b, 12), u32(b, 16), proto, total - hl)));
  const gsoType =
    gsoSize === 0
      ? VIRTIO_NET_HDR_GSO_NONE
      : proto === IPPROTO_TCP
        ? VIRTIO_NET_HDR_GSO_TCPV4
        : VIRTIO_NET_HDR_GSO_UDP_L4;
  return {
    header: {
      flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
      gsoType,
      hdrLen: hl + l4Header,
      gsoSize,
      csumStart: hl,
      csumOffset,
    },
    packet: b,
  };
}

/** The packets the kernel sends for `pkt` written behind `h`: segmented, every checksum finished. */
export function kernelSegments(h: VirtioNetHdr, pkt: Uint8Array): Uint8Array[] {
  const total = readU16(pkt, 2);
  const hl = (pkt[0] & 15) << 2;
  if (h.gsoType === VIRTIO_NET_HDR_GSO_NONE) {
    const one = pkt.slice(0, total);
    if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) finishChecksum(one, h);
    return [one];
  }
  if (h.csumStart !== hl) throw new Error(`csum_start ${h.csumStart} is not the IP header's end ${hl}`);
  const out: Uint8Array[] = [];
  const superL4 = total - hl;
  for (let at = h.hdrLen, i = 0; at < total; at += h.gsoSize, i++) {
    const end = Math.min(total, at + h.gsoSize);
    const seg = new Uint8Array(h.hdrLen + end - at);
    seg.set(pkt.subarray(0, h.hdrLen));
    seg.set(pkt.subarray(at, end), h.hdrLen);
    writeU16(seg, 2, seg.length);
    writeU16(seg, 4, (readU16(pkt, 4) + i) & 0xffff);
    writeU16(seg, 10, 0);
    writeU16(seg, 10, checksum(seg, 0, hl));
    const segL4 = seg.length - hl;
    // The partial sum covers the super-packet's length; each segment's covers its own.
    const at16 = hl + h.csumOffset;
    writeU16(seg, at16, fold(readU16(pkt, at16) + diff16(superL4, segL4)));
    if (h.gsoType === VIRTIO_NET_HDR_GSO_UDP_L4) writeU16(seg, hl + 4, segL4);
    else if (h.gsoType === VIRTIO_NET_HDR_GSO_TCPV4) {
      const seq = (u32(pkt, hl + 4) + (at - h.hdrLen)) >>> 0;
      seg[hl + 4] = seq >>> 24;
      seg[hl + 5] = (seq >>> 16) & 0xff;
      seg[hl + 6] = (seq >>> 8) & 0xff;
      seg[hl + 7] = seq & 0xff;
      if (end !== total) seg[hl + 13] &= ~0x09; // FIN and PSH only on the last segment
    } else throw new Error(`gso_type ${h.gsoType} is not one masq asks for`);
    finishChecksum(seg, h);
    out.push(seg);
  }
  return out;
}

/** skb_checksum_help: the sum from csum_start to the end, over the field's partial sum. */
function finishChecksum(seg: Uint8Array, h: VirtioNetHdr): void {
  const at = h.csumStart + h.csumOffset;
  let ck = checksum(seg, h.csumStart, seg.length - h.csumStart);
  if (ck === 0 && seg[9] === IPPROTO_UDP) ck = 0xffff; // RFC 768: a computed zero is sent as all ones
  writeU16(seg, at, ck);
}
