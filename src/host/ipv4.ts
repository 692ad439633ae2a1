// IPv4 addresses and prefixes as the host plan writes them (dotted text, for ip(8) argv).

export interface Prefix {
  addr: string;
  len: number;
}

/** Parse "a.b.c.d" (as /32) or "a.b.c.d/len"; host bits must be zero. */
export function parsePrefix(text: string): Prefix {
  const [addr, lenText, ...rest] = text.split("/");
  const len = lenText === undefined ? 32 : Number(lenText);
  const n = parseIPv4(addr);
  if (n === undefined || rest.length > 0 || !Number.isInteger(len) || len < 0 || len > 32 || lenText === "")
    throw new Error(`invalid IPv4 address or prefix ${JSON.stringify(text)}`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  if ((n & ~mask) >>> 0 !== 0)
    throw new Error(
      `prefix ${text} has host bits set (did you mean ${formatIPv4((n & mask) >>> 0)}/${len}?)`,
    );
  return { addr, len };
}

/** Every address of a prefix (callers bound the size). */
export function expandPrefix(p: Prefix): string[] {
  const base = parseIPv4(p.addr)!;
  const out: string[] = [];
  for (let i = 0; i < 2 ** (32 - p.len); i++) out.push(formatIPv4((base + i) >>> 0));
  return out;
}

export function parseIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined;
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
