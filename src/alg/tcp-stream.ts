// The TCP side of the ALGs: a watched connection's streams seen as lines. Command lines split
// across segments are reassembled (a partial line that could be a command is held until its rest
// arrives); a line the ALG rewrites is patched in place when its length stays, else the segment is
// rebuilt with a new length, and the sequence/acknowledgement numbers of the rest of the
// connection are corrected (seqadj.ts). Retransmissions are replayed as they went the first time.

import * as C from "../nat/counters.ts";
import { FORWARD, type NatEngine, REPLY } from "../nat/engine.ts";
import { ipMoreFragments } from "../packet/ipv4.ts";
import { TCP_FIN, TCP_RST, TCP_SYN, tcpFlags, tcpHeaderLength, tcpSeq } from "../packet/l4.ts";
import { patchTcpPayload, sealTcpSegment, setTcpWord } from "../packet/tcp-rewrite.ts";
import { forwardTtl, ttlModeCode } from "../packet/ttl.ts";
import { SeqAdj, seqAfter, unmapAcks } from "./seqadj.ts";
import type { AlgContext, TcpLineAlg } from "./types.ts";

/** Longest command line inspected (RFC 959 lines, RFC 2812's 512, RTSP headers): longer passes. */
export const MAX_LINE = 1024;
/**
 * A rebuilt segment must fit the links (default: Ethernet's MTU): it leaves without segmentation
 * offload. Control connections carry short commands, so a larger one passes unrewritten (counted).
 */
export const DEFAULT_MAX_REBUILT = 1500;

/** One direction of a watched TCP connection. */
export class StreamDir {
  /** Sender's sequence number after the last byte taken in (held bytes included). */
  seqNext = 0;
  init = false;
  /** The tail of the stream [seqNext - heldLen, seqNext): a partial line not yet passed on. */
  held: Uint8Array | null = null;
  heldLen = 0;
  readonly adj = new SeqAdj();
  /** The latest rewritten range [lastSeq, lastSeq + lastInLen) and what it became, for replays. */
  lastSeq = 0;
  lastInLen = 0;
  lastOut: Uint8Array | null = null;
}

/** Both directions of a watched TCP connection. */
export class StreamPair {
  readonly out = new StreamDir();
  readonly in = new StreamDir();

  /** The sender's own numbering of `seq`, a sequence number of the receiver's view. */
  quotedSeq(segmentOutbound: boolean, seq: number): number {
    const adj = segmentOutbound ? this.out.adj : this.in.adj;
    return adj.active ? adj.unmapAck(seq) : seq;
  }
}

export class TcpStreams {
  private readonly engine: NatEngine;
  private readonly count: (slot: number) => void;
  /** Largest segment rebuilt with a new length: the smallest MTU of the gateway's links. */
  private readonly maxRebuilt: number;
  private readonly ttlMode: number;
  private readonly scratch = new Uint8Array(65536 + MAX_LINE);
  private readonly editAt: number[] = [];
  private readonly editEnd: number[] = [];
  private readonly editText: Uint8Array[] = [];

  constructor(engine: NatEngine, mtu: number, count: (slot: number) => void) {
    this.engine = engine;
    this.count = count;
    this.maxRebuilt = Math.max(576, Math.min(mtu, 65535));
    this.ttlMode = ttlModeCode(engine.config.ttlMode);
  }

  /**
   * A segment of a watched connection: returns FORWARD (changed in place, if at all) or REPLY (a
   * rebuilt segment in the engine's replyBuf, outLen bytes).
   */
  segment(
    st: StreamPair,
    alg: TcpLineAlg,
    ctx: AlgContext,
    b: Uint8Array,
    off: number,
    hl: number,
    total: number,
    outbound: boolean,
    partial: boolean,
  ): number {
    const l4 = off + hl;
    const end = off + total;
    if (total - hl < 20) return FORWARD;
    const doff = tcpHeaderLength(b, l4);
    if (doff < 20 || hl + doff > total) return FORWARD;
    const me = outbound ? st.out : st.in;
    const other = outbound ? st.in : st.out;
    if (other.adj.active) unmapAcks(b, l4, doff, other.adj, partial);
    const flags = tcpFlags(b, l4);
    const seq = tcpSeq(b, l4);
    if ((flags & TCP_SYN) !== 0) {
      me.init = true;
      me.seqNext = (seq + 1) >>> 0;
      me.heldLen = 0;
      return FORWARD;
    }
    const ps = l4 + doff;
    if ((flags & TCP_RST) !== 0) {
      me.heldLen = 0;
      return this.shiftOnly(me, b, l4, seq, partial);
    }
    // A FIN with nothing in it still ends the stream: a held partial line goes out with it.
    const flush = ps >= end && (flags & TCP_FIN) !== 0 && me.heldLen > 0 && seq === me.seqNext;
    // A fragment carries part of a segment: too little to parse, only the numbers are fixed.
    if ((ps >= end && !flush) || ipMoreFragments(b, off)) return this.shiftOnly(me, b, l4, seq, partial);
    return this.stream(me, alg, ctx, b, off, hl, doff, total, seq, flags, outbound, partial);
  }

