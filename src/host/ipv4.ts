// IPv4 addresses and prefixes as the host plan writes them (dotted text, for ip(8) argv).

import { formatIpv4, parseIpv4, prefixMask } from "../packet/addr.ts";

export interface Prefix {
  addr: string;
  len: number;
}

/** Parse "a.b.c.d" (as /32) or "a.b.c.d/len"; host bits must be zero. */
export function parsePrefix(text: string): Prefix {
  const [addr, lenText, ...rest] = text.split("/");
  const len = lenText === undefined ? 32 : Number(lenText);
  const n = parseIpv4(addr);
  if (n === undefined || rest.length > 0 || !Number.isInteger(len) || len < 0 || len > 32 || lenText === "")
    throw new Error(`invalid IPv4 address or prefix ${JSON.stringify(text)}`);
  const mask = prefixMask(len);
  if ((n & ~mask) >>> 0 !== 0)
    throw new Error(
      `prefix ${text} has host bits set (did you mean ${formatIpv4((n & mask) >>> 0)}/${len}?)`,
    );
  return { addr, len };
}

/** Every address of a prefix (callers bound the size). */
/** The addresses in prefix p. */
export function prefixSize(p: Prefix): number {
  return 2 ** (32 - p.len);
}

export function expandPrefix(p: Prefix): string[] {
  const base = parseIpv4(p.addr)!;
  const out: string[] = [];
  for (let i = 0; i < 2 ** (32 - p.len); i++) out.push(formatIpv4((base + i) >>> 0));
  return out;
}
