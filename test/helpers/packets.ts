// Builders for crafted IPv4 packets with correct checksums, and checks that recompute them from
// scratch, for the engine's unit tests.

import { parseIpv4 } from "../../src/packet/addr.ts";
import { checksum, pseudoHeaderSum, readU16, writeU16, writeU32 } from "../../src/packet/checksum.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../../src/packet/ipv4.ts";

export const ip = (s: string): number => {
  const v = parseIpv4(s);
  if (v === undefined) throw new Error(`bad address ${s}`);
  return v;
};

export interface IpOpts {
  src: string;
  dst: string;
  ttl?: number;
  id?: number;
  /** Fragment offset in bytes (multiple of 8) and more-fragments flag. */
  fragOffset?: number;
  mf?: boolean;
  df?: boolean;
  /** IP options bytes (length multiple of 4). */
  options?: number[];
}

function ipHeader(o: IpOpts, proto: number, payloadLen: number): Uint8Array {
  const optLen = o.options?.length ?? 0;
  const hl = 20 + optLen;
  const b = new Uint8Array(hl + payloadLen);
  b[0] = 0x40 | (hl >> 2);
  writeU16(b, 2, hl + payloadLen);
  writeU16(b, 4, o.id ?? 0x1234);
  writeU16(b, 6, ((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) >> 3)) & 0xffff);
  b[8] = o.ttl ?? 64;
  b[9] = proto;
  writeU32(b, 12, ip(o.src));
  writeU32(b, 16, ip(o.dst));
  if (o.options) b.set(o.options, 20);
  writeU16(b, 10, checksum(b, 0, hl));
  return b;
}

function l4Checksum(b: Uint8Array, hl: number, proto: number): number {
  const l4len = b.length - hl;
  const src = ((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]) >>> 0;
  const dst = ((b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19]) >>> 0;
  return checksum(b, hl, l4len, pseudoHeaderSum(src, dst, proto, l4len));
}

export function udp(o: IpOpts & { sport: number; dport: number; payload?: Uint8Array | number }): Uint8Array {
  const payload =
    typeof o.payload === "number" ? new Uint8Array(o.payload).fill(0xab) : (o.payload ?? new Uint8Array(4));
  const b = ipHeader(o, IPPROTO_UDP, 8 + payload.length);
  const hl = (b[0] & 15) << 2;
  writeU16(b, hl, o.sport);
  writeU16(b, hl + 2, o.dport);
  writeU16(b, hl + 4, 8 + payload.length);
  b.set(payload, hl + 8);
  let ck = l4Checksum(b, hl, IPPROTO_UDP);
  if (ck === 0) ck = 0xffff;
  writeU16(b, hl + 6, ck);
  return b;
}

/** An IPv4 packet of any protocol with `payload` as its L4 bytes, as they are (no L4 checksum made). */
export function datagram(o: IpOpts & { proto: number; payload: Uint8Array }): Uint8Array {
  const b = ipHeader(o, o.proto, o.payload.length);
  b.set(o.payload, (b[0] & 15) << 2);
  return b;
}

/** The L4 checksum over the IPv4 pseudo-header (TCP, UDP, DCCP, UDP-Lite) of packet b; 0 when right. */
export function pseudoHeaderChecksum(b: Uint8Array): number {
  return l4Checksum(b, (b[0] & 15) << 2, b[9]);
}

export const SYN = 0x02;
export const ACK = 0x10;
export const FIN = 0x01;
export const RST = 0x04;
export const PSH = 0x08;

export function tcp(
  o: IpOpts & {
    sport: number;
    dport: number;
    flags: number;
    seq?: number;
    ack?: number;
    /** The window field (default 65535). */
    window?: number;
    /** TCP option bytes, padded to a multiple of 4 with end-of-options. */
    tcpOptions?: number[];
    payload?: Uint8Array | number;
  },
): Uint8Array {
  const payload =
    typeof o.payload === "number" ? new Uint8Array(o.payload).fill(0xcd) : (o.payload ?? new Uint8Array(0));
  const opts = o.tcpOptions ?? [];
  const optLen = (opts.length + 3) & ~3;
  const b = ipHeader(o, IPPROTO_TCP, 20 + optLen + payload.length);
  const hl = (b[0] & 15) << 2;
  writeU16(b, hl, o.sport);
  writeU16(b, hl + 2, o.dport);
  writeU32(b, hl + 4, o.seq ?? 1000);
  writeU32(b, hl + 8, o.ack ?? 0);
  b[hl + 12] = ((20 + optLen) >> 2) << 4;
  b[hl + 13] = o.flags;
  writeU16(b, hl + 14, o.window ?? 65535);
  b.set(opts, hl + 20);
  b.set(payload, hl + 20 + optLen);
  writeU16(b, hl + 16, l4Checksum(b, hl, IPPROTO_TCP));
  return b;
}