  private shiftOnly(me: StreamDir, b: Uint8Array, l4: number, seq: number, partial: boolean): number {
    if (me.adj.active) setTcpWord(b, l4, l4 + 4, me.adj.mapSeq(seq), partial);
    return FORWARD;
  }

  private stream(
    me: StreamDir,
    alg: TcpLineAlg,
    ctx: AlgContext,
    b: Uint8Array,
    off: number,
    hl: number,
    doff: number,
    total: number,
    S: number,
    flags: number,
    outbound: boolean,
    partial: boolean,
  ): number {
    const l4 = off + hl;
    const ps = l4 + doff;
    const L = off + total - ps;
    const E = (S + L) >>> 0;
    if (!me.init) {
      me.init = true;
      me.seqNext = S;
      me.heldLen = 0;
    }
    // A gap (bytes lost before us): with nothing held, go on from here, so the ALG keeps up with
    // the stream (the missing bytes come back as retransmissions and pass as they are); with a
    // partial line held, pass this one and wait for the retransmission to come in order.
    if (seqAfter(S, me.seqNext)) {
      if (me.heldLen !== 0) return this.shiftOnly(me, b, l4, S, partial);
      me.seqNext = S;
    }
    const D = (me.seqNext - me.heldLen) >>> 0;
    // Only bytes already passed on: a retransmission, replayed as it went the first time.
    if (!seqAfter(E, D)) return this.replay(me, b, off, hl, doff, total, S, partial);

    // New bytes: [D, newEnd) assembled from the held tail and this segment.
    const retrans = !seqAfter(E, me.seqNext);
    let src: Uint8Array;
    let ns: number;
    let ne: number;
    const fast = me.heldLen === 0 && S === D;
    if (fast) {
      src = b;
      ns = ps;
      ne = off + total;
    } else {
      src = this.scratch;
      ns = 0;
      if (me.heldLen > 0 && me.held !== null) src.set(me.held.subarray(0, me.heldLen), 0);
      ne = me.heldLen;
      if (seqAfter(E, me.seqNext)) {
        const from = ps + ((me.seqNext - S) | 0);
        src.set(b.subarray(from, off + total), ne);
        ne += off + total - from;
      }
    }

    // Lines: complete ones go to the ALG; a trailing partial one may be held.
    this.editAt.length = 0;
    this.editEnd.length = 0;
    this.editText.length = 0;
    let ls = ns;
    for (let i = ns; i < ne; i++) {
      if (src[i] !== 0x0a) continue;
      const le = i + 1;
      if (le - ls > MAX_LINE) {
        if (alg.interesting(src, ls, Math.min(le, ls + 16), outbound)) this.count(C.C_ALG_OVERSIZED);
      } else if (alg.interesting(src, ls, le, outbound)) {
        const line = latin1(src, ls, le);
        const rep = alg.line(ctx, line, outbound);
        if (rep !== null && rep !== line) {
          this.editAt.push(ls);
          this.editEnd.push(le);
          this.editText.push(Buffer.from(rep, "latin1"));
        }
      }
      ls = le;
    }
    let holdFrom = ne;
    if (ls < ne) {
      const n = ne - ls;
      // Hold only in a small segment (a command written in pieces): the held bytes must fit in
      // front of the next segment, and a bulk transfer's full-sized segments do not leave room.
      const small = ne - ns + MAX_LINE <= this.maxRebuilt - hl - doff;
      if (
        !retrans &&
        small &&
        (flags & TCP_FIN) === 0 &&
        n <= MAX_LINE &&
        alg.interesting(src, ls, ne, outbound)
      ) {
        holdFrom = ls;
      } else if (n > MAX_LINE && alg.interesting(src, ls, ls + 16, outbound)) {
        this.count(C.C_ALG_OVERSIZED);
      }
    }

    const edits = this.editAt.length;
    const newSeqNext = seqAfter(E, me.seqNext) ? E : me.seqNext;
    if (fast && edits === 0 && holdFrom === ne) {
      me.seqNext = newSeqNext;
      return this.shiftOnly(me, b, l4, S, partial);
    }
    if (fast && holdFrom === ne && this.sameLength(edits)) {
      // Same length: patch in place (the packet keeps its offload metadata, nothing is rebuilt).
      for (let k = 0; k < edits; k++) patchTcpPayload(b, l4, this.editAt[k], this.editText[k], partial);
      me.lastSeq = D;
      me.lastInLen = ne - ns;
      me.lastOut = b.slice(ns, ne);
      me.seqNext = newSeqNext;
      return this.shiftOnly(me, b, l4, S, partial);
    }

    // Rebuild: [S, D) as it went before (a retransmission overlapping), then the new bytes.
    const rb = this.engine.replyBuf;
    const pay = hl + doff;
    let w = pay;
    const outStart = seqAfter(D, S) ? S : D;
    if (seqAfter(D, S)) w = this.writeOld(me, rb, w, b, ps, S, D);
    // The new part with its edits, up to input index `cut`: all of it when it fits in one packet.
    // When it does not (held bytes in front of a full-sized segment, or an edit in an offloaded
    // super-packet), as much as fits goes, and the rest counts as not received yet: the
    // receiver's acknowledgements get it resent, in segments that fit.
    const room = Math.min(this.maxRebuilt, rb.length) - w;
    let delta = 0;
    let from = ns;
    let used = 0;
    let applied = 0;
    for (; applied < edits; applied++) {
      const at = this.editAt[applied];
      const t = this.editText[applied];
      if (used + (at - from) + t.length > room) break;
      rb.set(src.subarray(from, at), w + used);
      used += at - from;
      rb.set(t, w + used);
      used += t.length;
      delta += t.length - (this.editEnd[applied] - at);
      from = this.editEnd[applied];
    }
    const fit = Math.max(
      0,
      Math.min((applied < edits ? this.editAt[applied] : holdFrom) - from, room - used),
    );
    rb.set(src.subarray(from, from + fit), w + used);
    used += fit;
    const cut = from + fit;
    w += used;

    if (cut < holdFrom) {
      me.heldLen = 0;
      me.seqNext = (D + (cut - ns)) >>> 0;
      b[l4 + 13] &= ~TCP_FIN; // the end of the stream is in the part not sent
      this.count(C.C_ALG_SEGMENTS_CUT);
    } else {
      // Hold the partial tail (copied out of src before anything reuses it).
      if (holdFrom < ne) {
        if (me.held === null) me.held = new Uint8Array(MAX_LINE);
        me.held.set(src.subarray(holdFrom, ne), 0);
        me.heldLen = ne - holdFrom;
        this.count(C.C_ALG_LINES_HELD);
      } else me.heldLen = 0;
      me.seqNext = newSeqNext;
    }

    const outSeq = me.adj.mapSeq(outStart);
    if (applied > 0) {
      // Remember what the new range became, so a retransmission of it is rewritten the same way.
      me.lastSeq = D;
      me.lastInLen = cut - ns;
      me.lastOut = rb.slice(w - used, w);
      me.adj.record(D, delta);
    }
    if (w - pay !== L) this.count(C.C_ALG_RESIZED);
    return this.finish(b, off, hl, doff, w, outSeq);
  }

