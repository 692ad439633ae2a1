// The virtio-net header (struct virtio_net_hdr, include/uapi/linux/virtio_net.h) the kernel puts
// before each packet a TUN opened with IFF_VNET_HDR reads or writes: whether the L4 checksum is
// still to be finished (and where), and whether the packet is a GSO super-packet the kernel
// segments (its type, segment size and header length). TUN uses the legacy header, in the host's
// byte order unless TUNSETVNETLE/BE says otherwise; masq sets neither and runs on little-endian
// hosts (x86-64, arm64), so the 16-bit fields are little-endian. The C side (native/tun.cc) has
// the same structure for its counters.

/** sizeof(struct virtio_net_hdr). */
export const VIRTIO_NET_HDR_BYTES = 10;

/** flags: the L4 checksum holds the pseudo-header sum only; the kernel finishes it (CHECKSUM_PARTIAL). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** flags: the checksum was verified (receive side only). */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;

/** gso_type: not a super-packet. */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
/** gso_type: TCP over IPv4, segmented by TSO. */
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
/** gso_type: UDP fragmentation offload (UFO, long gone from TUN). */
export const VIRTIO_NET_HDR_GSO_UDP = 3;
/** gso_type: TCP over IPv6. */
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** gso_type: UDP segmentation (USO, GSO_UDP_L4): each segment a whole datagram with its own header. */
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
/** gso_type bit: the TCP segments carry ECN (CWR on the first only). */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** The header's fields, decoded. One instance is reused: decode writes into it, allocating nothing. */
export interface VirtioNetHdr {
  flags: number;
  gsoType: number;
  /** Bytes of the headers (IP + L4) repeated in every segment. */
  hdrLen: number;
  /** Payload bytes per segment (the MSS for TCP). */
  gsoSize: number;
  /** Where the checksummed L4 part starts, from the start of the IP header. */
  csumStart: number;
  /** Where in the L4 part the checksum field sits (16 TCP, 6 UDP). */
  csumOffset: number;
}

export function emptyVirtioNetHdr(): VirtioNetHdr {
  return { flags: 0, gsoType: VIRTIO_NET_HDR_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
}

/** Reads the header at b[off, off+10) into `into` and returns it. */
export function decodeVirtioNetHdr(b: Uint8Array, off: number, into: VirtioNetHdr): VirtioNetHdr {
  into.flags = b[off];
  into.gsoType = b[off + 1];
  into.hdrLen = b[off + 2] | (b[off + 3] << 8);
  into.gsoSize = b[off + 4] | (b[off + 5] << 8);
  into.csumStart = b[off + 6] | (b[off + 7] << 8);
  into.csumOffset = b[off + 8] | (b[off + 9] << 8);
  return into;
}

/** Writes `h` at b[off, off+10). */
export function encodeVirtioNetHdr(h: VirtioNetHdr, b: Uint8Array, off: number): void {
  b[off] = h.flags;
  b[off + 1] = h.gsoType;
  writeLe16(b, off + 2, h.hdrLen);
  writeLe16(b, off + 4, h.gsoSize);
  writeLe16(b, off + 6, h.csumStart);
  writeLe16(b, off + 8, h.csumOffset);
}

/** The header of a plain packet: complete checksums, no segmentation (what masq's own packets carry). */
export function clearVirtioNetHdr(b: Uint8Array, off: number): void {
  b.fill(0, off, off + VIRTIO_NET_HDR_BYTES);
}

/**
 * Whether the header at b[off] marks the L4 checksum partial. Read on every packet, so one byte
 * load rather than a decode.
 */
export function needsChecksum(b: Uint8Array, off: number): boolean {
  return (b[off] & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
}

function writeLe16(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
}
