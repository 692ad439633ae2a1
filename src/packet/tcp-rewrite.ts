// Rewriting parts of a TCP segment in place, and sealing a segment rebuilt with a new length: the
// checksum work of a payload rewrite (src/alg), kept with the other packet primitives.
import {
  adjustChecksum,
  checksum,
  diff16,
  diff32,
  fold,
  pseudoHeaderSum,
  readU16,
  readU32,
  sumWords,
  writeU16,
  writeU32,
} from "./checksum.ts";
import { IPPROTO_TCP } from "./ipv4.ts";
import { TCP_CHECKSUM_OFFSET } from "./l4.ts";

/**
 * Rewrites the 32-bit field at `at` of the TCP segment at `l4`, keeping its checksum right: an
 * incremental update (RFC 1624) for a full checksum; nothing for a partial one (virtio-net
 * NEEDS_CSUM: the field holds only the pseudo-header sum, the header is summed later).
 */
export function setTcpWord(b: Uint8Array, l4: number, at: number, v: number, partial: boolean): void {
  const old = readU32(b, at);
  v >>>= 0;
  if (old === v) return;
  writeU32(b, at, v);
  if (partial) return;
  const cs = l4 + TCP_CHECKSUM_OFFSET;
  if (((at - l4) & 1) === 0) writeU16(b, cs, adjustChecksum(readU16(b, cs), diff32(old, v)));
  else {
    // An odd offset straddles 16-bit words: the same difference with its bytes swapped.
    const d = diff32(swapBytes32(old), swapBytes32(v));
    writeU16(b, cs, adjustChecksum(readU16(b, cs), d));
  }
}

/**
 * Rewrites the 16-bit field at `at` of the TCP segment at `l4` (an option's value, PPTP's call ids), keeping its
 * checksum right as setTcpWord does; an option may sit at an odd offset.
 */
export function setTcpHalfWord(b: Uint8Array, l4: number, at: number, value: number, partial: boolean): void {
  const v = value & 0xffff;
  const old = readU16(b, at);
  if (old === v) return;
  writeU16(b, at, v);
  if (partial) return;
  const cs = l4 + TCP_CHECKSUM_OFFSET;
  // At an odd offset the bytes a b are summed in the words (x a) (b y): as the word (b a).
  const d = ((at - l4) & 1) === 0 ? diff16(old, v) : diff16(swapBytes16(old), swapBytes16(v));
  writeU16(b, cs, adjustChecksum(readU16(b, cs), d));
}

function swapBytes16(v: number): number {
  return ((v & 0xff) << 8) | (v >>> 8);
}

function swapBytes32(v: number): number {
  // Bytes a b c d at an odd offset are summed in the words (x a) (b c) (d y): a + bc + d·256,
  // the same ones' complement sum as the aligned words (b c) (d a), i.e. v rotated left by 8.
  return ((v << 8) | (v >>> 24)) >>> 0;
}

/**
 * Overwrites payload bytes at `at` with `text` (same length), keeping the TCP checksum right: the
 * change of the sum over the enclosing 16-bit words of the segment (RFC 1624). A partial checksum
 * (virtio-net NEEDS_CSUM) covers no payload and needs nothing.
 */
export function patchTcpPayload(
  b: Uint8Array,
  l4: number,
  at: number,
  text: Uint8Array,
  partial: boolean,
): void {
  if (partial) {
    b.set(text, at);
    return;
  }
  const s0 = l4 + ((at - l4) & ~1);
  const n = at + text.length - s0;
  const before = fold(sumWords(b, s0, n, 0));
  b.set(text, at);
  const after = fold(sumWords(b, s0, n, 0));
  const cs = l4 + TCP_CHECKSUM_OFFSET;
  writeU16(b, cs, adjustChecksum(readU16(b, cs), fold((~before & 0xffff) + after)));
}

/**
 * Completes an IPv4/TCP segment of `len` bytes at b[0..] whose headers (IP header `hl` bytes) were
 * copied from another: total length, sequence number `seq`, and full header and TCP checksums (a
 * rebuilt segment leaves without a virtio-net header, so nothing finishes them later).
 */
export function sealTcpSegment(b: Uint8Array, hl: number, len: number, seq: number): void {
  writeU16(b, 2, len);
  writeU16(b, 10, 0);
  writeU16(b, 10, checksum(b, 0, hl));
  writeU32(b, hl + 4, seq);
  const cs = hl + TCP_CHECKSUM_OFFSET;
  writeU16(b, cs, 0);
  const src = readU32(b, 12);
  const dst = readU32(b, 16);
  writeU16(b, cs, checksum(b, hl, len - hl, pseudoHeaderSum(src, dst, IPPROTO_TCP, len - hl)));
}
