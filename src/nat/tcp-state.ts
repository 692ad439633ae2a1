// TCP connection tracking as a NAT needs it (RFC 5382, RFC 7857 §2.1): the handshake, the close,
// and per direction the sequence space, so that
//  - a connection is established only when both SYNs are acknowledged: the third packet of the
//    handshake (the ACK of the SYN-ACK), or the crossing SYN-ACKs of a simultaneous open (RFC 5382
//    REQ-2). A spoofed SYN answered by the server stays half-open: the spoofer never sees the
//    server's sequence number, so it cannot acknowledge it;
//  - a reset is believed only when its sequence number lies in the receiver's window (RFC 5961 §3,
//    as netfilter's tcp_in_window): a blind reset is dropped and the connection keeps its state;
//  - the windows themselves only learn from segments that fit them, so an injected segment cannot
//    widen them.
// The connection state lives in the flow record's state byte (F_META); the sequence state in a
// parallel record per flow here (the flow record is one full cache line). Nothing allocates.
//
// Numbers are kept in each sender's own numbering. When an ALG has changed the length of a
// stream (src/alg/seqadj.ts), the receiver acknowledges that stream in its numbering, which the
// ALG maps back (the `SeqMap`) before the acknowledgement is compared; the sender's sequence
// numbers, the reset's included, are read before the ALG shifts them.
import { readU32 } from "../packet/checksum.ts";
import { TCP_ACK, TCP_FIN, TCP_OPT_WSCALE, TCP_RST, TCP_SYN, tcpOptionAt } from "../packet/l4.ts";
import {
  F_META,
  FLOW_WORDS,
  type FlowTable,
  ORIGIN_INBOUND,
  SEEN_FIN_IN,
  SEEN_FIN_OUT,
  SEEN_SYN_IN,
  SEEN_SYN_OUT,
  STATE_ACTIVE,
  STATE_CLOSED,
  STATE_ESTABLISHED,
  STATE_FIN_WAIT,
  STATE_MASK,
  STATE_SYN_RECEIVED,
  STATE_SYN_SENT,
  STATE_TIME_WAIT,
} from "./flow-table.ts";
import { plainAllocator, type TableAllocator } from "./table-memory.ts";

/** Words of a flow's sequence record: a stream's three words per direction, flags, a stray's ack. */
export const TCP_WORDS = 8;
// A stream's words (the outbound stream, sent by the inside host, at 0; the inbound one at 3).
/** The sender's highest sequence number + length sent (netfilter's td_end). */
const NXT = 0;
/** Right edge of the receiver's window: its highest acknowledgement + window (td_maxend). */
const EDGE = 1;
/** The receiver's highest acknowledgement of this stream; the sender's ISN before any (td_maxack). */
const UNA = 2;
const INBOUND_STREAM = 3;
const FLAGS = 6;
/** The acknowledgement number of the latest stray segment (see STRAY_FROM_OUT). */
const STRAY_ACK = 7;
// Flags, per stream: its SYN was seen (the stream's numbers are known), the peer acknowledged that
// SYN, the SYN offered window scaling, and the scale (4 bits).
const KNOWN_OUT = 0x01;
const KNOWN_IN = 0x02;
const ACKED_OUT = 0x04;
const ACKED_IN = 0x08;
const ACKED_BOTH = ACKED_OUT | ACKED_IN;
const WSCALE_OUT = 0x10;
const WSCALE_IN = 0x20;
const WSCALE_BOTH = WSCALE_OUT | WSCALE_IN;
const SCALE_OUT_SHIFT = 8;
const SCALE_IN_SHIFT = 12;
/** The connection has finished: closed by a reset, or both FINs sent and acknowledged. */
const FINISHED = 0x10000;
/**
 * A segment came (from the inside host, or from the remote) that did not acknowledge the SYN of
 * its receiver, still in SYN-SENT: not of this connection. Its acknowledgement number is kept
 * (STRAY_ACK), so the receiver's reset answering it (RFC 9293 §3.10.7.3) can go through.
 */
const STRAY_FROM_OUT = 0x20000;
const STRAY_FROM_IN = 0x40000;
/**
 * Where each word and flag of the sequence record is: a snapshot (`masq stop --keep-state`) is
 * read back only by code that puts them in the same places (src/control/state-layout.ts).
 */