/** An echo request/reply; `id` is the echo identifier (the IP id is `ipId`). */
export function icmpEcho(
  o: Omit<IpOpts, "id"> & { type?: 0 | 8; id: number; ipId?: number; seq?: number; payload?: number },
): Uint8Array {
  const n = o.payload ?? 16;
  const b = ipHeader({ ...o, id: o.ipId }, IPPROTO_ICMP, 8 + n);
  const hl = (b[0] & 15) << 2;
  b[hl] = o.type ?? 8;
  writeU16(b, hl + 4, o.id);
  writeU16(b, hl + 6, o.seq ?? 1);
  for (let i = 0; i < n; i++) b[hl + 8 + i] = i & 0xff;
  writeU16(b, hl + 2, checksum(b, hl, 8 + n));
  return b;
}

/** An ICMP error (type/code) from `from` to `to`, quoting `quoted` (truncated to `quoteLen`). */
export function icmpError(o: {
  from: string;
  to: string;
  type: number;
  code: number;
  quoted: Uint8Array;
  quoteLen?: number;
  mtu?: number;
}): Uint8Array {
  const q = o.quoted.subarray(0, Math.min(o.quoted.length, o.quoteLen ?? o.quoted.length));
  const b = ipHeader({ src: o.from, dst: o.to }, IPPROTO_ICMP, 8 + q.length);
  b[20] = o.type;
  b[21] = o.code;
  if (o.mtu) writeU16(b, 26, o.mtu);
  b.set(q, 28);
  writeU16(b, 22, checksum(b, 20, 8 + q.length));
  return b;
}

/** Checks every checksum of a packet from scratch; returns a list of problems (empty = fine). */
export function checksumProblems(b: Uint8Array, off = 0): string[] {
  const problems: string[] = [];
  const hl = (b[off] & 15) << 2;
  const total = readU16(b, off + 2);
  if (checksum(b, off, hl) !== 0) problems.push("ip header checksum");
  const frag = readU16(b, off + 6) & 0x3fff;
  if (frag !== 0) return problems; // L4 checksums span fragments
  const proto = b[off + 9];
  const pkt = b.subarray(off, off + total);
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
    if (proto === IPPROTO_UDP && readU16(pkt, hl + 6) === 0) return problems;
    const src = ((pkt[12] << 24) | (pkt[13] << 16) | (pkt[14] << 8) | pkt[15]) >>> 0;
    const dst = ((pkt[16] << 24) | (pkt[17] << 16) | (pkt[18] << 8) | pkt[19]) >>> 0;
    if (checksum(pkt, hl, total - hl, pseudoHeaderSum(src, dst, proto, total - hl)) !== 0)
      problems.push(proto === IPPROTO_TCP ? "tcp checksum" : "udp checksum");
  } else if (proto === IPPROTO_ICMP) {
    if (checksum(pkt, hl, total - hl) !== 0) problems.push("icmp checksum");
    const t = pkt[hl];
    if (t === 3 || t === 11 || t === 12) {
      // The embedded header's own checksum must be right too.
      const e = hl + 8;
      const ehl = (pkt[e] & 15) << 2;
      if (e + ehl <= total && checksum(pkt, e, ehl) !== 0) problems.push("embedded ip checksum");
    }
  }
  return problems;
}

export const u16 = readU16;
export function u32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

/**
 * Splits an unfragmented IPv4 packet into fragments of `size` payload bytes each (a multiple of 8;
 * the last takes the rest), with their own header checksums; `id` sets the IP id of all of them.
 */
export function splitFragments(pkt: Uint8Array, size: number, id?: number): Uint8Array[] {
  const hl = (pkt[0] & 15) << 2;
  const payload = pkt.length - hl;
  const out: Uint8Array[] = [];
  for (let from = 0; from < payload; from += size) {
    const to = Math.min(payload, from + size);
    const f = new Uint8Array(hl + to - from);
    f.set(pkt.subarray(0, hl), 0);
    f.set(pkt.subarray(hl + from, hl + to), hl);
    writeU16(f, 2, f.length);
    if (id !== undefined) writeU16(f, 4, id);
    writeU16(f, 6, (to < payload ? 0x2000 : 0) | (from >> 3));
    writeU16(f, 10, 0);
    writeU16(f, 10, checksum(f, 0, hl));
    out.push(f);
  }
  return out;
}

/** Puts fragments (any order) back together into one unfragmented packet with a fresh header checksum. */
export function reassemble(frags: Uint8Array[]): Uint8Array {
  const at = (f: Uint8Array) => (readU16(f, 6) & 0x1fff) * 8;
  const hl = (frags[0][0] & 15) << 2;
  const first = frags.find((f) => at(f) === 0) ?? frags[0];
  const total = hl + Math.max(...frags.map((f) => at(f) + f.length - hl));
  const b = new Uint8Array(total);
  b.set(first.subarray(0, hl));
  for (const f of frags) b.set(f.subarray(hl), hl + at(f));
  writeU16(b, 2, total);
  writeU16(b, 6, 0);
  writeU16(b, 10, 0);
  writeU16(b, 10, checksum(b, 0, hl));
  return b;
}
