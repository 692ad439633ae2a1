// Expectations: the related flows an ALG announced (an FTP data connection, TFTP's answer from a
// new port, RTSP's media), each a one-shot pinned mapping that admits its flow whatever the
// filtering mode and lapses unused after the configured timeout. They are bounded per control
// flow (the ALG's policy) and in total, and die with the control flow that announced them (as
// conntrack's expectations do).
import * as C from "../nat/counters.ts";
import type { NatEngine } from "../nat/engine.ts";
import { formatIpv4 } from "../packet/addr.ts";
import type { AlgLimits } from "./config.ts";
import type { ExpectationPolicy, Transport } from "./types.ts";

export interface Expectation {
  pin: number;
  proto: Transport;
  inPort: number;
  outPort: number;
  remote: number;
}

/** The control flow an expectation is made for (the ALG context's endpoints). */
export interface ControlFlow {
  readonly inAddr: number;
  readonly inPort: number;
  readonly outAddr: number;
  readonly remAddr: number;
  readonly remPort: number;
  readonly algName: string;
}

export class Expectations {
  private readonly engine: NatEngine;
  private readonly limits: AlgLimits;
  private readonly count: (slot: number) => void;
  /** Live expectation pins by id, for the total limit. */
  private readonly live = new Set<number>();

  constructor(engine: NatEngine, limits: AlgLimits, count: (slot: number) => void) {
    this.engine = engine;
    this.limits = limits;
    this.count = count;
  }

  /** Outstanding expectations (pins still waiting). */
  get size(): number {
    this.prune();
    return this.live.size;
  }

  /**
   * Expects one flow of `proto` from `remote` to inside port `inPort` of the control flow's host
   * (outside port `outPort`, 0: any), adding it to the control flow's list. Returns the outside
   * endpoint, or null when the policy or a limit refuses it (counted).
   */
  expect(
    list: Expectation[],
    policy: ExpectationPolicy,
    c: ControlFlow,
    proto: Transport,
    inPort: number,
    remote: number,
    outPort: number,
  ): { outAddr: number; outPort: number } | null {
    // An expectation the ALG's own policy does not allow is a bug in the ALG, not bad input.
    if (proto !== policy.transport || (policy.from === "remote" && remote !== c.remAddr)) {
      this.count(C.C_ALG_ERRORS);
      return null;
    }
    const e = this.engine;
    const maxPerFlow = policy.maxPerFlow ?? this.limits.maxExpectationsPerFlow;
    // Consumed or lapsed ones leave the per-flow count but stay known for port lookups.
    let alive = 0;
    for (const x of list) {
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
    if (alive >= maxPerFlow) {
      this.count(C.C_ALG_EXPECT_REFUSED);
      return null;
    }
    if (this.live.size >= this.limits.maxExpectations) this.prune();
    if (this.live.size >= this.limits.maxExpectations) {
      this.count(C.C_ALG_EXPECT_REFUSED);
      return null;
    }
    const r = e.pinMapping({
      proto,
      inAddr: c.inAddr,
      inPort,
      ...(outPort ? { outPort } : {}),
      outAddr: c.outAddr,
      remoteAddr: remote,
      expiresAtSec: e.clockSec + this.limits.expectTimeoutSec,
      oneShot: true,
      origin: c.algName,
      note: `${c.algName} ${formatIpv4(c.inAddr)}:${c.inPort} <> ${formatIpv4(c.remAddr)}:${c.remPort}`,
    });
    if ("error" in r) {
      this.count(C.C_ALG_EXPECT_REFUSED);
      return null;
    }
    this.live.add(r.id);
    // Keep the list bounded: forget entries whose pins are gone, oldest first.
    if (list.length >= 4 * maxPerFlow) list.shift();
    list.push({ pin: r.id, proto, inPort, outPort: r.outPort, remote });
    this.count(C.C_ALG_EXPECTATIONS);
    return { outAddr: r.outAddr, outPort: r.outPort };
  }

  /** The inside port of the list's expectation on outside port `outPort` (-1: none). */
  inPortOf(list: readonly Expectation[] | undefined, proto: Transport, outPort: number): number {
    for (const x of list ?? []) if (x.proto === proto && x.outPort === outPort) return x.inPort;
    return -1;
  }

  /** The outside port of the list's expectation for inside port `inPort` (-1: none). */
  outPortOf(list: readonly Expectation[] | undefined, proto: Transport, inPort: number): number {
    for (const x of list ?? []) if (x.proto === proto && x.inPort === inPort) return x.outPort;
    return -1;
  }

  /** The control flow ended: its expectations still waiting go with it. */
  release(list: readonly Expectation[]): void {
    for (const x of list) if (this.live.delete(x.pin)) this.engine.unpin(x.pin);
  }

  private prune(): void {
    for (const id of this.live) if (this.engine.pins.get(id) === undefined) this.live.delete(id);
  }
}
