// The ALG registry: the engine's AlgHook. It picks the ALG of a new flow by its server port (the
// ALGs of src/alg/algs.ts, as configured), keeps per-flow state only for flows that have one (a
// map keyed by flow index: such flows are few), hands their packets to the ALG (TCP as lines,
// tcp-stream.ts; UDP as datagrams), makes the expectations they announce (expectations.ts) and
// counts each ALG's events on its own as well as in the engine's alg_* counters.
import * as C from "../nat/counters.ts";
import { type AlgHook, FORWARD, type NatEngine } from "../nat/engine.ts";
import { IPPROTO_GRE, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { tcpHeaderLength } from "../packet/l4.ts";
import { setTcpHalfWord } from "../packet/tcp-rewrite.ts";
import { ALGS } from "./algs.ts";
import { type AnyAlgConfig, algPorts } from "./config.ts";
import { AlgCounters } from "./counters.ts";
import { type Expectation, Expectations } from "./expectations.ts";
import { DEFAULT_MAX_REBUILT, StreamPair, TcpStreams } from "./tcp-stream.ts";
import type { Alg, AlgContext, TcpMessageAlg } from "./types.ts";

export { DEFAULT_MAX_REBUILT, MAX_LINE } from "./tcp-stream.ts";

/** A watched flow's record (exported for the state image, src/nat/snapshot.ts). */
export class FlowState {
  readonly streams = new StreamPair();
  readonly expectations: Expectation[] = [];
  /** The ALG's own record of the flow (AlgContext.state). */
  state: unknown = undefined;
}

export class AlgRegistry implements AlgHook {
  private readonly engine: NatEngine;
  private readonly cfg: AnyAlgConfig;
  /** ALG id (index into algs + 1) by server port, per protocol. */
  private readonly tcpPorts = new Uint8Array(65536);
  private readonly udpPorts = new Uint8Array(65536);
  /**
   * The ALGs that have been in force, in the order they came in: a flow's ALG id is its index + 1
   * (F_ALG), so an ALG a reload turns off stays here for the flows it already watches.
   */
  private readonly algs: Alg[] = [];
  /** The ALGs to choose from. */
  private readonly list: readonly Alg[];
  private readonly flows = new Map<number, FlowState>();
  private readonly expectations: Expectations;
  private readonly streams: TcpStreams;
  private readonly counters: AlgCounters;
  // The context handed to an ALG: one object, refilled per call.
  private cur: FlowState | null = null;
  private curAlg: Alg | null = null;
  /** The segment a TCP message ALG is looking at: its TCP header and whether its checksum is partial. */
  private curBuf: Uint8Array | null = null;
  private curL4 = 0;
  private curPartial = false;
  private readonly ctx: AlgContext & {
    inAddr: number;
    inPort: number;
    outAddr: number;
    outPort: number;
    remAddr: number;
    remPort: number;
    algName: string;
  };

  /**
   * `cfg`: the `[alg]` configuration; `mtu`: the smallest MTU of the gateway's links (bounds a
   * rebuilt segment); `list`: the ALGs to choose from (the shipped ones; tests bring their own).
   */
  constructor(engine: NatEngine, cfg: AnyAlgConfig, mtu = DEFAULT_MAX_REBUILT, list: readonly Alg[] = ALGS) {
    this.engine = engine;
    this.cfg = cfg;
    this.list = list;
    this.counters = new AlgCounters(engine.counters, this.algs);
    this.assignPorts();
    const count = (slot: number) => this.counters.count(this.curAlg, slot);
    this.expectations = new Expectations(engine, cfg, count);
    this.streams = new TcpStreams(engine, mtu, count);
    this.ctx = {
      inAddr: 0,
      inPort: 0,
      outAddr: 0,
      outPort: 0,
      remAddr: 0,
      remPort: 0,
      algName: "",
      expect: (proto, inPort, remote, outPort) => {
        const st = this.cur;
        const alg = this.curAlg;
        if (st === null || alg === null) return null;
        return this.expectations.expect(
          st.expectations,
          alg.expectation,
          this.ctx,
          proto,
          inPort,
          remote,
          outPort ?? 0,
        );
      },
      expectedInPort: (proto, outPort) => this.expectations.inPortOf(this.cur?.expectations, proto, outPort),
      expectedOutPort: (proto, inPort) => this.expectations.outPortOf(this.cur?.expectations, proto, inPort),
      count,
      rewrite16: (at, value) => {
        if (this.curBuf !== null) setTcpHalfWord(this.curBuf, this.curL4, at, value, this.curPartial);
      },
      greCall: (inCallId, remCallId) => {
        const f = engine.pptpCall(this.ctx.inAddr, inCallId, this.ctx.remAddr, remCallId);
        if (f < 0) {
          count(C.C_ALG_EXPECT_REFUSED);
          return null;
        }
        count(C.C_ALG_EXPECTATIONS);
        return { flow: f, outCallId: engine.flowTable.outPort(f) };
      },
      greCallAnswered: (flow, remCallId) => engine.pptpCallAnswered(flow, remCallId),
      isGreCall: (flow, outCallId) => {
        const t = engine.flowTable;
        return (
          flow >= 0 &&
          flow < t.capacity &&
          t.isLive(flow) &&
          t.proto(flow) === IPPROTO_GRE &&
          t.inAddr(flow) === this.ctx.inAddr &&
          t.remAddr(flow) === this.ctx.remAddr &&
          t.outPort(flow) === outCallId
        );
      },
      state: undefined,
    };
  }

  /**
   * Applies a reload's `[alg]` (the same checks as at start passed): new flows get the ALGs and
   * ports it names from now on, and the expectation limits hold from now on; a flow keeps the ALG
   * it was made with, so an FTP session in progress keeps working when its ALG goes off.
   */
  reconfigure(cfg: AnyAlgConfig): void {
    Object.assign(this.cfg, cfg);
    this.assignPorts();
  }

  /** Fills the port tables from the configuration: each enabled ALG's server ports. */
  private assignPorts(): void {
    this.tcpPorts.fill(0);
    this.udpPorts.fill(0);
    for (const alg of this.list) {
      const c = algPorts(this.cfg, alg.name);
      if (!c.enabled) continue;
      let id = this.algs.indexOf(alg) + 1;
      if (id === 0) {
        this.algs.push(alg);
        this.counters.grow();
        id = this.algs.length;
      }
      const table = alg.transport === "tcp" ? this.tcpPorts : this.udpPorts;
      for (const p of c.ports) if (p > 0 && p < 65536) table[p] = id;
    }
  }

  /**
   * Whether each ALG has the id a fresh start with this configuration would give it. A flow
   * records its ALG by id, so a snapshot is only good for the next run while this holds; a
   * reload that turned an ALG on or off out of list order breaks it.
   */
  idsAsAtStart(): boolean {
    const fresh = this.list.filter((a) => algPorts(this.cfg, a.name).enabled);
    return fresh.length === this.algs.length && fresh.every((a, i) => this.algs[i] === a);
  }

  /** Names of the ALGs in force and their ports (for the start-up summary). */
  describe(): string[] {
    return this.algs
      .filter((a) => algPorts(this.cfg, a.name).enabled)
      .map((a) => `${a.name} ${a.transport}/${algPorts(this.cfg, a.name).ports.join(",")}`);
  }

  /** Each ALG's own counters by name (alg_<name>_<event>), for the engine's stats. */
  namedCounters(): Record<string, number> {
    return this.counters.named();
  }

  classify(proto: number, port: number): number {
    return proto === IPPROTO_TCP ? this.tcpPorts[port] : proto === IPPROTO_UDP ? this.udpPorts[port] : 0;
  }

  quotedSeq(f: number, segmentOutbound: boolean, seq: number): number {
    const st = this.flows.get(f);
    return st === undefined ? seq : st.streams.quotedSeq(segmentOutbound, seq);
  }

  flowEnded(f: number): void {
    const st = this.flows.get(f);
    if (!st) return;
    this.flows.delete(f);
    this.expectations.release(st.expectations);
  }

  /** Outstanding expectations (pins still waiting), for tests and listings. */
  get expectationCount(): number {
    return this.expectations.size;
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
    this.curAlg = alg;
    this.fillContext(f, alg.name);
    try {
      if (alg.transport === "udp") {
        if (hl + 8 <= total) alg.datagram(this.ctx, b, off + hl + 8, off + total, outbound);
        return FORWARD;
      }
      if ("framing" in alg) return this.messages(st, alg, b, off, hl, total, outbound, partial);
      return this.streams.segment(st.streams, alg, this.ctx, b, off, hl, total, outbound, partial);
    } catch {
      // A parser bug must not take the datapath down: the packet goes on as translated.
      this.counters.count(alg, C.C_ALG_ERRORS);
      return FORWARD;
    }
  }

  /** A segment of a TCP message ALG's flow: its payload, rewritten in place. */
  private messages(
    st: FlowState,
    alg: TcpMessageAlg,
    b: Uint8Array,
    off: number,
    hl: number,
    total: number,
    outbound: boolean,
    partial: boolean,
  ): number {
    const l4 = off + hl;
    if (l4 + 20 > off + total) return FORWARD;
    const ps = l4 + tcpHeaderLength(b, l4);
    if (ps >= off + total) return FORWARD;
    this.curBuf = b;
    this.curL4 = l4;
    this.curPartial = partial;
    this.ctx.state = st.state;
    try {
      alg.segment(this.ctx, b, ps, off + total, outbound);
    } finally {
      st.state = this.ctx.state;
      this.curBuf = null;
    }
    return FORWARD;
  }

  private fillContext(f: number, name: string): void {
    const t = this.engine.flowTable;
    const c = this.ctx;
    c.inAddr = t.inAddr(f);
    c.outAddr = t.outAddr(f);
    c.remAddr = t.remAddr(f);
    c.inPort = t.inPort(f);
    c.outPort = t.outPort(f);
    c.remPort = t.remPort(f);
    c.algName = name;
  }
}
