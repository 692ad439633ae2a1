// The TCP Maximum Segment Size option (RFC 9293 §3.7.1) of a SYN: found by a strict walk of the
// option list, and lowered in place (MSS clamping). A list that does not parse is left alone.
import { readU16 } from "./checksum.ts";
import { TCP_MIN_HEADER, TCP_OPT_EOL, TCP_OPT_MSS, TCP_OPT_NOP } from "./l4.ts";
import { setTcpHalfWord } from "./tcp-rewrite.ts";

/** mssOptionAt: the option list does not parse. */
export const MSS_MALFORMED = -2;
/** mssOptionAt: the list parses and has no MSS option. */
export const MSS_ABSENT = -1;

/**
 * Offset of the MSS option (kind 2, length 4) in the TCP header at `l4` whose data offset is
 * `doff` bytes; MSS_ABSENT, or MSS_MALFORMED when the list does not parse: a length below 2 or
 * past the header, an MSS option whose length is not 4, a second MSS option. The walk stops at
 * end-of-options and never reads past the header.
 */
export function mssOptionAt(b: Uint8Array, l4: number, doff: number): number {
  const end = l4 + doff;
  let found = MSS_ABSENT;
  for (let i = l4 + TCP_MIN_HEADER; i < end; ) {
    const kind = b[i];
    if (kind === TCP_OPT_EOL) break;
    if (kind === TCP_OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return MSS_MALFORMED;
    const len = b[i + 1];
    if (len < 2 || i + len > end) return MSS_MALFORMED;
    if (kind === TCP_OPT_MSS) {
      if (len !== 4 || found !== MSS_ABSENT) return MSS_MALFORMED;
      found = i;
    }
    i += len;
  }
  return found;
}

/**
 * Lowers the MSS option of the TCP segment at `l4` to `max` when it is above it, with the
 * checksum updated incrementally (RFC 1624; nothing to do for a partial checksum, which covers no
 * header bytes). True when it changed the segment. A segment without the option is left alone: its
 * sender's peer assumes 536 (RFC 9293 §3.7.1), below any MTU a clamp is for.
 */
export function clampMssOption(b: Uint8Array, l4: number, max: number, partial: boolean): boolean {
  const at = mssOptionAt(b, l4, (b[l4 + 12] >>> 4) << 2);
  if (at < 0 || readU16(b, at + 2) <= max) return false;
  setTcpHalfWord(b, l4, at + 2, max, partial);
  return true;
}
