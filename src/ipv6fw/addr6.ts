// IPv6 addresses and prefixes of the config file as bytes (control plane only).
import { isIPv6 } from "node:net";

/** "2001:db8::1" as 16 bytes, or undefined when it is not an IPv6 address. */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (!isIPv6(text) || text.includes("%")) return undefined;
  let t = text;
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(t);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    t = `${t.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = t.includes("::") ? t.split("::") : [t, undefined];
  const h = head === "" ? [] : head.split(":");
  const tl = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - tl.length).fill("0"), ...tl];
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = Number.parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

/** "2001:db8:1::/64" as address bytes and length, or a problem. */
export function parseIpv6Prefix(text: string): { addr: Uint8Array; len: number } | string {
  const [a, l, extra] = text.split("/");
  const addr = parseIpv6(a);
  const len = l === undefined ? 128 : Number(l);
  if (addr === undefined || extra !== undefined || !Number.isInteger(len) || len < 0 || len > 128)
    return `${JSON.stringify(text)} is not an IPv6 prefix like "2001:db8:1::/64"`;
  return { addr, len };
}
