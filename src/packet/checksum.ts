// The Internet checksum (RFC 1071) and its incremental update (RFC 1624), over plain byte arrays.
// Everything works on 16-bit big-endian words and folds with end-around carry.

/** Adds the 16-bit big-endian words of buf[off, off+len) to `acc` (unfolded 32-bit accumulator). */
export function sumWords(buf: Uint8Array, off: number, len: number, acc: number): number {
  const end = off + (len & ~1);
  let i = off;
  // Folding every 64 K words keeps the accumulator an exact small integer whatever the length.
  while (i < end) {
    const chunkEnd = Math.min(end, i + 65536);
    for (; i < chunkEnd; i += 2) acc += (buf[i] << 8) | buf[i + 1];
    acc = (acc & 0xffff) + (acc >>> 16);
  }
  if (len & 1) acc += buf[end] << 8;
  return acc;
}

/** Folds a 32-bit accumulator to 16 bits with end-around carry. */
export function fold(acc: number): number {
  acc = (acc & 0xffff) + (acc >>> 16);
  acc = (acc & 0xffff) + (acc >>> 16);
  return acc;
}

/** The checksum of buf[off, off+len): the ones' complement of the ones' complement sum. */
export function checksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return ~fold(sumWords(buf, off, len, initial)) & 0xffff;
}

/** Sum of the IPv4 pseudo-header used by TCP and UDP (unfolded). */
export function pseudoHeaderSum(src: number, dst: number, proto: number, l4Length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + l4Length;
}

/**
 * The ones' complement difference of replacing 32-bit `from` with `to`: ~from + to, folded.
 * Adding it to a sum (and folding) gives the sum after the replacement (RFC 1624 eqn. 3).
 */
export function diff32(from: number, to: number): number {
  return fold(((~from >>> 16) & 0xffff) + (~from & 0xffff) + (to >>> 16) + (to & 0xffff));
}

/** The difference of replacing 16-bit `from` with `to`. */
export function diff16(from: number, to: number): number {
  return fold((~from & 0xffff) + to);
}

/** Applies a difference to a stored checksum field value (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')). */
export function adjustChecksum(check: number, diff: number): number {
  return ~fold((~check & 0xffff) + diff) & 0xffff;
}

/**
 * Applies a difference to a field that holds a partial (not complemented) pseudo-header sum, as a
 * packet marked "needs checksum" by a virtio-net header carries it.
 */
export function adjustPartialChecksum(partial: number, diff: number): number {
  return fold(partial + diff);
}

export function readU16(buf: Uint8Array, off: number): number {
  return (buf[off] << 8) | buf[off + 1];
}

export function writeU16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 8;
  buf[off + 1] = v & 0xff;
}

export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

/**
 * The 32 bits at `off` as a signed number: always a small integer to V8, so never boxed when
 * returned from a call not inlined or passed to one (an unsigned address above 2^31 is).
 */
export function readI32(buf: Uint8Array, off: number): number {
  return (buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
}

export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
