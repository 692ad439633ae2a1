// The ALG registry: the engine's AlgHook. It picks the ALG of a new flow by its server port,
// keeps per-flow state only for flows that have one (a map keyed by flow index: such flows are
// few), reassembles command lines split across TCP segments (holding a partial line that could
// be a command until its rest arrives), builds a segment with a new length when a rewrite changes
// it, and corrects sequence/acknowledgement numbers for the rest of the connection.
import type { AlgConfig, AlgName } from "../nat/config.ts";
import * as C from "../nat/counters.ts";
import { type AlgHook, FORWARD, type NatEngine, REPLY } from "../nat/engine.ts";
import { F_IN_ADDR, F_META, F_OUT_ADDR, F_PORTS, F_REM_ADDR, FLOW_WORDS } from "../nat/flow-table.ts";
import { formatIpv4 } from "../packet/addr.ts";
import {
  adjustChecksum,
  checksum,
  fold,
  pseudoHeaderSum,
  readU16,
  readU32,
  sumWords,
  writeU16,
  writeU32,
} from "../packet/checksum.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { forwardTtl, ttlModeCode } from "../packet/ttl.ts";
import { ftpAlg } from "./ftp.ts";
import { ircAlg } from "./irc.ts";
import { rtspAlg } from "./rtsp.ts";
import { SeqAdj, seqAfter, setTcpWord, unmapAcks } from "./seqadj.ts";
import { tftpAlg } from "./tftp.ts";
import type { Alg, AlgContext, TcpLineAlg } from "./types.ts";

/** Longest command line inspected (RFC 959 lines, RFC 2812's 512, RTSP headers): longer passes. */
export const MAX_LINE = 1024;
/**
 * A rebuilt segment must fit the links (default: Ethernet's MTU): it leaves without segmentation
 * offload. Control connections carry short commands, so a larger one passes unrewritten (counted).
 */
export const DEFAULT_MAX_REBUILT = 1500;

const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;

export const ALGS: Record<AlgName, Alg> = { ftp: ftpAlg, tftp: tftpAlg, irc: ircAlg, rtsp: rtspAlg };

/** One direction of a watched TCP connection. */
class StreamDir {
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

interface Expectation {
  pin: number;
  proto: "tcp" | "udp";
  inPort: number;
  outPort: number;
  remote: number;
}

class FlowState {
  readonly out = new StreamDir();
  readonly in = new StreamDir();
  readonly expectations: Expectation[] = [];
}

export class AlgRegistry implements AlgHook {
  private readonly engine: NatEngine;
  private readonly cfg: AlgConfig;
  /** ALG id (index into algs + 1) by server port, per protocol. */
  private readonly tcpPorts = new Uint8Array(65536);
  private readonly udpPorts = new Uint8Array(65536);
  private readonly algs: Alg[] = [];
  private readonly flows = new Map<number, FlowState>();
  /** Live expectation pins by id, for the total limit. */
  private readonly live = new Set<number>();
  private readonly scratch = new Uint8Array(65536 + MAX_LINE);
  private readonly editAt: number[] = [];
  private readonly editEnd: number[] = [];
  private readonly editText: Uint8Array[] = [];
  private readonly ttlMode: number;
  // The context handed to an ALG: one object, refilled per call.
  private cur: FlowState | null = null;
  private readonly ctx: AlgContext & {
    inAddr: number;
    inPort: number;
    outAddr: number;
    outPort: number;
    remAddr: number;
    remPort: number;
    algName: string;
  };

  /** Largest segment rebuilt with a new length: the smallest MTU of the gateway's links. */
  private readonly maxRebuilt: number;

  constructor(engine: NatEngine, cfg: AlgConfig, mtu = DEFAULT_MAX_REBUILT) {
    this.engine = engine;
    this.maxRebuilt = Math.max(576, Math.min(mtu, 65535));
    this.cfg = cfg;
    this.ttlMode = ttlModeCode(engine.config.ttlMode);
    for (const name of Object.keys(ALGS) as AlgName[]) {
      const c = cfg[name];
      if (!c.enabled) continue;
      const alg = ALGS[name];
      this.algs.push(alg);
      const id = this.algs.length;
      const table = alg.kind === "tcp" ? this.tcpPorts : this.udpPorts;
      for (const p of c.ports) if (p > 0 && p < 65536) table[p] = id;
    }
    this.ctx = {
      inAddr: 0,
      inPort: 0,
      outAddr: 0,
      outPort: 0,
      remAddr: 0,
      remPort: 0,
      algName: "",
      expect: (proto, inPort, remote, outPort) => this.expect(proto, inPort, remote, outPort ?? 0),
      expectedInPort: (proto, outPort) => {
        for (const x of this.cur?.expectations ?? [])
          if (x.proto === proto && x.outPort === outPort) return x.inPort;
        return -1;
      },
      expectedOutPort: (proto, inPort) => {
        for (const x of this.cur?.expectations ?? [])
          if (x.proto === proto && x.inPort === inPort) return x.outPort;
        return -1;
      },
      count: (slot) => {
        this.engine.counters[slot]++;
      },
    };
  }