  private sameLength(edits: number): boolean {
    if (edits === 0) return false;
    for (let k = 0; k < edits; k++)
      if (this.editText[k].length !== this.editEnd[k] - this.editAt[k]) return false;
    return true;
  }

  /** [S, D) of segment bytes at b[ps..]: as they went the first time (the latest rewrite replayed). */
  private writeOld(
    me: StreamDir,
    rb: Uint8Array,
    w: number,
    b: Uint8Array,
    ps: number,
    S: number,
    D: number,
  ): number {
    const n = (D - S) | 0;
    const out = me.lastOut;
    const ls = me.lastSeq;
    const le = (me.lastSeq + me.lastInLen) >>> 0;
    if (out !== null && !seqAfter(S, ls) && !seqAfter(le, D)) {
      const a = (ls - S) | 0;
      rb.set(b.subarray(ps, ps + a), w);
      rb.set(out, w + a);
      const rest = n - a - me.lastInLen;
      rb.set(b.subarray(ps + a + me.lastInLen, ps + n), w + a + out.length);
      this.count(C.C_ALG_REPLAYED);
      return w + a + out.length + rest;
    }
    rb.set(b.subarray(ps, ps + n), w);
    return w + n;
  }

  /** A segment of bytes already passed on: forwarded, with the latest rewrite replayed if it covers it. */
  private replay(
    me: StreamDir,
    b: Uint8Array,
    off: number,
    hl: number,
    doff: number,
    total: number,
    S: number,
    partial: boolean,
  ): number {
    const l4 = off + hl;
    const ps = l4 + doff;
    const E = (S + (off + total - ps)) >>> 0;
    const le = (me.lastSeq + me.lastInLen) >>> 0;
    if (me.lastOut === null || seqAfter(S, me.lastSeq) || seqAfter(le, E))
      return this.shiftOnly(me, b, l4, S, partial);
    const rb = this.engine.replyBuf;
    const w = this.writeOld(me, rb, hl + doff, b, ps, S, E);
    if (w > this.maxRebuilt) return this.shiftOnly(me, b, l4, S, partial);
    return this.finish(b, off, hl, doff, w, me.adj.mapSeq(S));
  }

  /**
   * Completes the segment built in replyBuf: headers copied from the original (already
   * translated), new length, TTL as the engine treats forwarded packets, sequence number, and
   * full checksums (it leaves without a virtio-net header, so nothing finishes them later).
   */
  private finish(b: Uint8Array, off: number, hl: number, doff: number, len: number, seq: number): number {
    const rb = this.engine.replyBuf;
    rb.set(b.subarray(off, off + hl + doff), 0);
    forwardTtl(rb, 0, this.ttlMode);
    sealTcpSegment(rb, hl, len, seq);
    this.engine.outLen = len;
    return REPLY;
  }
}

function latin1(b: Uint8Array, s: number, e: number): string {
  return Buffer.from(b.buffer, b.byteOffset + s, e - s).toString("latin1");
}
