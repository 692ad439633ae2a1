// The ALG registry: the engine's AlgHook. It picks the ALG of a new flow by its server port,
// keeps per-flow state only for flows that have one (a map keyed by flow index: such flows are
// few), hands their packets to the ALG (TCP as lines, tcp-stream.ts; UDP as datagrams) and makes
// the expectations they announce (expectations.ts).
import type { AlgConfig, AlgName } from "../nat/config.ts";
import * as C from "../nat/counters.ts";
import { type AlgHook, FORWARD, type NatEngine } from "../nat/engine.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { type Expectation, Expectations } from "./expectations.ts";
import { ftpAlg } from "./ftp.ts";
import { ircAlg } from "./irc.ts";
import { rtspAlg } from "./rtsp.ts";
import { DEFAULT_MAX_REBUILT, StreamPair, TcpStreams } from "./tcp-stream.ts";
import { tftpAlg } from "./tftp.ts";
import type { Alg, AlgContext } from "./types.ts";

export { DEFAULT_MAX_REBUILT, MAX_LINE } from "./tcp-stream.ts";

export const ALGS: Record<AlgName, Alg> = { ftp: ftpAlg, tftp: tftpAlg, irc: ircAlg, rtsp: rtspAlg };

class FlowState {
  readonly streams = new StreamPair();
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
  private readonly expectations: Expectations;
  private readonly streams: TcpStreams;
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

  /** `mtu`: the smallest MTU of the gateway's links (bounds a rebuilt segment). */
  constructor(engine: NatEngine, cfg: AlgConfig, mtu = DEFAULT_MAX_REBUILT) {
    this.engine = engine;
    this.cfg = cfg;
    for (const name of Object.keys(ALGS) as AlgName[]) {
      const c = cfg[name];
      if (!c.enabled) continue;
      const alg = ALGS[name];
      this.algs.push(alg);
      const id = this.algs.length;
      const table = alg.kind === "tcp" ? this.tcpPorts : this.udpPorts;
      for (const p of c.ports) if (p > 0 && p < 65536) table[p] = id;
    }
    const count = (slot: number) => {
      this.engine.counters[slot]++;
    };
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
        if (st === null) return null;
        return this.expectations.expect(st.expectations, this.ctx, proto, inPort, remote, outPort ?? 0);
      },
      expectedInPort: (proto, outPort) => this.expectations.inPortOf(this.cur?.expectations, proto, outPort),
      expectedOutPort: (proto, inPort) => this.expectations.outPortOf(this.cur?.expectations, proto, inPort),
      count,
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
    this.fillContext(f, alg.name);
    try {
      if (alg.kind === "udp") {
        if (hl + 8 <= total) alg.datagram(this.ctx, b, off + hl + 8, off + total, outbound);
        return FORWARD;
      }
      return this.streams.segment(st.streams, alg, this.ctx, b, off, hl, total, outbound, partial);
    } catch {
      // A parser bug must not take the datapath down: the packet goes on as translated.
      this.engine.counters[C.C_ALG_ERRORS]++;
      return FORWARD;
    }
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
