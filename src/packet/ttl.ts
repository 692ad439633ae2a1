// The IPv4 TTL of a packet masq forwards, the one place that knows the three ways to treat it.
import { adjustChecksum, diff16, readU16, writeU16 } from "./checksum.ts";

/**
 * The kernel decrements the TTL on the way into the TUN and again on the way out: one hop, so
 * give one back (else traceroute shows the gateway twice).
 */
export const TTL_COMPENSATE = 0;
/** masq is the hop: take one off, and a packet arriving with TTL 1 ends here (RFC 1812 §5.3.1). */
export const TTL_DECREMENT = 1;
/** Leave the TTL as the kernel made it. */
export const TTL_PRESERVE = 2;

/** The code of a configured TTL mode (nat/config.ts `ttlMode`). */
export function ttlModeCode(mode: "compensate" | "decrement" | "preserve"): number {
  return mode === "compensate" ? TTL_COMPENSATE : mode === "decrement" ? TTL_DECREMENT : TTL_PRESERVE;
}

/** Sets the TTL of the IPv4 header at `off` to `ttl`, fixing the header checksum (RFC 1624). */
export function setTtl(b: Uint8Array, off: number, ttl: number): void {
  const old = b[off + 8];
  if (old === ttl) return;
  const d = diff16((old << 8) | b[off + 9], (ttl << 8) | b[off + 9]);
  b[off + 8] = ttl;
  writeU16(b, off + 10, adjustChecksum(readU16(b, off + 10), d));
}

/**
 * Applies `mode` (TTL_*) to the forwarded packet at `off`; false, with the packet untouched, when
 * its TTL ran out (decrement mode, TTL 1 or 0): the caller drops it or answers time-exceeded.
 */
export function forwardTtl(b: Uint8Array, off: number, mode: number): boolean {
  const ttl = b[off + 8];
  if (mode === TTL_COMPENSATE) {
    if (ttl < 255) setTtl(b, off, ttl + 1);
  } else if (mode === TTL_DECREMENT) {
    if (ttl <= 1) return false;
    setTtl(b, off, ttl - 1);
  }
  return true;
}
