// ICMP helpers for the engine: translating the packet embedded in an ICMP error (RFC 5508 REQ-3,
// so traceroute and path MTU discovery work through the NAT), and building the errors and echo
// replies the engine itself sends.
import {
  adjustChecksum,
  checksum,
  diff16,
  diff32,
  fold,
  readU16,
  readU32,
  writeU16,
  writeU32,
} from "../packet/checksum.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";

/** Fields of the packet embedded in an ICMP error, filled by parseEmbedded (no allocation). */
export class Embedded {
  /** Offset of the embedded IP header. */
  ip = 0;
  hl = 0;
  proto = 0;
  src = 0;
  dst = 0;
  /** Source/destination port, or for ICMP echo the identifier in both. */
  sport = 0;
  dport = 0;
  /** ICMP only: the embedded ICMP type. */
  icmpType = 0;
  /** Bytes of the embedded packet present in the error. */
  avail = 0;
}

/**
 * Reads the embedded IPv4 header + first 8 L4 bytes of the ICMP error at `icmp` (ending at
 * `end`). Returns false when they are not all there or not IPv4 (the error is malformed).
 */
export function parseEmbedded(b: Uint8Array, icmp: number, end: number, e: Embedded): boolean {
  const ip = icmp + 8;
  if (ip + 20 > end) return false;
  if (b[ip] >>> 4 !== 4) return false;
  const hl = (b[ip] & 0x0f) << 2;
  if (hl < 20 || ip + hl + 8 > end) return false;
  e.ip = ip;
  e.hl = hl;
  e.proto = b[ip + 9];
  e.src = readU32(b, ip + 12);
  e.dst = readU32(b, ip + 16);
  e.avail = end - ip;
  const l4 = ip + hl;
  if (e.proto === IPPROTO_ICMP) {
    e.icmpType = b[l4];
    e.sport = readU16(b, l4 + 4);
    e.dport = e.sport;
  } else {
    e.icmpType = 0;
    e.sport = readU16(b, l4);
    e.dport = readU16(b, l4 + 2);
  }
  return true;
}

/**
 * Rewrites the embedded packet's source (`which` 0) or destination (1) address and port (ICMP
 * echo: its identifier), fixing the embedded IP checksum, the embedded L4 checksum when it lies
 * within the quoted bytes, and the outer ICMP checksum for every word changed.
 */
export function rewriteEmbedded(
  b: Uint8Array,
  icmp: number,
  e: Embedded,
  which: 0 | 1,
  newAddr: number,
  newPort: number,
): void {
  const ip = e.ip;
  const l4 = ip + e.hl;
  const end = ip + e.avail;
  let dOuter = 0;
  // Address and the embedded header checksum.
  const addrAt = ip + (which === 0 ? 12 : 16);
  const oldAddr = readU32(b, addrAt);
  const dA = diff32(oldAddr, newAddr);
  writeU32(b, addrAt, newAddr);
  dOuter += dA;
  const oldIpCk = readU16(b, ip + 10);
  const newIpCk = adjustChecksum(oldIpCk, dA);
  writeU16(b, ip + 10, newIpCk);
  dOuter += diff16(oldIpCk, newIpCk);
  // Port (or identifier) and the embedded L4 checksum when quoted.
  if (e.proto === IPPROTO_TCP || e.proto === IPPROTO_UDP) {
    const portAt = l4 + (which === 0 ? 0 : 2);
    const oldPort = readU16(b, portAt);
    const dP = diff16(oldPort, newPort);
    writeU16(b, portAt, newPort);
    dOuter += dP;
    const ckAt = e.proto === IPPROTO_TCP ? l4 + 16 : l4 + 6;
    if (ckAt + 2 <= end) {
      const oldCk = readU16(b, ckAt);
      if (e.proto === IPPROTO_TCP || oldCk !== 0) {
        let n = adjustChecksum(oldCk, fold(dA + dP));
        if (e.proto === IPPROTO_UDP && n === 0) n = 0xffff;
        writeU16(b, ckAt, n);
        dOuter += diff16(oldCk, n);
      }
    }
  } else if (e.proto === IPPROTO_ICMP) {
    const oldId = readU16(b, l4 + 4);
    const dI = diff16(oldId, newPort);
    writeU16(b, l4 + 4, newPort);
    dOuter += dI;
    const oldCk = readU16(b, l4 + 2);
    const n = adjustChecksum(oldCk, dI);
    writeU16(b, l4 + 2, n);
    dOuter += diff16(oldCk, n);
  }
  writeU16(b, icmp + 2, adjustChecksum(readU16(b, icmp + 2), fold(dOuter)));
}

/**
 * Sets the sequence number of the TCP segment embedded in an ICMP error (the quote always holds
 * it: the first 8 bytes), fixing the embedded TCP checksum when it is quoted and the outer ICMP
 * checksum.
 */
export function rewriteEmbeddedSeq(b: Uint8Array, icmp: number, e: Embedded, seq: number): void {
  const l4 = e.ip + e.hl;
  const at = l4 + 4;
  const d = diff32(readU32(b, at), seq);
  writeU32(b, at, seq);
  let dOuter = d;
  const ckAt = l4 + 16;
  if (ckAt + 2 <= e.ip + e.avail) {
    const oldCk = readU16(b, ckAt);
    const n = adjustChecksum(oldCk, d);
    writeU16(b, ckAt, n);
    dOuter += diff16(oldCk, n);
  }
  writeU16(b, icmp + 2, adjustChecksum(readU16(b, icmp + 2), fold(dOuter)));
}

/** Largest ICMP error we build: RFC 1812 4.3.2.3, as much of the original as fits in 576 bytes. */
export const ICMP_ERROR_MAX = 576;

/**
 * Writes into `out` an ICMP error (type/code, `extra` = the 32-bit field after the checksum, e.g.
 * the next-hop MTU) from `from` to the source of the packet at b[off, off+len), quoting its header
 * and as many bytes as fit. Returns the reply length.
 */
export function buildIcmpError(
  out: Uint8Array,
  b: Uint8Array,
  off: number,
  len: number,
  from: number,
  type: number,
  code: number,
  extra: number,
): number {
  const quoted = Math.min(len, ICMP_ERROR_MAX - 28);
  const total = 28 + quoted;
  out.fill(0, 0, 28);
  out[0] = 0x45;
  writeU16(out, 2, total);
  out[8] = 64;
  out[9] = IPPROTO_ICMP;
  writeU32(out, 12, from);
  writeU32(out, 16, readU32(b, off + 12));
  writeU16(out, 10, checksum(out, 0, 20));
  out[20] = type;
  out[21] = code;
  writeU32(out, 24, extra);
  out.set(b.subarray(off, off + quoted), 28);
  writeU16(out, 22, checksum(out, 20, total - 20));
  return total;
}

/** Turns the echo request at b[off, off+len) into its echo reply in `out`; returns the length. */
export function buildEchoReply(out: Uint8Array, b: Uint8Array, off: number, len: number): number {
  const hl = (b[off] & 0x0f) << 2;
  if (len > out.length) return 0;
  out.set(b.subarray(off, off + len), 0);
  writeU32(out, 12, readU32(b, off + 16));
  writeU32(out, 16, readU32(b, off + 12));
  out[8] = 64;
  writeU16(out, 10, 0);
  writeU16(out, 10, checksum(out, 0, hl));
  out[hl] = 0;
  writeU16(out, hl + 2, 0);
  writeU16(out, hl + 2, checksum(out, hl, len - hl));
  return len;
}