export const TCP_RECORD_LAYOUT = {
  TCP_WORDS,
  NXT,
  EDGE,
  UNA,
  INBOUND_STREAM,
  FLAGS,
  STRAY_ACK,
  KNOWN_OUT,
  KNOWN_IN,
  ACKED_OUT,
  ACKED_IN,
  WSCALE_OUT,
  WSCALE_IN,
  SCALE_OUT_SHIFT,
  SCALE_IN_SHIFT,
  FINISHED,
  STRAY_FROM_OUT,
  STRAY_FROM_IN,
} as const;
/** RFC 7323 §2.3: shifts above 14 are taken as 14. */
const MAX_WINDOW_SCALE = 14;
/**
 * The least window assumed when judging how far back an acknowledgement or a retransmission may
 * lie (netfilter's MAXACKWINDOW floor): a window may have been larger than the one last seen.
 */
const MIN_WINDOW_SLACK = 66000;

/** segment() results (bits). */
/** A reset outside the receiver's window: drop it, the connection keeps its state. */
export const TCP_RST_OUT_OF_WINDOW = 1;
/** The connection state changed (the flow's timeout may have changed). */
export const TCP_STATE_CHANGED = 2;
/** This segment completed the handshake: both SYNs are now acknowledged. */
export const TCP_HANDSHAKE_DONE = 4;
/**
 * The connection has just finished: a reset closed it, or this segment acknowledged the last of
 * both FINs. Nothing of it is in flight any more (its port may serve another connection).
 */
export const TCP_FINISHED = 8;
/** A finished connection's 4-tuple carries a new SYN: it is a connection again. */
export const TCP_REOPENED = 16;

/** Maps an acknowledgement back to the sender's numbering (the ALG's sequence correction). */
export interface SeqMap {
  /** The sender's number for `seq` as the receiver knows it, for the stream sent outbound or not. */
  quotedSeq(f: number, segmentOutbound: boolean, seq: number): number;
}

