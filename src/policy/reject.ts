// The answer of a reject rule to a TCP segment: a reset from the address and port the segment
// was sent to (RFC 9293 section 3.10.7.1, "CLOSED" state: the connection does not exist), so the
// client sees "connection refused" at once instead of waiting for a timeout.
import { checksum, pseudoHeaderSum, readU16, readU32, writeU16, writeU32 } from "../packet/checksum.ts";
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from "../packet/l4.ts";

const IPPROTO_TCP = 6;

/**
 * Builds in `out` the RST answering the TCP segment at b[off, off+len) (IPv4 header at off, a
 * validated packet); returns its length (40).
 */
export function buildTcpReset(out: Uint8Array, b: Uint8Array, off: number, len: number): number {
  const hl = (b[off] & 0x0f) << 2;
  const l4 = off + hl;
  const flags = b[l4 + 13];
  const tcpHl = (b[l4 + 12] >>> 4) << 2;
  const reply = {
    src: readU32(b, off + 16),
    dst: readU32(b, off + 12),
    sport: readU16(b, l4 + 2),
    dport: readU16(b, l4),
  };
  // The reset takes the sequence number the segment acknowledged.
  if ((flags & TCP_ACK) !== 0) return writeTcpReset(out, reply, readU32(b, l4 + 8), 0, TCP_RST);
  // No ACK to take a sequence number from: acknowledge the segment instead.
  let seqLen = len - hl - tcpHl;
  if (seqLen < 0) seqLen = 0;
  if ((flags & TCP_SYN) !== 0) seqLen++;
  if ((flags & TCP_FIN) !== 0) seqLen++;
  return writeTcpReset(out, reply, 0, (readU32(b, l4 + 4) + seqLen) >>> 0, TCP_RST | TCP_ACK);
}

/**
 * Writes into `out` a 40-byte TCP reset (IPv4, TTL 64, no options) from src:sport to dst:dport
 * with the given numbers and flags (TCP_RST, with TCP_ACK or not), both checksums filled in;
 * returns its length (40).
 */
export function writeTcpReset(
  out: Uint8Array,
  ends: { src: number; dst: number; sport: number; dport: number },
  seq: number,
  ack: number,
  flags: number,
): number {
  out.fill(0, 0, 40);
  out[0] = 0x45;
  writeU16(out, 2, 40);
  out[8] = 64;
  out[9] = IPPROTO_TCP;
  writeU32(out, 12, ends.src);
  writeU32(out, 16, ends.dst);
  writeU16(out, 10, checksum(out, 0, 20));
  writeU16(out, 20, ends.sport);
  writeU16(out, 22, ends.dport);
  writeU32(out, 24, seq);
  writeU32(out, 28, ack);
  out[32] = 5 << 4;
  out[33] = flags;
  writeU16(out, 36, checksum(out, 20, 20, pseudoHeaderSum(ends.src, ends.dst, IPPROTO_TCP, 20)));
  return 40;
}
