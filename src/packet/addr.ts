// IPv4 address primitives, the one home for them: dotted text to a 32-bit number and back, and
// prefix masks. Numbers are unsigned 32-bit (host order), as the engine's tables hold them.

/** Dotted-quad text for a 32-bit address (for logs and listings, not the hot path). */
export function formatIpv4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/**
 * Parses dotted-quad text strictly (four decimal octets, no leading zeros, which some parsers
 * read as octal); undefined when it is not an IPv4 address.
 */
export function parseIpv4(s: string): number | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v >>> 0;
}

/** The netmask of a prefix length 0..32, as an unsigned 32-bit number. */
export function prefixMask(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** A test of whether an address is in one of `prefixes` (for the control plane, not the hot path). */
export function prefixMatcher(
  prefixes: ReadonlyArray<{ addr: number; len: number }>,
): (a: number) => boolean {
  const nets = prefixes.map(({ addr, len }) => ({
    net: (addr & prefixMask(len)) >>> 0,
    mask: prefixMask(len),
  }));
  return (a) => nets.some((n) => (a & n.mask) >>> 0 === n.net);
}
