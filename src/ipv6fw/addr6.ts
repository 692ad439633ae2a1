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

/** 16 bytes as text in the RFC 5952 form ("2001:db8::1": lower case, the longest zero run as ::). */
export function formatIpv6(a: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((a[2 * i] << 8) | a[2 * i + 1]);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** Whether address `a` (16 bytes) is in prefix `p`. */
export function inPrefix(a: Uint8Array, p: { addr: Uint8Array; len: number }): boolean {
  for (let bit = 0; bit < p.len; bit++) {
    const m = 0x80 >> (bit % 8);
    if ((a[bit >> 3] & m) !== (p.addr[bit >> 3] & m)) return false;
  }
  return true;
}
