// One TCP connection through the engine for the TCP-tracking tests: the inside end and the remote
// end, each sending segments with the numbers a test gives, on a clock the test moves.
import type { NatEngine } from "../../../src/nat/engine.ts";
import { tcp, u16 } from "../../helpers/packets.ts";
import { P, run } from "./engine-helpers.ts";

export interface Segment {
  flags: number;
  seq: number;
  ack?: number;
  window?: number;
  tcpOptions?: number[];
  payload?: number;
}

export class Conn {
  /** The connection's port on the public address (learnt from the first outbound SYN, or given). */
  outPort: number;
  nowMs = 1000;

  constructor(
    readonly e: NatEngine,
    readonly inside: string,
    readonly inPort: number,
    readonly remote: string,
    readonly remPort: number,
    outPort = 0,
  ) {
    this.outPort = outPort;
  }

  /** A segment from the inside host; the outside port is learnt from the first one. */
  out(s: Segment) {
    const r = run(
      this.e,
      tcp({ src: this.inside, dst: this.remote, sport: this.inPort, dport: this.remPort, ...s }),
      this.nowMs,
    );
    if (this.outPort === 0 && r.verdict === 0) this.outPort = u16(r.out, 20);
    return r;
  }

  /** A segment from the remote host to the public address. */
  in(s: Segment) {
    return run(
      this.e,
      tcp({ src: this.remote, dst: P, sport: this.remPort, dport: this.outPort, ...s }),
      this.nowMs,
    );
  }

  /** The connection's state as `masq conns` shows it, or undefined when the flow is gone. */
  state(): string | undefined {
    return this.e
      .flows()
      .find(
        (f) =>
          f.remote.addr === this.remote && f.remote.port === this.remPort && f.inside.port === this.inPort,
      )?.state;
  }
}

/** Window scale option (RFC 7323 §2.2) with the given shift, after a NOP. */
export const wscale = (shift: number): number[] => [1, 3, 3, shift];