  /** Names of the ALGs in force and their ports (for the start-up summary). */
  describe(): string[] {
    return (Object.keys(ALGS) as AlgName[])
      .filter((n) => this.cfg[n].enabled)
      .map((n) => `${n} ${ALGS[n].kind}/${this.cfg[n].ports.join(",")}`);
  }

  classify(proto: number, port: number): number {
    return proto === IPPROTO_TCP ? this.tcpPorts[port] : proto === IPPROTO_UDP ? this.udpPorts[port] : 0;
  }

  quotedSeq(f: number, segmentOutbound: boolean, seq: number): number {
    const st = this.flows.get(f);
    if (st === undefined) return seq;
    const adj = segmentOutbound ? st.out.adj : st.in.adj;
    return adj.active ? adj.unmapAck(seq) : seq;
  }

  flowEnded(f: number): void {
    const st = this.flows.get(f);
    if (!st) return;
    this.flows.delete(f);
    // Expectations die with the connection that announced them (as conntrack's do).
    for (const x of st.expectations) {
      if (this.live.delete(x.pin)) this.engine.unpin(x.pin);
    }
  }

  /** Outstanding expectations (pins still waiting), for tests and listings. */
  get expectationCount(): number {
    this.prune();
    return this.live.size;
  }

  packet(
    f: number,
    id: number,
    b: Uint8Array,
    off: number,
    hl: number,
    total: number,
    outbound: boolean,
    partial: boolean,
  ): number {
    const alg = this.algs[id - 1];
    if (alg === undefined) return FORWARD;
    let st = this.flows.get(f);
    if (st === undefined) {
      st = new FlowState();
      this.flows.set(f, st);
    }
    this.cur = st;
    this.fillContext(f, alg.name);
    try {
      if (alg.kind === "udp") {
        if (hl + 8 <= total) alg.datagram(this.ctx, b, off + hl + 8, off + total, outbound);
        return FORWARD;
      }
      return this.tcp(st, alg, b, off, hl, total, outbound, partial);
    } catch {
      // A parser bug must not take the datapath down: the packet goes on as translated.
      this.engine.counters[C.C_ALG_ERRORS]++;
      return FORWARD;
    }
  }

  private fillContext(f: number, name: string): void {
    const u = this.engine.flowTable.u32;
    const base = f * FLOW_WORDS;
    const c = this.ctx;
    c.inAddr = u[base + F_IN_ADDR];
    c.outAddr = u[base + F_OUT_ADDR];
    c.remAddr = u[base + F_REM_ADDR];
    c.inPort = u[base + F_PORTS] >>> 16;
    c.outPort = u[base + F_PORTS] & 0xffff;
    c.remPort = u[base + F_META] >>> 16;
    c.algName = name;
  }

  // ---------------------------------------------------------------- expectations

  private prune(): void {
    for (const id of this.live) if (this.engine.pins.get(id) === undefined) this.live.delete(id);
  }

  private expect(
    proto: "tcp" | "udp",
    inPort: number,
    remote: number,
    outPort: number,
  ): { outAddr: number; outPort: number } | null {
    const st = this.cur;
    const c = this.ctx;
    const e = this.engine;
    if (st === null) return null;
    // Consumed or lapsed ones leave the per-flow count but stay known for port lookups.
    let alive = 0;
    for (const x of st.expectations) {
      const pin = e.pins.get(x.pin);
      if (pin === undefined) continue;
      alive++;
      if (
        x.proto === proto &&
        x.inPort === inPort &&
        x.remote === remote &&
        (!outPort || outPort === x.outPort)
      )
        return { outAddr: c.outAddr, outPort: x.outPort };
    }
    if (alive >= this.cfg.maxExpectationsPerFlow) {
      e.counters[C.C_ALG_EXPECT_REFUSED]++;
      return null;
    }
    if (this.live.size >= this.cfg.maxExpectations) this.prune();
    if (this.live.size >= this.cfg.maxExpectations) {
      e.counters[C.C_ALG_EXPECT_REFUSED]++;
      return null;
    }
    const r = e.pinMapping({
      proto,
      inAddr: c.inAddr,
      inPort,
      ...(outPort ? { outPort } : {}),
      outAddr: c.outAddr,
      remoteAddr: remote,
      expiresAtSec: e.clockSec + this.cfg.expectTimeoutSec,
      oneShot: true,
      origin: c.algName,
      note: `${c.algName} ${formatIpv4(c.inAddr)}:${c.inPort} <> ${formatIpv4(c.remAddr)}:${c.remPort}`,
    });
    if ("error" in r) {
      e.counters[C.C_ALG_EXPECT_REFUSED]++;
      return null;
    }
    this.live.add(r.id);
    // Keep the list bounded: forget entries whose pins are gone, oldest first.
    if (st.expectations.length >= 4 * this.cfg.maxExpectationsPerFlow) st.expectations.shift();
    st.expectations.push({ pin: r.id, proto, inPort, outPort: r.outPort, remote });
    e.counters[C.C_ALG_EXPECTATIONS]++;
    return { outAddr: r.outAddr, outPort: r.outPort };
  }

