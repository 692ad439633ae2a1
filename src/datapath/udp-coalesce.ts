// GRO for the write side: consecutive datagrams of one UDP flow in a batch of forwarded packets
// become one UDP segmentation (USO) super-packet, written with one writev of its pieces in place
// (native/tun.cc, WriteBatch), which the kernel routes, filters and forwards once and cuts into
// the same datagrams again (__udp_gso_segment) on the way out. What a small-packet UDP flow costs
// in masq's context is mostly the kernel's per-packet work behind each TUN write (ip_rcv, the
// routing lookup, nftables, the veth); this shares it among up to 64 datagrams. wireguard-go's
// TUN offload does the same for its decrypted packets.
//
// Only what the kernel would cut back into exactly the datagrams that came in is merged: IPv4
// without options or fragmentation, or IPv6 with UDP right after the fixed header; one flow
// (addresses, ports), one TOS or traffic class and flow label, TTL or hop limit, and flags;
// equal payloads, the last one no longer (segmentation cuts at one size); each datagram's
// checksum to be finished by the kernel (NEEDS_CSUM) or verified by it (DATA_VALID, and not the
// "no checksum" zero), so that the checksums the kernel computes for the segments never launder
// a corrupt one; and IPv4 IDs that segmentation reproduces (it numbers the segments from the
// first's ID up), or a DF flag, which makes each datagram atomic, its ID meaningless (RFC 6864
// §4.1). Nothing here allocates: the first packet's headers are rewritten in place and the
// others' entries in `meta` point at their payloads.
import { checksum, fold, pseudoHeaderSum, readI32, readU16, sumWords, writeU16 } from "../packet/checksum.ts";
import { IPPROTO_UDP } from "../packet/ipv4.ts";
import {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_UDP_L4,
} from "../packet/virtio-net.ts";

/**
 * A length in a write batch with this bit set is the payload of one more datagram of the packet
 * before it (native/tun.cc's kWriteAppend, checked against the addon by the unit tests).
 */
export const WRITE_APPEND = 0x8000_0000;
/** The most datagrams one super-packet carries: the kernel's UDP_MAX_SEGMENTS on older kernels. */
export const MAX_COALESCED = 64;

const IP_HEADER = 20;
const IP6_HEADER = 40;
const UDP_HEADER = 8;
const DF = 0x4000;

/**
 * Merges runs of datagrams in the write batch `meta` ((offset, length) pairs into `buf`, each
 * packet behind an `h`-byte virtio-net header) into super-packets; returns how many datagrams were
 * appended to another (0: nothing merged). The batch keeps its count: an appended datagram's entry
 * becomes its payload with WRITE_APPEND on the length.
 */
export function coalesceUdpWrites(buf: Uint8Array, meta: Uint32Array, count: number, h: number): number {
  let appended = 0;
  let i = 0;
  while (i < count) {
    const first = meta[2 * i];
    const firstLen = meta[2 * i + 1];
    // The IP header's length when the packet can be merged at all, 0 when not.
    const ipHeader = mergeable(buf, first, firstLen, h);
    if (ipHeader === 0) {
      i++;
      continue;
    }
    const headers = ipHeader + UDP_HEADER;
    const ip = first + h;
    const segment = firstLen - h - headers;
    let total = segment;
    let lastId = readU16(buf, ip + 4);
    // IPv6 has no ID, so nothing for segmentation to renumber.
    const anyId = ipHeader === IP6_HEADER || (readU16(buf, ip + 6) & DF) !== 0;
    let j = i + 1;
    while (j < count && j - i < MAX_COALESCED) {
      const off = meta[2 * j];
      const len = meta[2 * j + 1];
      if (mergeable(buf, off, len, h) !== ipHeader || !sameFlow(buf, ip, off + h, ipHeader)) break;
      const payload = len - h - headers;
      if (payload > segment || headers + total + payload > 0xffff) break;
      if (!anyId) {
        const id = readU16(buf, off + h + 4);
        if (id !== ((lastId + 1) & 0xffff)) break;
        lastId = id;
      }
      total += payload;
      j++;
      if (payload < segment) break; // a shorter one can only be the last
    }
    if (j - i > 1) {
      writeSuperHeaders(buf, first, h, ipHeader, segment, total);
      for (let k = i + 1; k < j; k++) {
        meta[2 * k] += h + headers;
        meta[2 * k + 1] = (meta[2 * k + 1] - h - headers) | WRITE_APPEND;
        appended++;
      }
    }
    i = j;
  }
  return appended;
}

/**
 * Whether the packet at buf[off] (behind its header) is a datagram that can be merged at all: the
 * length of its IP header (20 or 40) when it is, 0 when not.
 */
