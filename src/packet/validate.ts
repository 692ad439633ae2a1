// Structural validation of an IPv4 packet before anything reads its fields. Each failure has a
// reason code (the engine counts drops by it); nothing here throws or allocates.
import { fold, readU16, sumWords } from "./checksum.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "./ipv4.ts";
import { ICMP_HEADER, TCP_MIN_HEADER, UDP_HEADER } from "./l4.ts";

export const enum PacketError {
  None = 0,
  TooShort = 1,
  BadVersion = 2,
  BadHeaderLength = 3,
  BadTotalLength = 4,
  BadHeaderChecksum = 5,
  TruncatedL4 = 6,
  BadTcpDataOffset = 7,
  BadUdpLength = 8,
}

export const PACKET_ERROR_NAMES = [
  "none",
  "ip_too_short",
  "ip_bad_version",
  "ip_bad_header_length",
  "ip_bad_total_length",
  "ip_bad_header_checksum",
  "l4_truncated",
  "tcp_bad_data_offset",
  "udp_bad_length",
] as const;

/**
 * Validates the IPv4 header of buf[off, off+len) and, for a first (or only) fragment, the TCP, UDP
 * or ICMP header behind it. Bytes past the IP total length (link padding) are allowed.
 */
export function validateIpv4(buf: Uint8Array, off: number, len: number): PacketError {
  if (len < 20) return PacketError.TooShort;
  const v0 = buf[off];
  if (v0 >>> 4 !== 4) return PacketError.BadVersion;
  const hl = (v0 & 0x0f) << 2;
  if (hl < 20) return PacketError.BadHeaderLength;
  const total = readU16(buf, off + 2);
  if (total < hl || total > len) return PacketError.BadTotalLength;
  if ((hl === 20 ? ipv4Header20Sum(buf, off) : fold(sumWords(buf, off, hl, 0))) !== 0xffff)
    return PacketError.BadHeaderChecksum;
  // Later fragments carry no L4 header to check.
  if ((readU16(buf, off + 6) & 0x1fff) !== 0) return PacketError.None;
  const l4 = total - hl;
  const l4off = off + hl;
  const moreFragments = (buf[off + 6] & 0x20) !== 0;
  switch (buf[off + 9]) {
    case IPPROTO_TCP: {
      if (l4 < TCP_MIN_HEADER) return PacketError.TruncatedL4;
      const doff = (buf[l4off + 12] >>> 4) << 2;
      if (doff < TCP_MIN_HEADER || doff > l4) return PacketError.BadTcpDataOffset;
      return PacketError.None;
    }
    case IPPROTO_UDP: {
      if (l4 < UDP_HEADER) return PacketError.TruncatedL4;
      const ulen = readU16(buf, l4off + 4);
      // A fragmented datagram's UDP length covers all fragments, so only unfragmented ones are exact.
      if (ulen < UDP_HEADER || (!moreFragments && ulen > l4)) return PacketError.BadUdpLength;
      return PacketError.None;
    }
    case IPPROTO_ICMP:
      return l4 < ICMP_HEADER ? PacketError.TruncatedL4 : PacketError.None;
    default:
      return PacketError.None;
  }
}

/** The folded sum of a 20-byte header, unrolled: the common case on the hot path. */
function ipv4Header20Sum(b: Uint8Array, o: number): number {
  let s =
    ((b[o] << 8) | b[o + 1]) +
    ((b[o + 2] << 8) | b[o + 3]) +
    ((b[o + 4] << 8) | b[o + 5]) +
    ((b[o + 6] << 8) | b[o + 7]) +
    ((b[o + 8] << 8) | b[o + 9]) +
    ((b[o + 10] << 8) | b[o + 11]) +
    ((b[o + 12] << 8) | b[o + 13]) +
    ((b[o + 14] << 8) | b[o + 15]) +
    ((b[o + 16] << 8) | b[o + 17]) +
    ((b[o + 18] << 8) | b[o + 19]);
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}
