// The translation of a packet of a flow, with incremental checksum updates (RFC 1624): a few loads
// and stores per packet, whatever its length. What a flow's packets become is decided once, when
// the flow is made (addFlow writes its outside and inside endpoints into the record); every packet
// then only applies it: toOutside on the way out, toInside on the way in.
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
import { F_IN_ADDR, F_OUT_ADDR, F_PORTS, FLOW_WORDS, type FlowTable } from "./flow-table.ts";

/**
 * Outbound packet of flow f (TCP, UDP, or an ICMP echo whose identifier stands for the port) at
 * `off`, its L4 header at `l4`: the source becomes the flow's outside address and port.
 * `l4Partial`: the TCP/UDP checksum field holds a partial pseudo-header sum (virtio-net
 * NEEDS_CSUM), which changes with the address only.
 */
export function toOutside(
  ft: FlowTable,
  f: number,
  b: Uint8Array,
  off: number,
  l4: number,
  l4Partial: boolean,
): void {
  const base = f * FLOW_WORDS;
  const u = ft.u32;
  const proto = b[off + 9];
  const portAt = proto === IPPROTO_ICMP ? l4 + 4 : l4;
  rewrite(
    b,
    off,
    l4,
    proto,
    off + 12,
    u[base + F_OUT_ADDR] | 0,
    portAt,
    u[base + F_PORTS] & 0xffff,
    l4Partial,
  );
}

/** Inbound packet of flow f: the destination becomes the flow's inside address and port. */
export function toInside(
  ft: FlowTable,
  f: number,
  b: Uint8Array,
  off: number,
  l4: number,
  l4Partial: boolean,
): void {
  const base = f * FLOW_WORDS;
  const u = ft.u32;
  const proto = b[off + 9];
  const portAt = proto === IPPROTO_ICMP ? l4 + 4 : l4 + 2;
  rewrite(b, off, l4, proto, off + 16, u[base + F_IN_ADDR] | 0, portAt, u[base + F_PORTS] >>> 16, l4Partial);
}

/**
 * Sets the source address of the IPv4 header at `off`, fixing only the header checksum: for
 * headers whose address no L4 checksum covers (an ICMP error's outer header, a later fragment).
 */
export function setSource(b: Uint8Array, off: number, addr: number): void {
  rewrite(b, off, -1, 0, off + 12, addr | 0, -1, 0, false);
}

/** The destination address, as setSource. */
export function setDestination(b: Uint8Array, off: number, addr: number): void {
  rewrite(b, off, -1, 0, off + 16, addr | 0, -1, 0, false);
}

/**
 * Replaces the 32-bit address at `addrAt` and, for a first or only fragment (`l4` >= 0), the
 * 16-bit port at `portAt`, fixing the IP header checksum and the L4 checksum. The TCP/UDP
 * checksum covers the address through the pseudo-header; the ICMP checksum covers only the
 * identifier. `newAddr` comes as a signed 32-bit value (`| 0`): an address above 2^31 passed
 * as unsigned is no small integer and would be boxed, a heap allocation per packet.
 */
function rewrite(
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
  const oldAddr = (b[addrAt] << 24) | (b[addrAt + 1] << 16) | (b[addrAt + 2] << 8) | b[addrAt + 3];
  const dA = diff32(oldAddr, newAddr);
  b[addrAt] = newAddr >>> 24;
  b[addrAt + 1] = (newAddr >>> 16) & 0xff;
  b[addrAt + 2] = (newAddr >>> 8) & 0xff;
  b[addrAt + 3] = newAddr & 0xff;
  writeU16(b, off + 10, adjustChecksum(readU16(b, off + 10), dA));
  if (l4 < 0) return;
  let dP = 0;
  const oldPort = readU16(b, portAt);
  if (oldPort !== newPort) {
    dP = diff16(oldPort, newPort);
    writeU16(b, portAt, newPort);
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
