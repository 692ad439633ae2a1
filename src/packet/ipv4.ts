// Zero-copy accessors for an IPv4 header at `off` in a byte array (RFC 791). Each takes the
// buffer and the header's offset, so one packet buffer serves any number of packets in place.
import { checksum, readU16, readU32, writeU16, writeU32 } from "./checksum.ts";

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
// Protocols masq translates by address only (src/nat/generic-flow.ts) that it must look into.
export const IPPROTO_DCCP = 33;
export const IPPROTO_GRE = 47;
export const IPPROTO_AH = 51;
export const IPPROTO_UDPLITE = 136;

/** The protocol number of a port mapping's "tcp" or "udp" (forwards, pins, pinholes). */
export function tcpOrUdp(proto: "tcp" | "udp"): number {
  return proto === "tcp" ? IPPROTO_TCP : IPPROTO_UDP;
}

export const IPV4_MIN_HEADER = 20;

/** Flags/fragment-offset field bits. */
export const IP_DF = 0x4000;
export const IP_MF = 0x2000;
export const IP_OFFSET_MASK = 0x1fff;

export const ipVersion = (b: Uint8Array, off: number): number => b[off] >>> 4;
export const ipHeaderLength = (b: Uint8Array, off: number): number => (b[off] & 0x0f) << 2;
export const ipTotalLength = (b: Uint8Array, off: number): number => readU16(b, off + 2);
export const ipId = (b: Uint8Array, off: number): number => readU16(b, off + 4);
export const ipFlagsFragment = (b: Uint8Array, off: number): number => readU16(b, off + 6);
/** Fragment offset in bytes. */
export const ipFragmentOffset = (b: Uint8Array, off: number): number =>
  (readU16(b, off + 6) & IP_OFFSET_MASK) << 3;
export const ipMoreFragments = (b: Uint8Array, off: number): boolean => (b[off + 6] & 0x20) !== 0;
/** True for any fragment of a fragmented datagram (first, middle or last). */
export const ipIsFragment = (b: Uint8Array, off: number): boolean => (readU16(b, off + 6) & 0x3fff) !== 0;
export const ipTtl = (b: Uint8Array, off: number): number => b[off + 8];
export const ipProtocol = (b: Uint8Array, off: number): number => b[off + 9];
export const ipChecksum = (b: Uint8Array, off: number): number => readU16(b, off + 10);
export const ipSrc = (b: Uint8Array, off: number): number => readU32(b, off + 12);
export const ipDst = (b: Uint8Array, off: number): number => readU32(b, off + 16);

export const setIpTotalLength = (b: Uint8Array, off: number, v: number): void => writeU16(b, off + 2, v);
export const setIpTtl = (b: Uint8Array, off: number, v: number): void => {
  b[off + 8] = v;
};
export const setIpChecksum = (b: Uint8Array, off: number, v: number): void => writeU16(b, off + 10, v);
export const setIpSrc = (b: Uint8Array, off: number, v: number): void => writeU32(b, off + 12, v);
export const setIpDst = (b: Uint8Array, off: number, v: number): void => writeU32(b, off + 16, v);

/** Computes the header checksum from scratch (the field itself counted as zero). */
export function computeIpChecksum(b: Uint8Array, off: number): number {
  const hl = ipHeaderLength(b, off);
  const saved = readU16(b, off + 10);
  writeU16(b, off + 10, 0);
  const c = checksum(b, off, hl);
  writeU16(b, off + 10, saved);
  return c;
}

/** True when the stored header checksum is right (the sum over the header folds to 0xffff). */
export function ipChecksumValid(b: Uint8Array, off: number): boolean {
  return checksum(b, off, ipHeaderLength(b, off)) === 0;
}

/** Writes a fresh header checksum. */
export function fillIpChecksum(b: Uint8Array, off: number): void {
  writeU16(b, off + 10, 0);
  writeU16(b, off + 10, checksum(b, off, ipHeaderLength(b, off)));
}
