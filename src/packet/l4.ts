// Zero-copy accessors for TCP (RFC 9293), UDP (RFC 768) and ICMP (RFC 792) headers at `off`.
import { readU16, readU32, writeU16 } from "./checksum.ts";

export const TCP_MIN_HEADER = 20;
export const UDP_HEADER = 8;
export const ICMP_HEADER = 8;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
/** TCP option kinds. */
export const TCP_OPT_EOL = 0;
export const TCP_OPT_NOP = 1;
export const TCP_OPT_MSS = 2;
export const TCP_OPT_WSCALE = 3;
export const TCP_OPT_SACK = 5;

/** Offsets of the checksum field within each L4 header. */
export const TCP_CHECKSUM_OFFSET = 16;
export const UDP_CHECKSUM_OFFSET = 6;
export const ICMP_CHECKSUM_OFFSET = 2;

// TCP and UDP share the port layout.
export const srcPort = (b: Uint8Array, off: number): number => readU16(b, off);
export const dstPort = (b: Uint8Array, off: number): number => readU16(b, off + 2);
export const setSrcPort = (b: Uint8Array, off: number, v: number): void => writeU16(b, off, v);
export const setDstPort = (b: Uint8Array, off: number, v: number): void => writeU16(b, off + 2, v);

export const tcpSeq = (b: Uint8Array, off: number): number => readU32(b, off + 4);
export const tcpAck = (b: Uint8Array, off: number): number => readU32(b, off + 8);
/** Header length in bytes from the data offset field. */
export const tcpHeaderLength = (b: Uint8Array, off: number): number => (b[off + 12] >>> 4) << 2;
export const tcpFlags = (b: Uint8Array, off: number): number => b[off + 13];
export const tcpChecksum = (b: Uint8Array, off: number): number => readU16(b, off + 16);

/**
 * Offset of the first TCP option of `kind` in the header at `off` whose data offset is `doff`
 * bytes, or -1 when it is absent. The list is walked with bounds checks: a malformed list ends
 * the walk (RFC 9293 §3.2), never reads past the header.
 */
export function tcpOptionAt(b: Uint8Array, off: number, doff: number, kind: number): number {
  const end = off + doff;
  for (let i = off + TCP_MIN_HEADER; i < end; ) {
    const k = b[i];
    if (k === 0) break;
    if (k === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) break;
    const len = b[i + 1];
    if (len < 2 || i + len > end) break;
    if (k === kind) return i;
    i += len;
  }
  return -1;
}

export const udpLength = (b: Uint8Array, off: number): number => readU16(b, off + 4);
export const udpChecksum = (b: Uint8Array, off: number): number => readU16(b, off + 6);

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_SOURCE_QUENCH = 4;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAMETER_PROBLEM = 12;
/** Destination unreachable codes. */
export const ICMP_CODE_PORT_UNREACH = 3;
export const ICMP_CODE_FRAG_NEEDED = 4;
export const ICMP_CODE_ADMIN_PROHIBITED = 13;

export const icmpType = (b: Uint8Array, off: number): number => b[off];
export const icmpCode = (b: Uint8Array, off: number): number => b[off + 1];
export const icmpChecksum = (b: Uint8Array, off: number): number => readU16(b, off + 2);
/** Echo identifier (echo request/reply only). */
export const icmpId = (b: Uint8Array, off: number): number => readU16(b, off + 4);
export const setIcmpId = (b: Uint8Array, off: number, v: number): void => writeU16(b, off + 4, v);
/** Next-hop MTU of a "fragmentation needed" error (RFC 1191). */
export const icmpNextHopMtu = (b: Uint8Array, off: number): number => readU16(b, off + 6);

/** ICMP errors carry the offending datagram's IP header and at least its first 8 bytes. */
export function icmpIsError(type: number): boolean {
  return (
    type === ICMP_DEST_UNREACH ||
    type === ICMP_TIME_EXCEEDED ||
    type === ICMP_PARAMETER_PROBLEM ||
    type === ICMP_SOURCE_QUENCH
  );
}

export function icmpIsQuery(type: number): boolean {
  return type === ICMP_ECHO_REQUEST || type === ICMP_ECHO_REPLY;
}
