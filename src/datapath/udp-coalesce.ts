// GRO for the write side: consecutive datagrams of one UDP flow in a batch of forwarded packets
// become one UDP segmentation (USO) super-packet, written with one writev of its pieces in place
// (native/tun.cc, WriteBatch), which the kernel routes, filters and forwards once and cuts into
// the same datagrams again (__udp_gso_segment) on the way out. What a small-packet UDP flow costs
// in masq's context is mostly the kernel's per-packet work behind each TUN write (ip_rcv, the
// routing lookup, nftables, the veth); this shares it among up to 64 datagrams. wireguard-go's
// TUN offload does the same for its decrypted packets.
//
// Only what the kernel would cut back into exactly the datagrams that came in is merged: IPv4
// without options or fragmentation; one flow (addresses, ports), one TOS, TTL and flags; equal
// payloads, the last one no longer (segmentation cuts at one size); each datagram's checksum to be
// finished by the kernel (NEEDS_CSUM) or verified by it (DATA_VALID, and not the "no checksum"
// zero), so that the checksums the kernel computes for the segments never launder a corrupt one;
// and IP IDs that segmentation reproduces (it numbers the segments from the first's ID up), or a
// DF flag, which makes each datagram atomic, its ID meaningless (RFC 6864 §4.1). Nothing here
// allocates: the first packet's headers are rewritten in place and the others' entries in `meta`
// point at their payloads.
import { checksum, fold, pseudoHeaderSum, readI32, readU16, writeU16 } from "../packet/checksum.ts";
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
const UDP_HEADER = 8;
const HEADERS = IP_HEADER + UDP_HEADER;
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
    if (!mergeable(buf, first, firstLen, h)) {
      i++;
      continue;
    }
    const ip = first + h;
    const segment = firstLen - h - HEADERS;
    let total = segment;
    let lastId = readU16(buf, ip + 4);
    const df = (readU16(buf, ip + 6) & DF) !== 0;
    let j = i + 1;
    while (j < count && j - i < MAX_COALESCED) {
      const off = meta[2 * j];
      const len = meta[2 * j + 1];
      if (!mergeable(buf, off, len, h) || !sameFlow(buf, ip, off + h)) break;
      const payload = len - h - HEADERS;
      if (payload > segment || HEADERS + total + payload > 0xffff) break;
      const id = readU16(buf, off + h + 4);
      if (!df && id !== ((lastId + 1) & 0xffff)) break;
      lastId = id;
      total += payload;
      j++;
      if (payload < segment) break; // a shorter one can only be the last
    }
    if (j - i > 1) {
      writeSuperHeaders(buf, first, h, segment, total);
      for (let k = i + 1; k < j; k++) {
        meta[2 * k] += h + HEADERS;
        meta[2 * k + 1] = (meta[2 * k + 1] - h - HEADERS) | WRITE_APPEND;
        appended++;
      }
    }
    i = j;
  }
  return appended;
}

/** Whether the packet at buf[off] (behind its header) is a datagram that can be merged at all. */
function mergeable(buf: Uint8Array, off: number, len: number, h: number): boolean {
  if (len < h + HEADERS + 1 || (len & WRITE_APPEND) !== 0) return false;
  if (buf[off + 1] !== VIRTIO_NET_HDR_GSO_NONE) return false;
  const ip = off + h;
  if (buf[ip] !== 0x45 || buf[ip + 9] !== IPPROTO_UDP) return false;
  if ((readU16(buf, ip + 6) & 0x3fff) !== 0) return false; // MF or an offset: a fragment
  const ipLen = len - h;
  if (readU16(buf, ip + 2) !== ipLen || readU16(buf, ip + IP_HEADER + 4) !== ipLen - IP_HEADER) return false;
  const flags = buf[off];
  if (flags === VIRTIO_NET_HDR_F_NEEDS_CSUM)
    // Where the kernel would finish it: at the UDP checksum behind a 20-byte IP header.
    return (buf[off + 6] | (buf[off + 7] << 8)) === IP_HEADER && (buf[off + 8] | (buf[off + 9] << 8)) === 6;
  return flags === VIRTIO_NET_HDR_F_DATA_VALID && readU16(buf, ip + IP_HEADER + 6) !== 0;
}

/** Same addresses, ports, TOS, TTL and flags (the header every segment gets a copy of). */
function sameFlow(buf: Uint8Array, a: number, b: number): boolean {
  return (
    buf[a + 1] === buf[b + 1] && // TOS
    buf[a + 6] === buf[b + 6] && // flags (DF), the offset being 0
    buf[a + 8] === buf[b + 8] && // TTL
    readI32(buf, a + 12) === readI32(buf, b + 12) &&
    readI32(buf, a + 16) === readI32(buf, b + 16) &&
    readI32(buf, a + 20) === readI32(buf, b + 20) // both ports
  );
}

/**
 * The first datagram's headers become the super-packet's: a USO header with `segment` bytes per
 * datagram, the IP and UDP lengths of all `total` payload bytes, a valid IP checksum, and the
 * partial UDP checksum (the pseudo-header's, over that UDP length: the kernel takes each segment's
 * from it by swapping the lengths).
 */
function writeSuperHeaders(buf: Uint8Array, off: number, h: number, segment: number, total: number): void {
  buf[off] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  buf[off + 1] = VIRTIO_NET_HDR_GSO_UDP_L4;
  writeLe16(buf, off + 2, HEADERS);
  writeLe16(buf, off + 4, segment);
  writeLe16(buf, off + 6, IP_HEADER);
  writeLe16(buf, off + 8, 6);
  const ip = off + h;
  writeU16(buf, ip + 2, HEADERS + total);
  writeU16(buf, ip + 10, 0);
  writeU16(buf, ip + 10, checksum(buf, ip, IP_HEADER));
  const udpLen = UDP_HEADER + total;
  writeU16(buf, ip + IP_HEADER + 4, udpLen);
  writeU16(
    buf,
    ip + IP_HEADER + 6,
    fold(pseudoHeaderSum(readI32(buf, ip + 12), readI32(buf, ip + 16), IPPROTO_UDP, udpLen)),
  );
}

function writeLe16(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
}
