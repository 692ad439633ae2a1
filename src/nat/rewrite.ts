// In-place rewrites of addresses, ports and TTL with incremental checksum updates (RFC 1624):
// a few loads and stores per packet, whatever its length.
import {
  adjustChecksum,
  adjustPartialChecksum,
  diff16,
  diff32,
  fold,
  readU16,
  writeU16,
} from "../packet/checksum.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";

/**
 * Replaces the 32-bit address at `addrAt` (source: off+12, destination: off+16) and, for a first
 * or only fragment, the 16-bit port at `portAt` (-1: none), fixing the IP header checksum and the
 * L4 checksum. The TCP/UDP checksum covers the address through the pseudo-header; the ICMP
 * checksum covers only the identifier. `l4Partial`: the L4 checksum field holds a partial
 * pseudo-header sum (virtio-net NEEDS_CSUM), which changes with the address only.
 */
export function rewriteEndpoint(
  b: Uint8Array,
  off: number,
  l4: number,
  proto: number,
  addrAt: number,
  newAddr: number,
  portAt: number,
  newPort: number,
  l4Partial: boolean,
): void {
  const oldAddr = ((b[addrAt] << 24) | (b[addrAt + 1] << 16) | (b[addrAt + 2] << 8) | b[addrAt + 3]) >>> 0;
  const dA = diff32(oldAddr, newAddr);
  b[addrAt] = newAddr >>> 24;
  b[addrAt + 1] = (newAddr >>> 16) & 0xff;
  b[addrAt + 2] = (newAddr >>> 8) & 0xff;
  b[addrAt + 3] = newAddr & 0xff;
  writeU16(b, off + 10, adjustChecksum(readU16(b, off + 10), dA));
  if (l4 < 0) return;
  let dP = 0;
  if (portAt >= 0) {
    const oldPort = readU16(b, portAt);
    if (oldPort !== newPort) {
      dP = diff16(oldPort, newPort);
      writeU16(b, portAt, newPort);
    }
  }
  if (proto === IPPROTO_TCP) {
    const at = l4 + 16;
    if (l4Partial) writeU16(b, at, adjustPartialChecksum(readU16(b, at), dA));
    else writeU16(b, at, adjustChecksum(readU16(b, at), fold(dA + dP)));
  } else if (proto === IPPROTO_UDP) {
    const at = l4 + 6;
    const ck = readU16(b, at);
    if (l4Partial) writeU16(b, at, adjustPartialChecksum(ck, dA));
    else if (ck !== 0) {
      // Zero means "no checksum" (RFC 768); a computed zero is sent as all ones.
      const n = adjustChecksum(ck, fold(dA + dP));
      writeU16(b, at, n === 0 ? 0xffff : n);
    }
  } else if (proto === IPPROTO_ICMP) {
    if (dP !== 0) writeU16(b, l4 + 2, adjustChecksum(readU16(b, l4 + 2), dP));
  }
}

/** Sets the TTL to `ttl`, fixing the header checksum. */
export function setTtl(b: Uint8Array, off: number, ttl: number): void {
  const old = b[off + 8];
  if (old === ttl) return;
  const d = diff16((old << 8) | b[off + 9], (ttl << 8) | b[off + 9]);
  b[off + 8] = ttl;
  writeU16(b, off + 10, adjustChecksum(readU16(b, off + 10), d));
}