  // ---------------------------------------------------------------- TCP streams

  private tcp(
    st: FlowState,
    alg: TcpLineAlg,
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
    const doff = (b[l4 + 12] >>> 4) << 2;
    if (doff < 20 || hl + doff > total) return FORWARD;
    const me = outbound ? st.out : st.in;
    const other = outbound ? st.in : st.out;
    if (other.adj.active) unmapAcks(b, l4, doff, other.adj, partial);
    const flags = b[l4 + 13];
    const seq = readU32(b, l4 + 4);
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
    if ((ps >= end && !flush) || (b[off + 6] & 0x20) !== 0) return this.shiftOnly(me, b, l4, seq, partial);
    return this.stream(me, alg, b, off, hl, doff, total, seq, flags, outbound, partial);
  }

  private shiftOnly(me: StreamDir, b: Uint8Array, l4: number, seq: number, partial: boolean): number {
    if (me.adj.active) setTcpWord(b, l4, l4 + 4, me.adj.mapSeq(seq), partial);
    return FORWARD;
  }

  private stream(
    me: StreamDir,
    alg: TcpLineAlg,
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
        if (alg.interesting(src, ls, Math.min(le, ls + 16), outbound))
          this.engine.counters[C.C_ALG_OVERSIZED]++;
      } else if (alg.interesting(src, ls, le, outbound)) {
        const line = latin1(src, ls, le);
        const rep = alg.line(this.ctx, line, outbound);
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
        this.engine.counters[C.C_ALG_OVERSIZED]++;
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
      for (let k = 0; k < edits; k++) patchPayload(b, l4, this.editAt[k], this.editText[k], partial);
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
      this.engine.counters[C.C_ALG_SEGMENTS_CUT]++;
    } else {
      // Hold the partial tail (copied out of src before anything reuses it).
      if (holdFrom < ne) {
        if (me.held === null) me.held = new Uint8Array(MAX_LINE);
        me.held.set(src.subarray(holdFrom, ne), 0);
        me.heldLen = ne - holdFrom;
        this.engine.counters[C.C_ALG_LINES_HELD]++;
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
    if (w - pay !== L) this.engine.counters[C.C_ALG_RESIZED]++;
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
      this.engine.counters[C.C_ALG_REPLAYED]++;
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
    writeU16(rb, 2, len);
    forwardTtl(rb, 0, this.ttlMode);
    writeU16(rb, 10, 0);
    writeU16(rb, 10, checksum(rb, 0, hl));
    writeU32(rb, hl + 4, seq);
    writeU16(rb, hl + 16, 0);
    const src = readU32(rb, 12);
    const dst = readU32(rb, 16);
    writeU16(rb, hl + 16, checksum(rb, hl, len - hl, pseudoHeaderSum(src, dst, IPPROTO_TCP, len - hl)));
    this.engine.outLen = len;
    return REPLY;
  }
}

/**
 * Overwrites payload bytes at `at` with `text` (same length), keeping the TCP checksum right: the
 * change of the sum over the enclosing 16-bit words of the segment (RFC 1624). A partial checksum
 * (virtio-net NEEDS_CSUM) covers no payload and needs nothing.
 */
function patchPayload(b: Uint8Array, l4: number, at: number, text: Uint8Array, partial: boolean): void {
  if (partial) {
    b.set(text, at);
    return;
  }
  const s0 = l4 + ((at - l4) & ~1);
  const n = at + text.length - s0;
  const before = fold(sumWords(b, s0, n, 0));
  b.set(text, at);
  const after = fold(sumWords(b, s0, n, 0));
  writeU16(b, l4 + 16, adjustChecksum(readU16(b, l4 + 16), fold((~before & 0xffff) + after)));
}

function latin1(b: Uint8Array, s: number, e: number): string {
  return Buffer.from(b.buffer, b.byteOffset + s, e - s).toString("latin1");
}