function mergeable(buf: Uint8Array, off: number, len: number, h: number): number {
  if ((len & WRITE_APPEND) !== 0 || buf[off + 1] !== VIRTIO_NET_HDR_GSO_NONE) return 0;
  const ip = off + h;
  const ipLen = len - h;
  let ipHeader: number;
  // A datagram the gateway's forwarding will expire (TTL or hop limit 1) is left alone: each one
  // gets its own time-exceeded, as a traceroute expects.
  if (buf[ip] === 0x45) {
    if (buf[ip + 9] !== IPPROTO_UDP || (readU16(buf, ip + 6) & 0x3fff) !== 0) return 0; // a fragment
    if (readU16(buf, ip + 2) !== ipLen || buf[ip + 8] <= 1) return 0;
    ipHeader = IP_HEADER;
  } else if (buf[ip] >>> 4 === 6) {
    // UDP right after the fixed header: an extension header would be repeated in every segment.
    if (buf[ip + 6] !== IPPROTO_UDP || readU16(buf, ip + 4) !== ipLen - IP6_HEADER) return 0;
    if (buf[ip + 7] <= 1) return 0;
    ipHeader = IP6_HEADER;
  } else return 0;
  if (ipLen < ipHeader + UDP_HEADER + 1 || readU16(buf, ip + ipHeader + 4) !== ipLen - ipHeader) return 0;
  const flags = buf[off];
  if (flags === VIRTIO_NET_HDR_F_NEEDS_CSUM)
    // Where the kernel would finish it: at the UDP checksum right after the IP header.
    return (buf[off + 6] | (buf[off + 7] << 8)) === ipHeader && (buf[off + 8] | (buf[off + 9] << 8)) === 6
      ? ipHeader
      : 0;
  return flags === VIRTIO_NET_HDR_F_DATA_VALID && readU16(buf, ip + ipHeader + 6) !== 0 ? ipHeader : 0;
}

/**
 * The same header in all but the lengths, checksums and IPv4 ID (what every segment gets a copy
 * of): addresses, ports, TOS and flags and TTL, or traffic class, flow label and hop limit.
 */
function sameFlow(buf: Uint8Array, a: number, b: number, ipHeader: number): boolean {
  if (ipHeader === IP_HEADER)
    return (
      buf[a + 1] === buf[b + 1] && // TOS
      buf[a + 6] === buf[b + 6] && // flags (DF), the offset being 0
      buf[a + 8] === buf[b + 8] && // TTL
      readI32(buf, a + 12) === readI32(buf, b + 12) &&
      readI32(buf, a + 16) === readI32(buf, b + 16) &&
      readI32(buf, a + 20) === readI32(buf, b + 20) // both ports
    );
  if (readI32(buf, a) !== readI32(buf, b) || buf[a + 7] !== buf[b + 7]) return false;
  for (let k = 8; k < IP6_HEADER + 4; k += 4) if (readI32(buf, a + k) !== readI32(buf, b + k)) return false;
  return true;
}

/**
 * The first datagram's headers become the super-packet's: a USO header with `segment` bytes per
 * datagram, the IP and UDP lengths of all `total` payload bytes, a valid IPv4 header checksum,
 * and the partial UDP checksum (the pseudo-header's, over that UDP length: the kernel takes each
 * segment's from it by swapping the lengths).
 */
function writeSuperHeaders(
  buf: Uint8Array,
  off: number,
  h: number,
  ipHeader: number,
  segment: number,
  total: number,
): void {
  buf[off] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  buf[off + 1] = VIRTIO_NET_HDR_GSO_UDP_L4;
  writeLe16(buf, off + 2, ipHeader + UDP_HEADER);
  writeLe16(buf, off + 4, segment);
  writeLe16(buf, off + 6, ipHeader);
  writeLe16(buf, off + 8, 6);
  const ip = off + h;
  const udpLen = UDP_HEADER + total;
  let pseudo: number;
  if (ipHeader === IP_HEADER) {
    writeU16(buf, ip + 2, IP_HEADER + udpLen);
    writeU16(buf, ip + 10, 0);
    writeU16(buf, ip + 10, checksum(buf, ip, IP_HEADER));
    pseudo = pseudoHeaderSum(readI32(buf, ip + 12), readI32(buf, ip + 16), IPPROTO_UDP, udpLen);
  } else {
    writeU16(buf, ip + 4, udpLen);
    // RFC 8200 §8.1: both addresses, the upper-layer length and the next header.
    pseudo = sumWords(buf, ip + 8, 32, IPPROTO_UDP + udpLen);
  }
  writeU16(buf, ip + ipHeader + 4, udpLen);
  writeU16(buf, ip + ipHeader + 6, fold(pseudo));
}

function writeLe16(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
}
