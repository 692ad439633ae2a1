// IPv6 packets for the filter's tests (src/ipv6fw): a fixed header (hop limit 64) and a
// transport header with the ports; TCP with its flags.
import { parseIpv6 } from "../../src/ipv6fw/addr6.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../../src/ipv6fw/filter.ts";

export function v6(src: string, dst: string, nh: number, l4: Uint8Array): Uint8Array {
  const b = new Uint8Array(40 + l4.length);
  b[0] = 0x60;
  b[4] = l4.length >> 8;
  b[5] = l4.length & 0xff;
  b[6] = nh;
  b[7] = 64;
  b.set(parseIpv6(src) as Uint8Array, 8);
  b.set(parseIpv6(dst) as Uint8Array, 24);
  b.set(l4, 40);
  return b;
}
/** A transport header of `len` bytes beginning with the two ports. */
function ports(len: number, sp: number, dp: number): Uint8Array {
  const t = new Uint8Array(len);
  t[0] = sp >> 8;
  t[1] = sp & 0xff;
  t[2] = dp >> 8;
  t[3] = dp & 0xff;
  return t;
}
export function tcp(src: string, sp: number, dst: string, dp: number, flags: number): Uint8Array {
  const t = ports(20, sp, dp);
  t[12] = 0x50;
  t[13] = flags;
  return v6(src, dst, IPPROTO_TCP, t);
}
export function udp(src: string, sp: number, dst: string, dp: number): Uint8Array {
  const u = ports(12, sp, dp);
  u[5] = 12;
  return v6(src, dst, IPPROTO_UDP, u);
}