/** `a` is after `b` in sequence space (RFC 9293 modular comparison). */
function after(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

/** lo <= x <= hi in sequence space, the interval going forward from lo. */
function within(x: number, lo: number, hi: number): boolean {
  return (x - lo) >>> 0 <= (hi - lo) >>> 0;
}

const RST_REJECT = 0;
/** In the window but not at its start: the receiver answers with a challenge ACK (RFC 5961 §3.2). */
const RST_IN_WINDOW = 1;
/** Exactly where the receiver expects the next segment: the connection ends. */
const RST_EXACT = 2;
/** The answer to a stray segment (STRAY_FROM_OUT): passed on, for the other end; no state changes. */
const RST_ANSWER = 3;

export class TcpTracker {
  /** TCP_WORDS per flow, indexed like the flow table. */
  readonly words: Uint32Array;
  private readonly flows: FlowTable;

  /** `allocate`: memory for the records (huge pages, as the flow table's); plain by default. */
  constructor(flows: FlowTable, allocate: TableAllocator = plainAllocator) {
    this.flows = flows;
    this.words = new Uint32Array(allocate(flows.capacity * TCP_WORDS * 4));
  }

  get byteLength(): number {
    return this.words.byteLength;
  }

  /**
   * Tracks the TCP segment at b[l4, l4 + l4len) of flow f, sent by the inside host (`out`) or the
   * remote. `seqMap`: the flow's sequence correction when an ALG watches it. Returns TCP_* bits;
   * the caller drops the segment on TCP_RST_OUT_OF_WINDOW and forwards it otherwise (segments are
   * never dropped for their state: only the timeout depends on it).
   */
  segment(f: number, b: Uint8Array, l4: number, l4len: number, out: boolean, seqMap: SeqMap | null): number {
    if (
      (b[l4 + 13] & (TCP_SYN | TCP_FIN | TCP_RST)) === 0 &&
      (this.flows.u32[f * FLOW_WORDS + F_META] & STATE_MASK) === STATE_ESTABLISHED
    ) {
      // Most segments: data or an ACK of an established connection. Only the windows move. (A
      // small function, so the compiler inlines this test into the caller.)
      this.learn(f, b, l4, l4len, out, seqMap, false);
      return 0;
    }
    return this.transition(f, b, l4, l4len, out, seqMap);
  }

  /** segment() for the rest: the handshake, resets, FINs, and segments before establishment. */
  private transition(
    f: number,
    b: Uint8Array,
    l4: number,
    l4len: number,
    out: boolean,
    seqMap: SeqMap | null,
  ): number {
    const u = this.flows.u32;
    const metaAt = f * FLOW_WORDS + F_META;
    const flags = b[l4 + 13];
    let sb = u[metaAt] & 0xff;
    const before = sb & STATE_MASK;
    const w = this.words;
    const base = f * TCP_WORDS;
    const s = out ? base : base + INBOUND_STREAM;
    const r = out ? base + INBOUND_STREAM : base;
    const knownS = out ? KNOWN_OUT : KNOWN_IN;
    const knownR = out ? KNOWN_IN : KNOWN_OUT;
    const seq = readU32(b, l4 + 4);
    const hasAck = (flags & TCP_ACK) !== 0;
    let ack = 0;
    if (hasAck) {
      ack = readU32(b, l4 + 8);
      if (seqMap !== null) ack = seqMap.quotedSeq(f, !out, ack);
    }
    let fl = w[base + FLAGS];
    // A record's first segment finds the flags of the flow that used the record before.
    const wasFinished = before !== STATE_ACTIVE && (fl & FINISHED) !== 0;
    let restarted = false;
    if (
      before === STATE_ACTIVE ||
      ((flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN &&
        (before === STATE_TIME_WAIT || before === STATE_CLOSED))
    ) {
      // A new connection on this record: the flow's first SYN, or a SYN reusing the 4-tuple after
      // the previous connection ended (RFC 9293 §3.10.7.4, TIME-WAIT).
      fl = 0;
      sb &= ORIGIN_INBOUND;
      restarted = true;
    }
    const wasDone = (fl & ACKED_BOTH) === ACKED_BOTH;

    if ((flags & TCP_RST) !== 0) {
      const v = this.resetVerdict(fl, base, out, seq, hasAck, ack);
      if (v === RST_REJECT) return TCP_RST_OUT_OF_WINDOW;
      if (v === RST_ANSWER) return 0;
      // In the window but not exact: the receiver challenges it and a real reset follows, at the
      // number the challenge ACK gives; until then the connection keeps its state.
      if (v === RST_EXACT) sb = (sb & ~STATE_MASK) | STATE_CLOSED;
      u[metaAt] = (u[metaAt] & 0xffffff00) | sb;
      let result = (sb & STATE_MASK) !== before ? TCP_STATE_CHANGED : 0;
      if (v === RST_EXACT && !wasFinished) {
        w[base + FLAGS] = fl | FINISHED;
        result |= TCP_FINISHED;
      }
      return result;
    }

    const ackedR = out ? ACKED_IN : ACKED_OUT;
    if (hasAck && (fl & (knownR | ackedR)) === knownR && !within(ack, (w[r + UNA] + 1) >>> 0, w[r + NXT])) {
      // The receiver is in SYN-SENT and this does not acknowledge its SYN: a stale segment, or a
      // remote's TIME-WAIT answering the SYN with the old connection's ACK (the port was the old
      // connection's, src/nat/closed-mappings.ts). The receiver resets it at its acknowledgement
      // number, which is what lets the remote forget the old connection and take the SYN.
      fl |= out ? STRAY_FROM_OUT : STRAY_FROM_IN;
      w[base + STRAY_ACK] = ack;
      w[base + FLAGS] = fl;
    }

    const syn = (flags & TCP_SYN) !== 0;
    if (syn) {
      // A SYN-ACK belongs to this connection only when it acknowledges the other side's SYN;
      // another (stale, forged) teaches nothing and is passed on for the endpoint to refuse.
      if (hasAck && ((fl & knownR) === 0 || !within(ack, (w[r + UNA] + 1) >>> 0, w[r + NXT]))) return 0;
      if ((fl & knownS) === 0 || ((fl & (out ? ACKED_OUT : ACKED_IN)) === 0 && seq !== w[s + UNA])) {
        // The sender's first SYN, or one with a new ISN before the first was acknowledged (the
        // sender started over): its stream starts here.
        const end = (seq + (l4len - ((b[l4 + 12] >>> 4) << 2)) + 1 + (flags & TCP_FIN)) >>> 0;
        w[s + NXT] = end;
        w[s + EDGE] = end;
        w[s + UNA] = seq;
        const shift = windowScaleOption(b, l4, (b[l4 + 12] >>> 4) << 2);
        const scaleShift = out ? SCALE_OUT_SHIFT : SCALE_IN_SHIFT;
        fl &= ~((out ? WSCALE_OUT : WSCALE_IN) | (0xf << scaleShift));
        fl |= knownS;
        if (shift >= 0) fl |= (out ? WSCALE_OUT : WSCALE_IN) | (shift << scaleShift);
      }
      sb |= out ? SEEN_SYN_OUT : SEEN_SYN_IN;
    }
    w[base + FLAGS] = fl;
    if (this.learn(f, b, l4, l4len, out, seqMap, syn) && (flags & TCP_FIN) !== 0)
      sb |= out ? SEEN_FIN_OUT : SEEN_FIN_IN;
    fl = w[base + FLAGS];
    if ((sb & STATE_MASK) !== STATE_CLOSED || restarted) sb = (sb & ~STATE_MASK) | stateOf(sb, fl);
    u[metaAt] = (u[metaAt] & 0xffffff00) | sb;
    let result = (sb & STATE_MASK) !== before ? TCP_STATE_CHANGED : 0;
    if (!wasDone && (fl & ACKED_BOTH) === ACKED_BOTH) result |= TCP_HANDSHAKE_DONE;
    const finished = this.hasFinished(sb & STATE_MASK, base);
    if (finished !== wasFinished) {
      w[base + FLAGS] = finished ? fl | FINISHED : fl & ~FINISHED;
      result |= finished ? TCP_FINISHED : TCP_REOPENED;
    }
    return result;
  }

  /**
   * Whether the connection is over with nothing of it in flight: closed by a reset, or in
   * TIME-WAIT with both FINs acknowledged (each stream's acknowledgement reached its end, the FIN
   * included). A half-closed connection, or one whose last FIN is unacknowledged, may still see
   * retransmissions.
   */
  private hasFinished(state: number, base: number): boolean {
    if (state === STATE_CLOSED) return true;
    if (state !== STATE_TIME_WAIT) return false;
    const w = this.words;
    return (
      w[base + UNA] === w[base + NXT] && w[base + INBOUND_STREAM + UNA] === w[base + INBOUND_STREAM + NXT]
    );
  }

  /**
   * The sequence numbers a reset to the inside host of live flow f needs (RFC 9293 §3.10.7.4: a
   * reset counts at the receiver's next expected number): what the remote has sent up to, as the
   * inside host numbers it (-1: the remote's SYN was never seen), and what the inside host has
   * sent up to (-1: unknown).
   */
  resetNumbers(f: number): { fromRemote: number; fromInside: number } {
    const w = this.words;
    const base = f * TCP_WORDS;
    const flags = w[base + FLAGS];
    return {
      fromRemote: (flags & KNOWN_IN) !== 0 ? w[base + INBOUND_STREAM + NXT] : -1,
      fromInside: (flags & KNOWN_OUT) !== 0 ? w[base + NXT] : -1,
    };
  }

  /** Whether live TCP flow f's connection has finished (the last TCP_FINISHED not undone). */
  finished(f: number): boolean {
    return (
      (this.flows.u32[f * FLOW_WORDS + F_META] & STATE_MASK) !== STATE_ACTIVE &&
      (this.words[f * TCP_WORDS + FLAGS] & FINISHED) !== 0
    );
  }

  /**
   * Learns from a segment that fits its stream (a SYN always does, having just set it up): the
   * sender's highest sequence number, and from its acknowledgement the receiver's window. The
   * segment must start no later than the receiver allows (or than the sender has already gone)
   * and end no earlier than a window before what the sender has sent; the acknowledgement must
   * cover nothing the other side has not sent and be no older than a window (netfilter's
   * tcp_in_window checks). A segment that does not fit teaches nothing: false.
   */
  private learn(
    f: number,
    b: Uint8Array,
    l4: number,
    l4len: number,
    out: boolean,
    seqMap: SeqMap | null,
    syn: boolean,
  ): boolean {
    const w = this.words;
    const base = f * TCP_WORDS;
    const fl = w[base + FLAGS];
    if ((fl & (out ? KNOWN_OUT : KNOWN_IN)) === 0) return false; // nothing to check against
    const s = out ? base : base + INBOUND_STREAM;
    const flags = b[l4 + 13];
    const seq = readU32(b, l4 + 4);
    const end = (seq + (l4len - ((b[l4 + 12] >>> 4) << 2)) + (syn ? 1 : 0) + (flags & TCP_FIN)) >>> 0;
    const nxt = w[s + NXT];
    if (after(end, nxt)) {
      // New data (or a SYN): it must start within the window.
      const edge = w[s + EDGE];
      if (!syn && after(seq, after(nxt, edge) ? nxt : edge)) return false;
      w[s + NXT] = end;
    } else if (end !== nxt && !syn && after((nxt - slack(w[s + EDGE], w[s + UNA])) >>> 0, end)) return false;
    if ((flags & TCP_ACK) === 0 || (fl & (out ? KNOWN_IN : KNOWN_OUT)) === 0) return true;
    const r = out ? base + INBOUND_STREAM : base;
    let ack = readU32(b, l4 + 8);
    if (seqMap !== null) ack = seqMap.quotedSeq(f, !out, ack);
    const rUna = w[r + UNA];
    const rEdge = w[r + EDGE];
    if (after(ack, rUna)) {
      if (after(ack, w[r + NXT])) return true;
      w[r + UNA] = ack;
      w[base + FLAGS] = fl | (out ? ACKED_IN : ACKED_OUT);
    } else if (ack !== rUna && after((w[r + NXT] - slack(rEdge, rUna)) >>> 0, ack)) return true;
    let win = (b[l4 + 14] << 8) | b[l4 + 15];
    // RFC 7323 §2.2: scaled only when both SYNs offered it, never in a SYN.
    if (!syn && (fl & WSCALE_BOTH) === WSCALE_BOTH)
      win *= 1 << ((fl >>> (out ? SCALE_OUT_SHIFT : SCALE_IN_SHIFT)) & 0xf);
    const right = (ack + win) >>> 0;
    if (after(right, rEdge)) w[r + EDGE] = right;
    return true;
  }

  /** Whether a reset fits the receiver's window (RFC 5961 §3; RFC 9293 §3.10.7). */
  private resetVerdict(
    fl: number,
    base: number,
    out: boolean,
    seq: number,
    hasAck: boolean,
    ack: number,
  ): number {
    const w = this.words;
    const s = out ? base : base + INBOUND_STREAM;
    const r = out ? base + INBOUND_STREAM : base;
    // The sender, still in SYN-SENT, resets the stray segment it was sent at that segment's
    // acknowledgement number: meant for the other end's old connection, not this one.
    if (
      (fl & (out ? STRAY_FROM_IN | ACKED_OUT : STRAY_FROM_OUT | ACKED_IN)) ===
        (out ? STRAY_FROM_IN : STRAY_FROM_OUT) &&
      seq === w[base + STRAY_ACK]
    )
      return RST_ANSWER;
    if ((fl & (out ? KNOWN_OUT : KNOWN_IN)) === 0) {
      // The sender never sent a SYN: it refuses the receiver's. The receiver is in SYN-SENT, where
      // a reset counts only if it acknowledges the SYN (RFC 9293 §3.10.7.3, RFC 5961 §3).
      if ((fl & (out ? KNOWN_IN : KNOWN_OUT)) === 0) return RST_EXACT;
      return hasAck && within(ack, (w[r + UNA] + 1) >>> 0, w[r + NXT]) ? RST_EXACT : RST_REJECT;
    }
    const una = w[s + UNA];
    const nxt = w[s + NXT];
    // Where the sender is (its next sequence number) or where the receiver said it is (its latest
    // acknowledgement): what a real reset carries.
    if (seq === nxt || seq === una) return RST_EXACT;
    if ((fl & (out ? ACKED_OUT : ACKED_IN)) === 0)
      // The receiver has not acknowledged the sender's SYN: no window known, only the sender's own
      // numbers count.
      return within(seq, una, nxt) ? RST_EXACT : RST_REJECT;
    const edge = w[s + EDGE];
    return within(seq, una, after(nxt, edge) ? nxt : edge) ? RST_IN_WINDOW : RST_REJECT;
  }
}

/** The connection state from the SYN/FIN bits of the state byte and the acknowledged SYNs. */
function stateOf(sb: number, fl: number): number {
  if ((sb & (SEEN_FIN_OUT | SEEN_FIN_IN)) === (SEEN_FIN_OUT | SEEN_FIN_IN)) return STATE_TIME_WAIT;
  if ((sb & (SEEN_FIN_OUT | SEEN_FIN_IN)) !== 0) return STATE_FIN_WAIT;
  if ((fl & ACKED_BOTH) === ACKED_BOTH) return STATE_ESTABLISHED;
  // Both SYNs seen (a SYN-ACK, or the crossing SYNs of a simultaneous open), not yet both
  // acknowledged; else only the opener's.
  if ((sb & (SEEN_SYN_OUT | SEEN_SYN_IN)) === (SEEN_SYN_OUT | SEEN_SYN_IN)) return STATE_SYN_RECEIVED;
  return STATE_SYN_SENT;
}

/** How far back of a stream's latest numbers a segment or acknowledgement may still lie. */
function slack(edge: number, una: number): number {
  const span = (edge - una) >>> 0;
  return Math.max(span, MIN_WINDOW_SLACK);
}

/** The window scale option's shift (RFC 7323 §2) of the SYN at l4, or -1 when absent. */
function windowScaleOption(b: Uint8Array, l4: number, doff: number): number {
  const at = tcpOptionAt(b, l4, doff, TCP_OPT_WSCALE);
  return at < 0 || b[at + 1] !== 3 ? -1 : Math.min(b[at + 2], MAX_WINDOW_SCALE);
}
