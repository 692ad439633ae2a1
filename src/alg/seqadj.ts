// TCP sequence-number correction after a payload rewrite changed a stream's length (as Linux's
// nf_conntrack_seqadj): bytes after the rewrite point carry sequence numbers shifted by the sum of
// the length changes so far, the other direction's acknowledgements (and SACK edges, RFC 2018)
// are shifted back, for the rest of the connection.
import { readU32 } from "../packet/checksum.ts";
import { TCP_ACK, TCP_OPT_SACK, tcpOptionAt } from "../packet/l4.ts";
import { setTcpWord } from "../packet/tcp-rewrite.ts";

/** `a` is after `b` in sequence space (RFC 9293 modular comparison). */
export function seqAfter(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

/** The correction of one direction's stream. */
export class SeqAdj {
  /** Sequence number (sender's numbering) of the segment where the latest change happened. */
  pos = 0;
  /** Offset for segments at or before `pos`. */
  before = 0;
  /** Offset for segments after `pos`. */
  after = 0;

  get active(): boolean {
    return this.before !== 0 || this.after !== 0;
  }

  /**
   * Records that the segment starting at `seq` grew by `delta` bytes. Only a change later in the
   * stream moves the point: a retransmission of the latest changed segment must not count twice.
   */
  record(seq: number, delta: number): void {
    if (delta === 0) return;
    if (this.before === this.after || seqAfter(seq, this.pos)) {
      this.pos = seq >>> 0;
      this.before = this.after;
      this.after += delta;
    }
  }

  /** The sequence number the receiver sees for the sender's `seq`. */
  mapSeq(seq: number): number {
    return (seq + (seqAfter(seq, this.pos) ? this.after : this.before)) >>> 0;
  }

  /**
   * The sender's numbering of a sequence number as the receiver knows it: an acknowledgement or
   * SACK edge the receiver sent, or a segment quoted in an ICMP error about it.
   */
  unmapAck(ack: number): number {
    return (ack - (seqAfter((ack - this.before) >>> 0, this.pos) ? this.after : this.before)) >>> 0;
  }
}

/**
 * Shifts the acknowledgement number and every SACK edge of a segment back by `adj` (the other
 * direction's correction). Options are walked with bounds checks: a malformed option list
 * stops the walk, never the packet.
 */
export function unmapAcks(b: Uint8Array, l4: number, doff: number, adj: SeqAdj, partial: boolean): void {
  if ((b[l4 + 13] & TCP_ACK) !== 0) setTcpWord(b, l4, l4 + 8, adj.unmapAck(readU32(b, l4 + 8)), partial);
  // One SACK option per segment (RFC 2018 §3).
  const at = tcpOptionAt(b, l4, doff, TCP_OPT_SACK);
  if (at < 0) return;
  for (let e = at + 2; e + 4 <= at + b[at + 1]; e += 4)
    setTcpWord(b, l4, e, adj.unmapAck(readU32(b, e)), partial);
}
